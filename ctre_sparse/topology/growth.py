"""Growth strategies: where the connections removed by pruning come back.

Every strategy answers one question, :meth:`GrowthStrategy.choose`: given a
layer after pruning, which ``n`` absent connections to add. Pruning, the new
weights and the optimizer remap are the updater's job
(:class:`~ctre_sparse.topology.updater.TopologyUpdater`).

``"random"`` (SET, Mocanu et al. 2018)
    Uniform among the absent connections.
``"cosine"``
    The ``n`` absent connections with the largest ``|cos|`` between the
    activations of their two neurons, by the context's ``cosine_mode``:
    ``"exact"`` :func:`~ctre_sparse.ops.topk_cosine`, ``"sketch"``
    :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch`, ``"index"``
    :func:`~ctre_sparse.cosine_index.topk_cosine_index`.
``"ctre_seq"`` (Atashgahi et al. 2022)
    Cosine until the monitored validation accuracy has not improved for
    ``patience`` epochs, random from then on, for good.
``"ctre_sim"`` (Atashgahi et al. 2022)
    Cosine picks; a pick that re-adds a connection pruned in this same step
    is replaced by a random absent connection.
``"rigl"`` (Evci et al. 2020)
    The ``n`` absent connections with the largest gradient magnitude
    ``|G X^T|`` (G: the loss gradient at the layer's outputs, X: its inputs,
    over a sample subset), by :func:`~ctre_sparse.ops.topk_abs_product`: the
    same blocked streaming top-k as exact cosine growth, never the dense
    gradient.
``"static"``
    No pruning, no growth: the initial topology stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .. import cosine_index, cosine_sketch, ops
from ..device import array_module, to_host

logger = logging.getLogger(__name__)

__all__ = ["GrowthContext", "GrowthStrategy", "RandomGrowth", "CosineGrowth", "CTRESeqGrowth",
           "CTRESimGrowth", "RigLGrowth", "StaticGrowth", "GROWTH_STRATEGIES", "get_growth",
           "sample_absent",
           "pattern_keys"]


def pattern_keys(W):
    """Sorted linear keys ``row * n_in + col`` (int64) of the stored connections of ``W``."""
    return W.row_indices().astype(np.int64) * W.n_in + W.indices.astype(np.int64)


def _in_sorted(keys, sorted_ref):
    """Boolean mask: which ``keys`` occur in the sorted array ``sorted_ref`` (one array module)."""
    xp = array_module(keys)
    if sorted_ref.shape[0] == 0 or keys.shape[0] == 0:
        return xp.zeros(keys.shape[0], dtype=bool)
    pos = xp.minimum(xp.searchsorted(sorted_ref, keys), sorted_ref.shape[0] - 1)
    return sorted_ref[pos] == keys


#: Largest layer (n_out * n_in positions) whose membership tests use a boolean
#: table of all positions instead of binary searches (1 byte per position).
TABLE_POSITIONS = 1 << 22


def _in_set(keys, sorted_ref, total):
    """:func:`_in_sorted` for keys in ``[0, total)``; a lookup table for a small ``total``.

    Binary searches of unsorted keys miss the cache at every step: for
    12,000 keys against 12,000 that is ~1 ms, the table ~0.05 ms.
    """
    if total > TABLE_POSITIONS:
        return _in_sorted(keys, sorted_ref)
    xp = array_module(keys)
    table = xp.zeros(total, dtype=bool)
    table[sorted_ref] = True
    return table[keys]


def _in_excluded(draw, exclude):
    """:func:`_in_sorted` for host ``draw`` against host or device ``exclude`` keys.

    Device keys stay on the device: the O(len(draw)) draw goes there and the
    mask comes back, never the O(nnz) keys.
    """
    xp = array_module(exclude)
    return to_host(_in_sorted(xp.asarray(draw), exclude))


def _sorted_unique(keys):
    """``np.unique`` by sort + neighbour compare (faster than numpy's hash-based unique here)."""
    keys = np.sort(keys)
    if keys.shape[0] > 1:
        keep = np.empty(keys.shape[0], dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def sample_absent(n_out, n_in, n, rng, exclude_keys):
    """Draw ``n`` distinct positions uniformly among those not excluded.

    Rejection sampling of linear keys ``row * n_in + col`` against sorted
    excluded keys: memory O(n + len(excluded)), never O(n_out * n_in), as
    long as at most half of the positions are excluded (past that, the absent
    positions are enumerated, which costs O(n_out * n_in) <= O(2 * len(excluded))).

    Parameters
    ----------
    n_out, n_in : int
        Shape of the layer.
    n : int
        How many positions to draw.
    rng : numpy.random.Generator
    exclude_keys : int64 ndarray or sequence of them
        Sorted, unique linear keys that must not be drawn; several arrays
        must be disjoint from one another. NumPy or CuPy arrays: the draws
        always come from the host ``rng`` (the same stream on either
        device), and membership in device keys is tested on the device.

    Returns
    -------
    rows, cols : int64 NumPy arrays, shape (n,)
        Sorted by linear key.

    Examples
    --------
    >>> import numpy as np
    >>> rows, cols = sample_absent(3, 3, 8, np.random.default_rng(0), np.array([4]))
    >>> sorted(zip(rows.tolist(), cols.tolist())) == [(r, c) for r in range(3)
    ...                                              for c in range(3) if (r, c) != (1, 1)]
    True
    """
    excludes = [exclude_keys] if hasattr(exclude_keys, "shape") else list(exclude_keys)
    total = int(n_out) * int(n_in)
    n_excluded = sum(int(e.shape[0]) for e in excludes)
    n_absent = total - n_excluded
    if not 0 <= n <= n_absent:
        raise ValueError(f"cannot draw {n} absent positions out of {n_absent}")
    if n == 0:
        keys = np.zeros(0, dtype=np.int64)
    elif n_excluded > total // 2:
        absent = np.ones(total, dtype=bool)  # the layer is over half dense: O(nnz) anyway
        for e in excludes:
            absent[to_host(e)] = False
        keys = np.sort(rng.choice(np.flatnonzero(absent), size=n, replace=False))
    else:
        keys = np.zeros(0, dtype=np.int64)
        while keys.shape[0] < n:
            need = n - keys.shape[0]
            size = int(need * (total / n_absent) * 1.1) + 16
            # sorted, the membership tests below run ~5x faster (the order of a draw
            # does not matter: what is kept is sorted again)
            draw = np.sort(rng.integers(0, total, size=size, dtype=np.int64))
            for e in excludes:
                draw = draw[~_in_excluded(draw, e)]
            keys = _sorted_unique(np.concatenate([keys, draw]))
        if keys.shape[0] > n:
            keys = keys[np.sort(rng.choice(keys.shape[0], size=n, replace=False))]
    return keys // n_in, keys % n_in


def _random_pick(ctx, n, rng):
    rows, cols = sample_absent(ctx.W.n_out, ctx.W.n_in, n, rng, pattern_keys(ctx.W))
    return rows, cols, 0


@dataclass
class GrowthContext:
    """What a strategy may look at when choosing the connections of one layer.

    Attributes
    ----------
    layer_index : int
    W : CSRMatrix
        The layer's weight after pruning (its connections are excluded).
    removed_rows, removed_cols : int64 ndarray
        Connections pruned in this same step.
    A_in : ndarray, shape (n_in, S) or None
        Input-side activations (layer l-1's output; the raw input for layer 0).
    A_out : ndarray, shape (n_out, S) or None
        Output-side activations (layer l's output; softmax for the last layer).
    G_out : ndarray, shape (n_out, S) or None
        Gradient of the loss at layer l's outputs (before the activation),
        over the samples of ``A_in``; given to strategies that
        :attr:`~GrowthStrategy.needs_gradients` (then ``A_out`` is None).
    backend : str
    block_bytes : int
        Memory budget of one block in :func:`~ctre_sparse.ops.topk_cosine`.
    cosine_approx_dim : int or None
        Sketch dimension of :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch`
        (its default ``rank``); None with ``cosine_mode="sketch"``: 128.
    cosine_approx_oversample : int
        ``oversample`` of :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch`.
    cosine_mode : {"exact", "sketch", "index"}
        How the cosine picks are found: :func:`~ctre_sparse.ops.topk_cosine`,
        :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch` or
        :func:`~ctre_sparse.cosine_index.topk_cosine_index` (its defaults).
        The approximate ones draw their randomness from the ``rng`` passed to
        :meth:`GrowthStrategy.choose`; exact leaves it untouched.
    topk_cosine : callable or None
        The exact top-k of cosine growth (``cosine_mode="exact"``), with the
        signature of :func:`~ctre_sparse.ops.topk_cosine`; None (the default)
        is that op. Data-parallel training passes the split one of its
        communicator.
    """

    layer_index: int
    W: object
    removed_rows: np.ndarray
    removed_cols: np.ndarray
    A_in: object = None
    A_out: object = None
    G_out: object = None
    backend: str = "auto"
    block_bytes: int = ops.TOPK_BLOCK_BYTES
    cosine_approx_dim: int = None
    cosine_approx_oversample: int = 4
    cosine_mode: str = "exact"
    topk_cosine: object = None


class GrowthStrategy:
    """Base class. Subclasses override :meth:`choose` (and, if stateful, the state methods)."""

    name = ""
    #: False for a strategy that leaves the topology alone (no pruning either).
    prunes = True

    @property
    def needs_activations(self):
        """Whether :meth:`choose` uses ``ctx.A_in`` / ``ctx.A_out`` at the next update."""
        return False

    @property
    def needs_gradients(self):
        """Whether :meth:`choose` uses ``ctx.A_in`` / ``ctx.G_out`` (wins over activations)."""
        return False

    def observe(self, monitor):
        """Record the monitored (validation) accuracy of the epoch just finished."""

    def choose(self, ctx, n, rng):
        """Pick ``n`` distinct connections absent from ``ctx.W``.

        Returns
        -------
        rows, cols : int64 ndarrays, shape (n,)
        n_cosine : int
            How many of them were chosen by score (cosine similarity, or the
            gradient for ``"rigl"``); the rest were drawn at random.
        """
        raise NotImplementedError

    def state_dict(self):
        """JSON-able state (the name, plus whatever the strategy remembers)."""
        return {"name": self.name}

    def load_state_dict(self, d):
        """Restore :meth:`state_dict`."""
        if d.get("name") != self.name:
            raise ValueError(f"state is for growth {d.get('name')!r}, this is {self.name!r}")

    def __repr__(self):
        return f"{type(self).__name__}()"


class RandomGrowth(GrowthStrategy):
    """SET: uniform among the absent connections."""

    name = "random"

    def choose(self, ctx, n, rng):
        """``n`` absent connections drawn uniformly (``n_cosine`` 0)."""
        return _random_pick(ctx, n, rng)


class CosineGrowth(GrowthStrategy):
    """The absent connections whose two neurons' activations are most alike (``|cos|``)."""

    name = "cosine"

    @property
    def needs_activations(self):
        """Always: the picks are scored on the activations."""
        return True

    def _cosine(self, ctx, n, rng):
        """The ``n`` best absent pairs by ``|cos|``, found as ``ctx.cosine_mode`` says.

        ``rng`` is drawn from only by the approximate modes (projection,
        k-means), so the exact path leaves the random stream untouched.
        """
        if ctx.A_in is None or ctx.A_out is None:
            raise ValueError(f"growth {self.name!r} needs the activations A_in and A_out")
        if ctx.cosine_mode == "exact":
            topk = ops.topk_cosine if ctx.topk_cosine is None else ctx.topk_cosine
            rows, cols, _ = topk(ctx.A_in, ctx.A_out, n, exclude=ctx.W,
                                 block_bytes=ctx.block_bytes, backend=ctx.backend)
        elif ctx.cosine_mode == "sketch":  # the sketch's own block default (grows with k)
            rows, cols, _ = cosine_sketch.topk_cosine_sketch(
                ctx.A_in, ctx.A_out, n, exclude=ctx.W, dim=ctx.cosine_approx_dim or 128,
                oversample=ctx.cosine_approx_oversample, random_state=rng,
                backend=ctx.backend)
        elif ctx.cosine_mode == "index":
            rows, cols, _ = cosine_index.topk_cosine_index(
                ctx.A_in, ctx.A_out, n, exclude=ctx.W, random_state=rng, backend=ctx.backend)
        else:
            raise ValueError(f"cosine_mode must be 'exact', 'sketch' or 'index', "
                             f"got {ctx.cosine_mode!r}")
        return rows.astype(np.int64), cols.astype(np.int64)

    def choose(self, ctx, n, rng):
        """The ``n`` best absent pairs by ``|cos|``, all counted as cosine picks."""
        rows, cols = self._cosine(ctx, n, rng)
        return rows, cols, int(rows.shape[0])


class CTRESeqGrowth(CosineGrowth):
    """CTRE-seq: cosine until the accuracy stalls for ``patience`` epochs, then random.

    Parameters
    ----------
    patience : int, default 40
        Epochs without improvement of the monitored accuracy before the
        switch to random growth (which is permanent).
    """

    name = "ctre_seq"

    def __init__(self, patience=40):
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.best = None
        self.wait = 0
        self.switched = False

    @property
    def needs_activations(self):
        """Until the switch to random growth."""
        return not self.switched

    def observe(self, monitor):
        """Count epochs without improvement of ``monitor``; switch after ``patience`` of them."""
        if monitor is None or self.switched:
            return
        monitor = float(monitor)
        if self.best is None or monitor > self.best:
            self.best, self.wait = monitor, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.switched = True
            logger.info("CTRE-seq: no improvement over %.6g for %d epochs; switching from "
                        "cosine to random growth", self.best, self.wait)

    def choose(self, ctx, n, rng):
        """Cosine picks before the switch, random ones after."""
        if self.switched:
            return _random_pick(ctx, n, rng)
        return super().choose(ctx, n, rng)

    def state_dict(self):
        """The name, ``patience``, the best monitored value, the wait and the switch."""
        return {"name": self.name, "patience": self.patience, "best": self.best,
                "wait": self.wait, "switched": self.switched}

    def load_state_dict(self, d):
        """Restore :meth:`state_dict`."""
        super().load_state_dict(d)
        self.patience = int(d["patience"])
        self.best = None if d["best"] is None else float(d["best"])
        self.wait = int(d["wait"])
        self.switched = bool(d["switched"])

    def __repr__(self):
        return f"CTRESeqGrowth(patience={self.patience})"


class CTRESimGrowth(CosineGrowth):
    """CTRE-sim: cosine picks, re-picks of just-pruned connections replaced by random ones.

    The random replacements are drawn among connections that are neither in
    the pruned matrix, nor among the kept cosine picks, nor pruned in this step
    (unless the layer is so dense that only pruned positions are left).
    """

    name = "ctre_sim"

    def choose(self, ctx, n, rng):
        """Cosine picks, those that re-add a connection pruned in this step replaced at random."""
        rows, cols = self._cosine(ctx, n, rng)
        xp = array_module(rows)  # the device of the layer: the bookkeeping stays there
        n_in = ctx.W.n_in
        picks = rows * n_in + cols
        pruned = xp.sort(ctx.removed_rows.astype(np.int64) * n_in + ctx.removed_cols)
        repicked = _in_set(picks, pruned, ctx.W.n_out * n_in)
        n_swap = int(xp.count_nonzero(repicked))
        keep = ~repicked
        if n_swap == 0:
            return rows, cols, int(rows.shape[0])
        n_keep = int(xp.count_nonzero(keep))
        exclude = [pattern_keys(ctx.W), xp.sort(picks[keep])]  # disjoint sorted key sets
        if ctx.W.n_out * n_in - ctx.W.nnz - n_keep - pruned.shape[0] >= n_swap:
            exclude.append(pruned)
        else:  # (nearly) dense layer: no room but the pruned positions themselves
            logger.debug("ctre_sim layer %d: too few absent connections; random "
                         "replacements may re-add pruned ones", ctx.layer_index)
        r_rows, r_cols = sample_absent(ctx.W.n_out, n_in, n_swap, rng, exclude)
        return (xp.concatenate([rows[keep], xp.asarray(r_rows)]),
                xp.concatenate([cols[keep], xp.asarray(r_cols)]), n_keep)


class RigLGrowth(GrowthStrategy):
    """RigL: the absent connections with the largest loss-gradient magnitude.

    The gradient of the loss with respect to an absent weight ``W[j, i]``
    (value 0) is ``G[j, :] . X[i, :]`` summed over the samples; the ``n``
    largest ``|.|`` among the absent pairs come from
    :func:`~ctre_sparse.ops.topk_abs_product`, in memory O(block + n). A
    just-pruned connection may be picked again (as in RigL, where the grow
    scores cover every connection inactive after the drop). Exact in every
    ``cosine_mode`` (the mode is for the cosine strategies only).
    """

    name = "rigl"

    @property
    def needs_gradients(self):
        """Always: the picks are scored on the loss gradients."""
        return True

    def choose(self, ctx, n, rng):
        """The ``n`` absent pairs with the largest ``|G_out[row] . A_in[col]|``."""
        if ctx.A_in is None or ctx.G_out is None:
            raise ValueError(f"growth {self.name!r} needs the layer inputs A_in and the "
                             "output gradients G_out")
        rows, cols, _ = ops.topk_abs_product(ctx.A_in, ctx.G_out, n, exclude=ctx.W,
                                             block_bytes=ctx.block_bytes, backend=ctx.backend)
        return rows.astype(np.int64), cols.astype(np.int64), int(rows.shape[0])


class StaticGrowth(GrowthStrategy):
    """No topology change at all (a static sparse network)."""

    name = "static"
    prunes = False

    def choose(self, ctx, n, rng):
        """Never called (``prunes`` is False): raises RuntimeError."""
        raise RuntimeError("static growth never grows connections")


GROWTH_STRATEGIES = {cls.name: cls for cls in
                     (RandomGrowth, CosineGrowth, CTRESeqGrowth, CTRESimGrowth, RigLGrowth,
                      StaticGrowth)}


def get_growth(name, *, patience=40):
    """Return the growth strategy called ``name`` (a strategy object passes through).

    Parameters
    ----------
    name : {"random", "set", "cosine", "ctre_seq", "ctre_sim", "rigl", "static"} or GrowthStrategy
        ``"set"`` is an alias of ``"random"``.
    patience : int, default 40
        Only for ``"ctre_seq"``.

    Examples
    --------
    >>> get_growth("ctre_seq", patience=3)
    CTRESeqGrowth(patience=3)
    """
    if isinstance(name, GrowthStrategy):
        return name
    if name == "set":
        name = "random"
    if name not in GROWTH_STRATEGIES:
        raise ValueError(f"growth must be one of {sorted(GROWTH_STRATEGIES) + ['set']}, "
                         f"got {name!r}")
    if name == "ctre_seq":
        return CTRESeqGrowth(patience)
    return GROWTH_STRATEGIES[name]()
