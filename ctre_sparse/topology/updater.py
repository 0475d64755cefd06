"""Prune-then-regrow for every layer of a sparse MLP (SET and CTRE)."""

from __future__ import annotations

import logging
import weakref

import numpy as np

from .. import ops
from .._random import check_random_state
from ..backends import get_backend
from ..checks import check_choice, check_int
from ..device import array_module, dropout_generator, to_host
from ..nn.init import fan_in_bounds
from .growth import GrowthContext, get_growth

logger = logging.getLogger(__name__)

__all__ = ["TopologyUpdater", "GROW_INITS", "PRUNES"]

#: How regrown connections get their weights (see :class:`TopologyUpdater`).
GROW_INITS = ("he", "he_sparse", "zeros", "kept", "threshold")
#: Pruning criteria (``TopologyUpdater(prune=...)``).
PRUNES = ("magnitude", "activity")

#: Most samples per forward chunk of the activation pass (chunks are made equal,
#: so that they share one set of buffers: 2,000 samples go as 4 x 500). Measured
#: at width 1000 (2,000 samples): 500 per chunk 14.0 ms, 1000 per chunk 13.3 ms a
#: pass, but the first pass, which faults the buffers in, 5 ms against 65 ms over.
ACTIVATION_CHUNK = 512
#: ... and fewer on wide layers: the pass's forward buffers (two per hidden layer, width x
#: chunk each) are held to this many bytes. 3 x 100,000 neurons at S = 445 took 1.07 GB of
#: buffers beside 0.53 GB of activations in one chunk; at most 64 MiB gives chunks of 27.
ACTIVATION_CHUNK_BYTES = 64 << 20

#: The activation pass's buffers are kept between updates only up to this size (bytes):
#: 12 MB at width 1000 with 2,000 samples; 2 x 25 MB of a 200,000-wide layer at S = 32
#: and 1.5 GB at 3 x 1,000,000 at S = 64 are given back after each pass instead.
ACTIVATION_WS_CACHE_BYTES = 32 << 20

#: ``cosine_mode`` values: "auto" picks one of the other three per layer.
COSINE_MODES = ("auto", "exact", "sketch", "index")
#: "auto" keeps the exact scan for a layer while ``n_out * n_in * S`` stays at
#: or below this many multiply-adds (4096 x 4096 positions at S = 1024; about
#: 0.1-0.2 s of blocked products on 2 cores); above it, the index mode.
AUTO_EXACT_WORK = 1 << 34
#: "auto" caps the samples of the activation pass so that the activations of
#: all layers (sum of widths x S x itemsize) fit in this many bytes ...
AUTO_ACTIVATION_BYTES = 512 << 20
#: ... but never below this many samples (nor above ``cosine_samples``).
AUTO_MIN_SAMPLES = 64


class TopologyUpdater:
    """Remove the weakest connections of every layer and grow as many back.

    Per layer: :func:`~ctre_sparse.ops.prune_magnitude` removes
    ``floor(zeta * nnz)`` connections with the smallest ``|w|`` (or, with
    ``prune="activity"``, the smallest ``|w| * std(input)``); the growth
    strategy chooses as many absent connections; they get weights by the
    ``grow_init`` rule and momentum 0
    (:meth:`~ctre_sparse.nn.optim.SGD.remap`); :func:`~ctre_sparse.ops.insert`
    merges them, so the layer's number of connections is unchanged and its
    cached transpose is rebuilt on next use.

    Parameters
    ----------
    zeta : float, default 0.3
        Fraction of each layer's connections replaced per update, in [0, 1).
    growth : str or GrowthStrategy, default "random"
        See :func:`~ctre_sparse.topology.growth.get_growth`.
    cosine_samples : int, default 1000
        Training samples whose activations (cosine growth) or loss gradients
        (``"rigl"``) score the candidates (a random subset drawn from the
        update's ``rng``; all samples when fewer).
    patience : int, default 40
        For ``growth="ctre_seq"``.
    block_bytes : int, optional
        Memory budget of a block of cosine scores (exact cosine growth).
    backend : str, default "auto"
    cosine_approx_dim : int, optional
        Off (None, the default): cosine growth is exact everywhere. An int
        >= 1: layers with ``n_out * n_in >= cosine_approx_min_pairs`` choose
        their cosine picks with
        :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch` (sketch dimension
        ``cosine_approx_dim``, its default ``rank``, the projection drawn
        from the update's ``rng``): faster on wide layers, at the cost of
        missing some of the exact top pairs (docs/cosine_sketch.md). Smaller layers
        stay exact. Only the cosine strategies ("cosine", "ctre_seq",
        "ctre_sim") use it.
    cosine_approx_oversample : int, default 4
        Sketched candidates re-scored exactly per grown connection.
    cosine_approx_min_pairs : int, default 4096 * 4096
        Smallest layer (``n_out * n_in`` positions) that uses the sketch.
    cosine_mode : {"auto", "exact", "sketch", "index"}, default "auto"
        How the cosine strategies find their picks in each layer. "exact":
        :func:`~ctre_sparse.ops.topk_cosine` (every absent pair,
        ``O(n_out * n_in * S)``); "sketch":
        :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch` (every pair on a
        projection; ``cosine_approx_dim`` or 128 coordinates); "index":
        :func:`~ctre_sparse.cosine_index.topk_cosine_index` (nearest-neighbour
        candidates, sublinear in pairs). "auto": exact while ``n_out * n_in
        * S <=`` :data:`AUTO_EXACT_WORK`, index above; with
        ``cosine_approx_dim`` set, the sketch's rule above instead (sketch
        from ``cosine_approx_min_pairs`` positions, exact below); and S is
        capped so that all layers' activations fit in
        :data:`AUTO_ACTIVATION_BYTES` (at least :data:`AUTO_MIN_SAMPLES`
        samples). Every layer's choice is in the stats (``cosine_modes``).
        Networks whose layers stay exact under "auto" (width 1000 with 2,000
        samples, for example) run bit-identically to "exact".
    grow_init : {"he", "he_sparse", "zeros", "kept", "threshold"}, default "he"
        Weights of the regrown connections. ``"he"``: ``U(+-sqrt(6 / n_in))``,
        the dense layer's He bound (the CTRE and SET papers); ``"he_sparse"``:
        ``U(+-sqrt(6 / k))`` with ``k`` the real fan-in of the connection's
        output neuron after the update (:func:`~ctre_sparse.nn.init.fan_in_bounds`);
        ``"zeros"``: 0 (RigL's choice); ``"kept"``: magnitudes drawn from the
        layer's connections that survived pruning, random signs;
        ``"threshold"``: ``U(+-t)`` with ``t`` the ``floor(zeta * nnz)``-th
        smallest magnitude of the layer before the update (under magnitude
        pruning the largest magnitude pruned), so a new connection starts
        no stronger than the weakest survivor of magnitude pruning.
    prune : {"magnitude", "activity"}, default "magnitude"
        Which connections go. ``"magnitude"``: the smallest ``|w_ij|`` (SET,
        CTRE). ``"activity"``: the smallest ``|w_ij| * s_j``, ``s_j`` the
        standard deviation of the input neuron's activation over the
        update's samples (the same activation pass as cosine growth; random
        growth then runs one too), and each pruned connection's mean
        contribution ``w_ij * mean(a_j)`` moves into its output neuron's
        bias, so the pruning changes every pre-activation's mean over the
        samples by nothing: a weight on a near-constant input acts as a bias
        and is dropped first, a small weight on a widely varying input is
        kept (docs/accuracy.md, step 9). With gradient growth (``"rigl"``) the
        statistics come from its pass's layer inputs, which are computed in
        training mode (dropout applied).

    Examples
    --------
    >>> import numpy as np
    >>> from ctre_sparse.nn import SparseMLP
    >>> model = SparseMLP([6, 5, 3], epsilon=1, random_state=0, backend="reference")
    >>> upd = TopologyUpdater(zeta=0.5, growth="random", backend="reference")
    >>> X = np.ones((6, 4), dtype=np.float32)
    >>> stats = upd.update(model, X, rng=np.random.default_rng(0))
    >>> stats["n_pruned"] == stats["n_random"], stats["n_connections"] == model.n_connections
    (True, True)
    """

    def __init__(self, zeta=0.3, growth="random", *, cosine_samples=1000, patience=40,
                 block_bytes=ops.TOPK_BLOCK_BYTES, backend="auto", cosine_approx_dim=None,
                 cosine_approx_oversample=4, cosine_approx_min_pairs=4096 * 4096,
                 cosine_mode="auto", grow_init="he", prune="magnitude"):
        if not 0.0 <= float(zeta) < 1.0:
            raise ValueError(f"zeta must be in [0, 1), got {zeta!r}")
        if int(cosine_samples) < 1:
            raise ValueError(f"cosine_samples must be >= 1, got {cosine_samples!r}")
        self.cosine_approx_dim = (None if cosine_approx_dim is None
                                  else check_int("cosine_approx_dim", cosine_approx_dim, 1))
        self.cosine_approx_oversample = check_int("cosine_approx_oversample",
                                                  cosine_approx_oversample, 1)
        self.cosine_approx_min_pairs = check_int("cosine_approx_min_pairs",
                                                 cosine_approx_min_pairs, 0)
        self.cosine_mode = check_choice("cosine_mode", cosine_mode, COSINE_MODES)
        self.grow_init = check_choice("grow_init", grow_init, GROW_INITS)
        self.prune = check_choice("prune", prune, PRUNES)
        if backend != "auto":
            get_backend(backend)  # unknown or unavailable backends fail here, with the reason
        self.zeta = float(zeta)
        self.growth = get_growth(growth, patience=patience)
        self.cosine_samples = int(cosine_samples)
        self.block_bytes = int(block_bytes)
        self.backend = backend
        self._act_buffers = None  # (weakref to the model, its ForwardBuffers for this pass)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_act_buffers"] = None  # a cache of buffers (and a weak reference): not state
        return state

    def observe(self, monitor):
        """Pass the monitored accuracy of the last epoch to the growth strategy."""
        self.growth.observe(monitor)

    def _samples(self, model):
        """Samples of the activation pass: ``cosine_samples``, capped under "auto" (see class)."""
        if self.cosine_mode != "auto":
            return self.cosine_samples
        per_sample = sum(model.layer_sizes) * np.dtype(model.dtype).itemsize
        return min(self.cosine_samples, max(AUTO_MIN_SAMPLES, AUTO_ACTIVATION_BYTES // per_sample))

    def _subset(self, model, X, y, rng):
        """At most :meth:`_samples` columns of ``X`` (and entries of ``y``), drawn from ``rng``."""
        n = X.shape[1]
        xp = array_module(X)
        n_samples = self._samples(model)
        if n > n_samples:
            idx = xp.asarray(np.sort(rng.choice(n, size=n_samples, replace=False)))
            X = X[:, idx]
            y = None if y is None else y[idx if array_module(y) is xp else to_host(idx)]
        return xp.ascontiguousarray(X), y

    def _sample_activations(self, model, X, y, rng):
        """Per layer ``(A_in, A_out, G_out)`` for the growth strategy, or None if it needs none.

        Cosine growth gets the activations of the sample subset (``A_out``
        of layer ``l`` is ``A_in`` of layer ``l + 1``); gradient growth the
        layers' inputs and the loss gradient at their outputs
        (:meth:`~ctre_sparse.nn.SparseMLP.loss_gradients`), both of size
        (neurons x samples), never (n_out x n_in).
        """
        growth = self.growth
        if growth.needs_gradients:
            if y is None:
                raise ValueError(f"growth {growth.name!r} needs the labels: update(model, X, y)")
            X, y = self._subset(model, X, y, rng)
            drop_rng = dropout_generator(rng, model.xp, needed=model.dropout > 0)
            inputs, grads = self._own_buffers(
                model, X.shape[1], lambda chunk, buffers: model.loss_gradients(
                    X, y, rng=drop_rng, batch_size=chunk, buffers=buffers))
            return [(inputs[i], None, grads[i]) for i in range(model.n_layers)]
        if growth.needs_activations or self.prune == "activity":
            acts = self._activations(model, self._subset(model, X, None, rng)[0])
            return [(acts[i], acts[i + 1], None) for i in range(model.n_layers)]
        return None

    def _activations(self, model, X):
        """``model.activations(X)`` in the updater's own buffers (:meth:`_own_buffers`)."""
        return self._own_buffers(model, X.shape[1], lambda chunk, buffers: model.activations(
            X, batch_size=chunk, buffers=buffers))

    def _own_buffers(self, model, n, compute):
        """``model.activations(X)`` in forward buffers of the updater's own.

        The activation pass runs on ``cosine_samples`` columns in equal chunks
        of at most :data:`ACTIVATION_CHUNK` (fewer on wide layers,
        :data:`ACTIVATION_CHUNK_BYTES`), the training loop on mini-batches:
        in one set of buffers, each would reallocate the other's at every
        update (here and at the next mini-batch), and the fresh pages fault in
        (about 9,500 page faults, 10-15 ms per update at width 1000 with 2,000
        samples on 2 cores). So the updater keeps the buffers of this pass
        between updates (for one model at a time, on its device), unless they
        exceed :data:`ACTIVATION_WS_CACHE_BYTES`: on wide layers they would
        hold ``width x chunk`` values per layer for the whole run, and there
        the update takes long enough for the page faults not to matter. The
        values are the same either way (every backend computes a sample's
        forward pass independently of the chunk it is in; tested).
        """
        per_sample = 2 * sum(model.layer_sizes[1:]) * np.dtype(model.dtype).itemsize
        most = max(1, min(ACTIVATION_CHUNK, ACTIVATION_CHUNK_BYTES // per_sample))
        chunk = max(1, -(-n // max(1, -(-n // most))))  # equal chunks, one shape
        cached = self._act_buffers
        if cached is not None and cached[0]() is model and cached[1].fits(model):
            buffers = cached[1]
        else:
            buffers = model.new_buffers()
        out = compute(chunk, buffers)
        kept = buffers.nbytes <= ACTIVATION_WS_CACHE_BYTES
        self._act_buffers = (weakref.ref(model), buffers) if kept else None
        return out

    def update(self, model, X, y=None, *, optimizer=None, val_accuracy=None, rng=None,
               communicator=None):
        """Prune and regrow every layer of ``model`` in place.

        Parameters
        ----------
        model : SparseMLP
        X : ndarray, shape (n_features, n_samples)
            Training data (C or F order; NumPy, or CuPy for a model on the
            GPU); cosine and gradient growth use up to ``cosine_samples`` of
            its columns.
        y : int ndarray, shape (n_samples,), optional
            Class codes of ``X``; needed by gradient growth (``"rigl"``) only.
        optimizer : SGD, optional
            Its momentum is remapped (new connections start at 0).
        val_accuracy : float, optional
            When given, passed to :meth:`observe` first (CTRE-seq's monitor).
        rng : numpy.random.Generator or int, optional
            Draws the sample subset, random connections and new weights.
        communicator : MPICommunicator, optional
            Data-parallel training: the exact cosine top-k of every layer is
            split over the ranks by output neurons
            (:meth:`~ctre_sparse.distributed.MPICommunicator.topk_cosine`);
            the rest (activations, pruning, random draws from the shared
            ``rng``, insertion, and the sketched top-k of layers using
            ``cosine_approx_dim``) runs whole on every rank, with the same
            result.

        Returns
        -------
        dict
            ``n_pruned``, ``n_cosine``, ``n_random``, ``n_connections``
            (totals), ``growth`` (strategy name), ``cosine_modes`` (per layer,
            the mode its cosine picks used; None where none were made) and
            ``layers``: one dict per layer with ``n_pruned``, ``n_cosine``,
            ``n_random``, ``nnz``, ``cosine_mode``.
        """
        rng = check_random_state(rng)
        if val_accuracy is not None:
            self.observe(val_accuracy)
        layer_stats = []
        if self.growth.prunes and self.zeta > 0:
            if communicator is not None and self.growth.needs_gradients:
                raise ValueError(f"growth {self.growth.name!r} does not run data-parallel")
            acts = self._sample_activations(model, X, y, rng)
            split = {} if communicator is None else {"topk": communicator.topk_cosine}
            for i, layer in enumerate(model.layers):
                layer_stats.append(self._update_layer(i, layer, acts, optimizer, rng, **split))
        else:
            layer_stats = [{"n_pruned": 0, "n_cosine": 0, "n_random": 0, "nnz": layer.W.nnz,
                            "cosine_mode": None} for layer in model.layers]
        stats = {key: sum(s[key] for s in layer_stats)
                 for key in ("n_pruned", "n_cosine", "n_random")}
        stats.update(n_connections=model.n_connections, growth=self.growth.name,
                     cosine_modes=[s["cosine_mode"] for s in layer_stats], layers=layer_stats)
        logger.debug("topology update (%s): pruned %d, grew %d by cosine and %d at random",
                     self.growth.name, stats["n_pruned"], stats["n_cosine"], stats["n_random"])
        return stats

    def _update_layer(self, i, layer, acts, optimizer, rng, *, topk=None):
        W = layer.W
        A_in, A_out, G_out = acts[i] if acts is not None else (None, None, None)
        activity = self.prune == "activity"
        scale = A_in.std(axis=1) if activity else None
        pruned = ops.prune_magnitude(W, self.zeta, column_scale=scale, backend=self.backend)
        W.invalidate_cache()  # its transpose and row indices (12 bytes per connection) are stale
        n = int(pruned.removed_rows.shape[0])
        scored = acts is not None and self.growth.needs_activations
        mode = self._layer_mode(W, A_in.shape[1]) if scored else None
        if n == 0:
            return {"n_pruned": 0, "n_cosine": 0, "n_random": 0, "nnz": W.nnz,
                    "cosine_mode": None}
        if activity:
            _bias_compensation(layer, W, pruned, A_in.mean(axis=1))
        ctx = GrowthContext(i, pruned.matrix, pruned.removed_rows, pruned.removed_cols,
                            A_in, A_out, G_out=G_out, backend=self.backend,
                            block_bytes=self.block_bytes,
                            cosine_approx_dim=self.cosine_approx_dim,
                            cosine_approx_oversample=self.cosine_approx_oversample,
                            cosine_mode=mode or "exact", topk_cosine=topk)
        rows, cols, n_cosine = self.growth.choose(ctx, n, rng)
        if rows.shape[0] != n:
            raise RuntimeError(f"growth {self.growth.name!r} gave {rows.shape[0]} connections "
                               f"for layer {i}, expected {n}")
        values = self._new_values(W, pruned, rows, n, rng)
        xp = W.xp  # random picks and new values are drawn on the host: O(n) moves to a GPU
        rows, cols, values = xp.asarray(rows), xp.asarray(cols), xp.asarray(values)
        merged = ops.insert(pruned.matrix, rows, cols, values, backend=self.backend)
        layer.set_weight(merged.matrix)
        if optimizer is not None:
            optimizer.remap(i, pruned.kept, merged.old_positions, merged.new_positions,
                            merged.matrix.nnz)
        return {"n_pruned": n, "n_cosine": int(n_cosine), "n_random": n - int(n_cosine),
                "nnz": merged.matrix.nnz, "cosine_mode": mode}

    def _new_values(self, W, pruned, rows, n, rng):
        """Weights of the ``n`` regrown connections (rows ``rows``) by ``grow_init``; host array."""
        if self.grow_init == "he":
            bound = np.sqrt(6.0 / W.n_in)
            return rng.uniform(-bound, bound, n).astype(W.dtype)
        if self.grow_init == "zeros":
            return np.zeros(n, dtype=W.dtype)
        if self.grow_init == "threshold":  # on the layer's device: O(nnz), one scalar back
            xp = W.xp
            t = float(xp.partition(xp.abs(W.data), n - 1)[n - 1])  # 0 < n <= nnz
            return rng.uniform(-t, t, n).astype(W.dtype)
        if self.grow_init == "kept":
            kept = pruned.matrix.data
            if kept.shape[0] == 0:
                return np.zeros(n, dtype=W.dtype)
            pick = rng.integers(0, kept.shape[0], n)
            mags = np.abs(to_host(kept[W.xp.asarray(pick)]))
            return (mags * rng.choice(np.array([-1.0, 1.0]), n)).astype(W.dtype)
        rows = to_host(rows).astype(np.int64)  # "he_sparse": the fan-in after the update
        fan_in = np.diff(to_host(pruned.matrix.indptr)).astype(np.int64)
        fan_in += np.bincount(rows, minlength=W.n_out)
        return (rng.uniform(-1.0, 1.0, n) * fan_in_bounds(fan_in)[rows]).astype(W.dtype)

    def _layer_mode(self, W, n_samples):
        """How layer ``W``'s cosine picks are found over ``n_samples`` samples (class docstring)."""
        if self.cosine_mode != "auto":
            return self.cosine_mode
        pairs = W.n_out * W.n_in
        if self.cosine_approx_dim is not None:  # the sketch's own rule, as before "auto"
            return "sketch" if pairs >= self.cosine_approx_min_pairs else "exact"
        return "exact" if pairs * n_samples <= AUTO_EXACT_WORK else "index"

    def state_dict(self):
        """JSON-able state: ``zeta``, ``cosine_samples``, ``grow_init``, ``prune``, ``growth``."""
        return {"zeta": self.zeta, "cosine_samples": self.cosine_samples,
                "grow_init": self.grow_init, "prune": self.prune,
                "growth": self.growth.state_dict()}

    def load_state_dict(self, d):
        """Restore :meth:`state_dict` (the strategy must have the same name)."""
        self.zeta = float(d["zeta"])
        self.cosine_samples = int(d["cosine_samples"])
        # files written before grow_init / prune: "he" / "magnitude"
        self.grow_init = check_choice("grow_init", d.get("grow_init", "he"), GROW_INITS)
        self.prune = check_choice("prune", d.get("prune", "magnitude"), PRUNES)
        self.growth.load_state_dict(d["growth"])

    def __repr__(self):
        mode = "" if self.cosine_mode == "auto" else f", cosine_mode={self.cosine_mode!r}"
        mode += "" if self.grow_init == "he" else f", grow_init={self.grow_init!r}"
        mode += "" if self.prune == "magnitude" else f", prune={self.prune!r}"
        approx = ("" if self.cosine_approx_dim is None else
                  f", cosine_approx_dim={self.cosine_approx_dim}, cosine_approx_oversample="
                  f"{self.cosine_approx_oversample}, cosine_approx_min_pairs="
                  f"{self.cosine_approx_min_pairs}")
        return (f"TopologyUpdater(zeta={self.zeta}, growth={self.growth!r}, "
                f"cosine_samples={self.cosine_samples}{mode}{approx})")


def _bias_compensation(layer, W, pruned, mean):
    """Add the pruned connections' mean contributions ``w_ij * mean_j`` to their rows' biases.

    ``W`` is the layer's matrix before the pruning ``pruned``; ``mean`` the
    input neurons' mean activations (``W.n_in``). O(nnz) on the layer's device.
    """
    xp = W.xp
    removed = xp.ones(W.nnz, dtype=bool)
    removed[pruned.kept] = False
    shift = xp.bincount(pruned.removed_rows, minlength=W.n_out,
                        weights=W.data[removed] * mean[pruned.removed_cols])
    layer.b += shift.astype(layer.b.dtype)
