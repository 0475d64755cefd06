"""The training loop: mini-batch SGD epochs with a topology update between epochs.

One epoch (:meth:`Trainer.run_epoch`) is:

1. from the second epoch on, the topology update (prune, regrow) of the
   previous epoch's end, with the monitored accuracy of that epoch (the
   validation accuracy, or the training accuracy without validation data);
   doing it here rather than at the end of an epoch means the model is never
   left with freshly grown, untrained connections when training stops;
2. mini-batches in a random order: forward, softmax cross-entropy, backward,
   SGD step; a non-finite loss raises :class:`TrainingDivergedError`, and so
   does an epoch whose mean loss exceeds :data:`DIVERGED_LOSS` (exploding
   weights that are still finite);
3. validation accuracy, a record, logging.

All randomness (batch order, dropout, sample subset and random growth, new
weights) comes from the trainer's one ``Generator``, whose state is part of
:meth:`Trainer.state_dict`: a run resumed from a state dict ends bit-identical
to the uninterrupted run.

The same loop runs on NumPy arrays (CPU) and on CuPy arrays (a model moved
by ``to_device("cuda")``), with no host round trip per batch: the training
(and validation) data are put on the model's device once and cached, each
batch is gathered there (:func:`~ctre_sparse.ops.gather_columns`), and the
per-batch losses and correct counts are written into arrays of that device,
read once at the end of the epoch. A non-finite loss is therefore reported
at the end of the epoch, naming the first bad batch. The batch order,
topology draws and new weights come from the host generator (one
permutation per epoch; O(k) per layer per topology update), so they are the
same on either device; on the GPU, dropout masks come from a CuPy generator
seeded once per epoch from the host generator
(:func:`~ctre_sparse.device.dropout_generator`).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ._random import check_random_state
from .device import (array_module, as_array, dropout_generator, empty_aligned, synchronize,
                     to_host, to_module)
from .training_ops import gather_columns

logger = logging.getLogger(__name__)

__all__ = ["TrainingDivergedError", "Trainer", "accuracy", "DIVERGED_LOSS"]


#: Mean cross-entropy (nats) above which an epoch counts as diverged although finite: the
#: true class gets probability e**-1000 on average, a state no healthy network reaches (an
#: untrained one sits at about log(n_classes)), and the weights that give it are on their way
#: to overflowing the activations.
DIVERGED_LOSS = 1e3


class TrainingDivergedError(RuntimeError):
    """The loss exploded (NaN, Inf, or above :data:`DIVERGED_LOSS`) or a weight became NaN/Inf."""


def accuracy(codes, y):
    """Fraction of ``codes == y`` (NumPy, or CuPy arrays on one device)."""
    return float(array_module(codes).mean(codes == y)) if y.shape[0] else float("nan")


class Trainer:
    """Train a :class:`~ctre_sparse.nn.SparseMLP` with SGD and dynamic topology.

    Parameters
    ----------
    model : SparseMLP
    optimizer : SGD
    updater : TopologyUpdater or None
        None trains a static sparse network.
    batch_size : int, default 100
    random_state : int, Generator or None
        Seeds the trainer's generator (batch order, dropout, topology).
    callbacks : sequence
        Objects with ``on_epoch_end(trainer, record)`` (or plain callables
        with that signature); one may set ``trainer.stop = True``.
    eval_batch_size : int, default 1024
        Chunk size when computing the validation accuracy.
    communicator : MPICommunicator, optional
        Data-parallel training (:mod:`ctre_sparse.distributed`): this
        process is one rank of several training one model; ``batch_size`` is
        the global batch, of which this rank computes its shard. None (the
        default): one process.

    Attributes
    ----------
    epoch : int
        Number of epochs completed.
    history : list of dict
        One record per completed epoch (see :meth:`run_epoch`).
    stop : bool
        Set by a callback to end :meth:`fit` after the current epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from ctre_sparse.nn import SparseMLP, SGD
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((5, 60)).astype(np.float32); y = (X[0] > 0).astype(np.int64)
    >>> model = SparseMLP([5, 8, 2], epsilon=2, random_state=0, backend="reference")
    >>> trainer = Trainer(model, SGD(0.1), batch_size=20, random_state=0)
    >>> records = trainer.fit(X, y, epochs=3)
    >>> len(records), records[-1]["epoch"]
    (3, 3)
    """

    def __init__(self, model, optimizer, updater=None, *, batch_size=100, random_state=None,
                 callbacks=(), eval_batch_size=1024, communicator=None):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model = model
        self.optimizer = optimizer
        self.updater = updater
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.callbacks = list(callbacks)
        self.communicator = communicator
        self.rng = check_random_state(random_state)
        self.epoch = 0
        self.history = []
        self.stop = False
        self._monitor = None
        self._xbuf = None
        self._device_data = {}
        optimizer.to_device(model.device)

    def to_device(self, device):
        """Move the model and the optimizer state to ``"cpu"`` or ``"cuda"``.

        Parameters
        ----------
        device : {"cpu", "cuda"}

        Returns
        -------
        self
        """
        self.model.to_device(device)
        self.optimizer.to_device(device)
        self.clear_device_cache()
        return self

    def clear_device_cache(self):
        """Drop the device copies of the data sets and the batch buffer (frees GPU memory)."""
        self._device_data = {}
        self._xbuf = None

    def _device_arrays(self, X, y):
        """``X``, ``y`` on the model's device: copied once per data set, then cached.

        The cache is keyed by the identity of the arrays given (and keeps
        them alive, so the key stays valid); it holds the training and the
        validation set. Arrays already on the device (host arrays for a CPU
        model) pass through.
        """
        xp = self.model.xp
        if array_module(X) is xp and array_module(y) is xp:
            return X, y
        key = (id(X), id(y))
        hit = self._device_data.get(key)
        if hit is None:
            if len(self._device_data) >= 2:
                self._device_data.clear()
            hit = (X, y, to_module(X, xp), to_module(y, xp))
            self._device_data[key] = hit
            logger.debug("copied a data set of shape %s to the device", X.shape)
        return hit[2], hit[3]

    # ------------------------------------------------------------ checks
    def _check_data(self, X, y, name="X"):
        model = self.model
        if not hasattr(X, "ndim") or X.ndim != 2 or X.shape[0] != model.layer_sizes[0]:
            raise ValueError(f"{name} must be feature-major with shape "
                             f"({model.layer_sizes[0]}, n_samples), got "
                             f"{getattr(X, 'shape', type(X).__name__)}")
        if X.dtype != model.dtype or not (X.flags.c_contiguous or X.flags.f_contiguous):
            logger.debug("casting %s to %s (a copy)", name, model.dtype)
            X = X.astype(model.dtype, order="F" if X.flags.f_contiguous else "C")
        y = as_array(y)
        if y.shape != (X.shape[1],) or y.dtype.kind not in "iu":
            raise ValueError(f"labels for {name} must be integer codes of shape ({X.shape[1]},), "
                             f"got {y.dtype} with shape {y.shape}")
        n_classes = model.layer_sizes[-1]
        if y.shape[0] and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ValueError(f"labels for {name} must lie in [0, {n_classes}), found "
                             f"[{int(y.min())}, {int(y.max())}]")
        return X, y.astype(np.int64, copy=False)

    def _diverged(self, what):
        raise TrainingDivergedError(
            f"training diverged at epoch {self.epoch + 1}: {what}; lower the learning rate "
            f"(now {self.optimizer.current_lr:g}) or check the input scaling")

    # ------------------------------------------------------------ epoch
    def _update_topology(self, X, y):
        if self.updater is None or self.epoch == 0:
            return {"n_pruned": 0, "n_cosine": 0, "n_random": 0}, 0.0
        t0 = time.perf_counter()
        stats = self.updater.update(self.model, X, y, optimizer=self.optimizer,
                                    val_accuracy=self._monitor, rng=self.rng,
                                    communicator=self.communicator)
        synchronize(self.model.xp)  # the GPU's queued work belongs to the topology time
        return stats, time.perf_counter() - t0

    def _batch(self, X, idx):
        """Columns ``idx`` of ``X`` as a C-contiguous (n_features, batch) buffer of the trainer."""
        shape = (X.shape[0], idx.shape[0])
        buf = self._xbuf
        if buf is None or buf.shape != shape or buf.dtype != X.dtype or \
                array_module(buf) is not array_module(X):
            self._xbuf = buf = empty_aligned(self.model.xp, shape, X.dtype)
        return gather_columns(X, idx, out=buf, backend=self.model.backend)

    def _train_batches(self, X, y):
        """The epoch's mini-batches, with one read of the model's device at the end.

        Losses and correct counts go to arrays of the model's device; a
        non-finite loss raises at the end of the epoch, naming the first bad
        batch (the batches after it ran on NaN weights).
        """
        model, opt, rng, bs = self.model, self.optimizer, self.rng, self.batch_size
        xp = model.xp
        n = X.shape[1]
        order = xp.asarray(rng.permutation(n))
        comm = self.communicator
        drop_rng = (dropout_generator(rng, xp, needed=model.dropout > 0) if comm is None
                    else comm.dropout_generator(rng, model.dropout))
        n_batches = -(-n // bs)
        losses = xp.empty(n_batches, dtype=xp.float64)
        correct = xp.empty(n_batches, dtype=xp.int64)
        for b in range(n_batches):
            idx = xp.sort(order[b * bs:(b + 1) * bs])  # sorted: a faster gather, same batch
            if comm is None:
                yb = y[idx]
                P = model.forward(self._batch(X, idx), training=True, rng=drop_rng)
                correct[b] = xp.count_nonzero(xp.argmax(P, axis=0) == yb)
                losses[b] = model.backward(yb)
            else:
                losses[b], correct[b] = self._shard_step(X, y, idx, drop_rng)
            opt.step(model)
        finite = xp.stack([xp.all(xp.isfinite(layer.W.data)) & xp.all(xp.isfinite(layer.b))
                           for layer in model.layers])
        return self._epoch_totals(to_host(losses), to_host(correct), to_host(finite), n)

    def _shard_step(self, X, y, idx, drop_rng):
        """Data-parallel forward and backward of this rank's shard of the batch ``idx``.

        The gradients are those of the whole batch's mean loss (divided by its
        size, not the shard's) and are summed over the ranks, with the loss
        and the correct count, by the communicator: every rank then holds the
        whole batch's gradient. Returns ``(loss, correct)`` of the whole batch.
        """
        comm, model = self.communicator, self.model
        n_batch = idx.shape[0]
        idx = comm.shard(idx)
        yb = y[idx]
        P = model.forward(self._batch(X, idx), training=True, rng=drop_rng)
        n_correct = int(np.count_nonzero(np.argmax(P, axis=0) == yb))
        loss = model.backward(yb, n_total=n_batch)
        return comm.allreduce_gradients(model, loss, n_correct)

    def _epoch_totals(self, losses, correct, finite, n):
        """Mean loss and accuracy from per-batch host arrays; raises on divergence."""
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.shape[0]:
            self._diverged(f"loss is {float(losses[bad[0]])} at batch {int(bad[0]) + 1}")
        for i, ok in enumerate(finite.tolist()):
            if not ok:
                self._diverged(f"layer {i} has non-finite weights")
        bs = self.batch_size
        total_loss = 0.0
        for b, loss in enumerate(losses.tolist()):  # the CPU loop's order and arithmetic
            total_loss += loss * (min(n, (b + 1) * bs) - b * bs)
        return total_loss / max(n, 1), int(correct.sum()) / max(n, 1)

    def run_epoch(self, X, y, X_val=None, y_val=None):
        """Train one epoch (preceded by the pending topology update).

        Parameters
        ----------
        X : ndarray, shape (n_features, n_samples)
            Training data, cast to the model dtype if needed. C order
            (feature-major memory) or F order, i.e. the transpose ``X_sm.T`` of
            a C-contiguous sample-major array, which needs no copy and makes
            the batch gather faster (whole sample rows are copied).
        y : int ndarray, shape (n_samples,)
            Class codes.
        X_val, y_val : optional
            Validation data, same layout.

        Returns
        -------
        dict
            ``epoch`` (1-based count of completed epochs), ``train_loss``
            (mean over the epoch's batches), ``train_accuracy`` (of the
            training-mode predictions during the epoch), ``val_accuracy``
            (None without validation data), ``learning_rate``, ``seconds``
            (whole epoch, topology included), ``topology_seconds``,
            ``n_pruned``, ``n_cosine``, ``n_random``, ``cosine_modes`` (of the
            topology update done at the start of this epoch; 0 and None for
            the first; ``cosine_modes`` lists each layer's cosine mode) and
            ``n_connections``.

        Raises
        ------
        TrainingDivergedError
            When the loss or a weight becomes NaN/Inf.
        """
        t0 = time.perf_counter()
        X, y = self._check_data(X, y)
        if X.shape[1] == 0:
            raise ValueError("X has no samples (shape (n_features, 0)); need at least one")
        if X_val is not None:
            X_val, y_val = self._check_data(X_val, y_val, "X_val")
        if self.communicator is not None and self.model.device != "cpu":
            raise ValueError("data-parallel (MPI) training runs on the CPU only; move the model "
                             "to the CPU or train without a communicator")
        X, y = self._device_arrays(X, y)
        if X_val is not None:
            X_val, y_val = self._device_arrays(X_val, y_val)
        topo, topo_seconds = self._update_topology(X, y)
        lr = self.optimizer.start_epoch(self.epoch)
        train_loss, train_acc = self._train_batches(X, y)
        if not train_loss <= DIVERGED_LOSS:   # caught before the next topology update uses it
            self._diverged(f"the mean loss of the epoch is {train_loss:.4g} "
                           f"(> {DIVERGED_LOSS:g}: exploding weights)")
        val_acc = None
        if X_val is not None and self.communicator is not None:
            val_acc = self.communicator.accuracy(self.model, X_val, y_val, self.eval_batch_size)
        elif X_val is not None:
            val_acc = accuracy(self.model.predict_codes(X_val, self.eval_batch_size), y_val)
        self._monitor = val_acc if val_acc is not None else train_acc
        self.epoch += 1
        record = {"epoch": self.epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                  "val_accuracy": val_acc, "learning_rate": lr,
                  "seconds": time.perf_counter() - t0, "topology_seconds": topo_seconds,
                  "n_pruned": int(topo["n_pruned"]), "n_cosine": int(topo["n_cosine"]),
                  "n_random": int(topo["n_random"]), "cosine_modes": topo.get("cosine_modes"),
                  "n_connections": int(self.model.n_connections)}
        if self.communicator is not None:   # same model on every rank; communication figures
            record.update(self.communicator.end_epoch(self.model))
        self.history.append(record)
        logger.info("epoch %d: loss %.4f, train acc %.4f, val acc %s, %.2fs (topology %.2fs, "
                    "%d cosine + %d random)", self.epoch, train_loss, train_acc,
                    "n/a" if val_acc is None else f"{val_acc:.4f}", record["seconds"],
                    topo_seconds, record["n_cosine"], record["n_random"])
        return record

    def fit(self, X, y, X_val=None, y_val=None, epochs=10):
        """Run epochs until ``self.epoch == epochs`` or a callback sets ``stop``.

        ``epochs`` is the total count: a trainer resumed at epoch 5 runs
        epochs 6..``epochs``.

        Returns
        -------
        list of dict
            The records of the epochs run by this call.
        """
        self.stop = False
        records = []
        while self.epoch < int(epochs) and not self.stop:
            record = self.run_epoch(X, y, X_val, y_val)
            records.append(record)
            for cb in self.callbacks:
                (cb.on_epoch_end if hasattr(cb, "on_epoch_end") else cb)(self, record)
        return records

    # ------------------------------------------------------------ state
    def state_dict(self):
        """Everything a bit-identical resume needs.

        Returns
        -------
        dict
            ``epoch``, ``monitor`` (last monitored accuracy or None), ``rng``
            (``bit_generator.state``, JSON-able, with Python ints that may
            exceed 64 bits), ``history`` (list of records), ``model``,
            ``optimizer`` and ``updater`` (their state dicts; ``updater`` None
            without one).
        """
        return {"epoch": self.epoch, "monitor": self._monitor,
                "rng": self.rng.bit_generator.state, "history": [dict(r) for r in self.history],
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "updater": None if self.updater is None else self.updater.state_dict()}

    def load_state_dict(self, d):
        """Restore :meth:`state_dict` into this trainer and its model/optimizer/updater."""
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.optimizer.check_state(self.model)
        self.optimizer.to_device(self.model.device)     # saved momentum is NumPy
        if (d["updater"] is None) != (self.updater is None):
            raise ValueError("state and trainer disagree on having a topology updater")
        if self.updater is not None:
            self.updater.load_state_dict(d["updater"])
        self.rng = _restored_generator(self.rng, d["rng"])
        self.epoch = int(d["epoch"])
        self._monitor = None if d["monitor"] is None else float(d["monitor"])
        self.history = [dict(r) for r in d["history"]]
        self.stop = False


#: The bit generators a saved random state may name (a file is untrusted input: a name is
#: looked up in this table, never as an attribute of ``numpy.random``).
_BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM,
                                                  np.random.Philox, np.random.SFC64,
                                                  np.random.MT19937)}


def _restored_generator(rng, state):
    """``rng`` set to the saved bit-generator ``state`` (a new Generator if the kind differs)."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"the saved random state names bit generator {name!r}; expected one "
                         f"of {sorted(_BIT_GENERATORS)}")
    if name != type(rng.bit_generator).__name__:
        rng = np.random.Generator(_BIT_GENERATORS[name]())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"the saved random state of {name} is malformed ({exc})") from None
    return rng
