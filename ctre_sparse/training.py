"""The training loop: mini-batch SGD epochs with a topology update between epochs.

One epoch (:meth:`Trainer.run_epoch`) is:

1. from the second epoch on, the topology update (prune, regrow) of the
   previous epoch's end, with the monitored accuracy of that epoch (the
   validation accuracy, or the training accuracy without validation data);
   doing it here rather than at the end of an epoch means the model is never
   left with freshly grown, untrained connections when training stops;
2. mini-batches in a random order: forward, softmax cross-entropy, backward,
   SGD step; a non-finite loss raises :class:`TrainingDivergedError`;
3. validation accuracy, a record, logging.

All randomness (batch order, dropout, sample subset and random growth, new
weights) comes from the trainer's one ``Generator``, whose state is part of
:meth:`Trainer.state_dict`: a run resumed from a state dict ends bit-identical
to the uninterrupted run.

On the GPU (a model moved by ``to_device("cuda")``) the same loop runs on CuPy
arrays, with no host round trip per batch: the training (and validation)
data are copied to the device once and cached, each batch is gathered there,
and the per-batch losses and correct counts are written into device arrays
read once at the end of the epoch. A non-finite loss is therefore detected
at the end of the epoch (naming the first bad batch), not at the batch
itself. The batch order, topology draws and new weights still come from the
host generator (one permutation copied per epoch; O(k) per layer per
topology update), so they are the CPU's; dropout masks come from a CuPy
generator seeded once per epoch from the host generator.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ._device import device_generator, synchronize, to_host, to_module
from ._random import check_random_state
from .nn import _cpu_kernels
from .sparse import array_module

logger = logging.getLogger(__name__)

__all__ = ["TrainingDivergedError", "Trainer", "accuracy"]


class TrainingDivergedError(RuntimeError):
    """The loss (or a weight) became NaN or Inf during training."""


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
        self._xbuf = self._rowbuf = None
        self._device_data = {}
        if getattr(model, "device", "cpu") != "cpu":
            optimizer.to_device(model.device)

    def to_device(self, device):
        """Move the model and the optimizer state to ``"cpu"`` or ``"cuda"``; returns self."""
        self.model.to_device(device)
        self.optimizer.to_device(device)
        self._xbuf = self._rowbuf = None
        self._device_data = {}
        return self

    def clear_device_cache(self):
        """Drop the device copies of the data sets and the batch buffers (frees GPU memory)."""
        self._device_data = {}
        self._xbuf = self._rowbuf = None

    def _device_arrays(self, X, y):
        """``X``, ``y`` on the model's device: copied once per data set, then cached.

        The cache is keyed by the identity of the arrays given (and keeps
        them alive, so the key stays valid); it holds the training and the
        validation set. Arrays already on the device pass through.
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
        y = np.asarray(y) if array_module(y) is np else y
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
    def _update_topology(self, X):
        if self.updater is None or self.epoch == 0:
            return {"n_pruned": 0, "n_cosine": 0, "n_random": 0}, 0.0
        t0 = time.perf_counter()
        stats = self.updater.update(self.model, X, optimizer=self.optimizer,
                                    val_accuracy=self._monitor, rng=self.rng,
                                    communicator=self.communicator)
        synchronize(self.model.xp)  # the GPU's queued work belongs to the topology time
        return stats, time.perf_counter() - t0

    def _batch(self, X, idx):
        """Columns ``idx`` of ``X`` as a C-contiguous (n_features, batch) buffer."""
        shape = (X.shape[0], idx.shape[0])
        if self._xbuf is None or self._xbuf.shape != shape or self._xbuf.dtype != X.dtype:
            self._xbuf = np.empty(shape, dtype=X.dtype)
            self._rowbuf = np.empty(shape[::-1], dtype=X.dtype)
        if X.flags.c_contiguous:
            if _cpu_kernels.AVAILABLE and idx.size and 0 <= idx.min() and idx.max() < X.shape[1]:
                _cpu_kernels.gather_columns(X, idx, self._xbuf)  # parallel: ~2x np.take here
                return self._xbuf
            return np.take(X, idx, axis=1, out=self._xbuf, mode="clip")
        # F-ordered (a transposed sample-major array): gather whole rows, then transpose
        np.take(X.T, idx, axis=0, out=self._rowbuf, mode="clip")
        np.copyto(self._xbuf, self._rowbuf.T)
        return self._xbuf

    def _train_batches(self, X, y):
        model, opt, rng, bs = self.model, self.optimizer, self.rng, self.batch_size
        comm = self.communicator
        n = X.shape[1]
        order = rng.permutation(n)
        drop_rng = rng if comm is None else comm.dropout_generator(rng, model.dropout)
        total_loss, correct = 0.0, 0
        for s in range(0, n, bs):
            idx = np.sort(order[s:s + bs])  # sorted: a faster gather, same batch
            n_batch = idx.shape[0]
            if comm is not None:
                idx = comm.shard(idx)       # data-parallel: this rank's part of the batch
            yb = y[idx]
            P = model.forward(self._batch(X, idx), training=True, rng=drop_rng)
            n_correct = int(np.count_nonzero(np.argmax(P, axis=0) == yb))
            if comm is None:
                loss = model.backward(yb)
            else:   # the shards' gradients, loss and counts summed over the ranks
                loss = model.backward(yb, n_total=n_batch)
                loss, n_correct = comm.allreduce_gradients(model, loss, n_correct)
            correct += n_correct
            if not np.isfinite(loss):
                self._diverged(f"loss is {loss} at batch {s // bs + 1}")
            opt.step(model)
            total_loss += loss * n_batch
        for i, layer in enumerate(model.layers):
            if not (np.all(np.isfinite(layer.W.data)) and np.all(np.isfinite(layer.b))):
                self._diverged(f"layer {i} has non-finite weights")
        return total_loss / max(n, 1), correct / max(n, 1)

    def _batch_device(self, X, idx):
        """:meth:`_batch` on the device: columns ``idx`` of ``X``, C-contiguous, no host copy."""
        xp = self.model.xp
        shape = (X.shape[0], idx.shape[0])
        buf = self._xbuf
        if buf is None or buf.shape != shape or buf.dtype != X.dtype or \
                array_module(buf) is not xp:
            self._xbuf = xp.empty(shape, dtype=X.dtype)
            self._rowbuf = xp.empty(shape[::-1], dtype=X.dtype)
        if X.flags.c_contiguous:
            return xp.take(X, idx, axis=1, out=self._xbuf)
        xp.take(X.T, idx, axis=0, out=self._rowbuf)  # F order: whole sample rows, then transpose
        xp.copyto(self._xbuf, self._rowbuf.T)
        return self._xbuf

    def _train_batches_device(self, X, y):
        """The epoch's batches on the GPU, with one read of the device at the end.

        Same batches as :meth:`_train_batches` (the host generator's
        permutation, copied once). Losses and correct counts go to device
        arrays; a non-finite loss raises at the end of the epoch, naming the
        first bad batch (the batches after it ran on NaN weights).
        """
        model, opt, rng, bs = self.model, self.optimizer, self.rng, self.batch_size
        xp = model.xp
        n = X.shape[1]
        order = xp.asarray(rng.permutation(n))
        drop_rng = device_generator(rng.integers(2**62)) if model.dropout > 0 else None
        n_batches = -(-n // bs)
        losses = xp.empty(n_batches, dtype=xp.float64)
        correct = xp.empty(n_batches, dtype=xp.int64)
        for b in range(n_batches):
            idx = xp.sort(order[b * bs:(b + 1) * bs])
            yb = y[idx]
            P = model.forward(self._batch_device(X, idx), training=True, rng=drop_rng)
            correct[b] = xp.count_nonzero(xp.argmax(P, axis=0) == yb)
            losses[b] = model.backward(yb)
            opt.step(model)
        finite = xp.stack([xp.all(xp.isfinite(layer.W.data)) & xp.all(xp.isfinite(layer.b))
                           for layer in model.layers])
        return self._epoch_totals(to_host(losses), to_host(correct), to_host(finite), n)

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
            ``n_pruned``, ``n_cosine``, ``n_random`` (of the topology update
            done at the start of this epoch; 0 for the first) and
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
        on_device = self.model.xp is not np
        if on_device and self.communicator is not None:
            raise ValueError("data-parallel (MPI) training runs on the CPU only; move the model "
                             "to the CPU or train without a communicator")
        if on_device:
            X, y = self._device_arrays(X, y)
            if X_val is not None:
                X_val, y_val = self._device_arrays(X_val, y_val)
        topo, topo_seconds = self._update_topology(X)
        lr = self.optimizer.start_epoch(self.epoch)
        train = self._train_batches_device if on_device else self._train_batches
        train_loss, train_acc = train(X, y)
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
                  "n_random": int(topo["n_random"]),
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
        if getattr(self.model, "device", "cpu") != "cpu":     # saved momentum is NumPy
            self.optimizer.to_device(self.model.device)
        if (d["updater"] is None) != (self.updater is None):
            raise ValueError("state and trainer disagree on having a topology updater")
        if self.updater is not None:
            self.updater.load_state_dict(d["updater"])
        state = d["rng"]
        if state["bit_generator"] != type(self.rng.bit_generator).__name__:
            self.rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
        self.rng.bit_generator.state = state
        self.epoch = int(d["epoch"])
        self._monitor = None if d["monitor"] is None else float(d["monitor"])
        self.history = [dict(r) for r in d["history"]]
        self.stop = False
