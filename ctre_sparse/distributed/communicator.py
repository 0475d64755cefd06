"""The communicator of data-parallel training: what the trainer, the topology
updater and the estimator ask of MPI, in one object.

Every rank holds the whole model and the whole data set. Per mini-batch,
each rank computes the forward and backward pass of its shard of the
global batch (:meth:`MPICommunicator.shard`), then
:meth:`~MPICommunicator.allreduce_gradients` sums the gradients with one
``MPI_Allreduce`` per layer (the layer's ``W.data``-aligned weight gradient,
its bias gradient, and on the last layer the batch's loss and correct
count, in one flat buffer that the layer's gradient arrays are views of,
so nothing is copied); every rank then applies the same update and the
models stay identical (checked after every epoch, :meth:`~MPICommunicator.end_epoch`).
The topology update splits its cosine top-k by output neurons
(:meth:`~MPICommunicator.topk_cosine`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import zlib

import numpy as np

from .. import ops
from .split import merge_topk, row_block, shard_bounds
from .watchdog import Heartbeat

logger = logging.getLogger(__name__)

__all__ = ["MPICommunicator", "RanksDivergedError", "import_mpi", "mpi_size_from_env",
           "model_digest", "ENV_TIMEOUT", "DEFAULT_TIMEOUT", "EXIT_RANK_LOST"]

#: Environment variable: seconds without a heartbeat before a rank counts as lost.
ENV_TIMEOUT = "CTRE_SPARSE_MPI_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
#: Exit status of every rank when a lost rank ends the job (EX_TEMPFAIL: resume it).
EXIT_RANK_LOST = 75
#: Seconds between reporting a fatal error and MPI_Abort: the launcher forwards the ranks'
#: stderr through pipes and may exit on the abort before it has read them (the message
#: was seen lost that way under load).
ABORT_GRACE = 1.0
#: Environment variables in which MPI launchers announce the number of processes.
_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
                       "PMIX_SIZE")


class RanksDivergedError(RuntimeError):
    """The ranks' models differ after an epoch (they must stay identical)."""


def import_mpi():
    """``mpi4py.MPI``, or a RuntimeError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise RuntimeError(f"distributed training needs mpi4py and an MPI library, which are "
                           f"not importable here ({exc}); install them with "
                           f"pip install 'ctre_sparse[mpi]'") from None
    return MPI


def mpi_size_from_env(environ=None):
    """The number of processes an MPI launcher started, from its environment; None if none did.

    Examples
    --------
    >>> mpi_size_from_env({"PMI_SIZE": "4"}), mpi_size_from_env({})
    (4, None)
    """
    environ = os.environ if environ is None else environ
    for name in _LAUNCHER_SIZE_VARS:
        value = environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return None


def model_digest(model):
    """CRC-32 of every layer's pattern, weights and bias (equal models, equal digests)."""
    crc = 0
    for layer in model.layers:
        for arr in (layer.W.indptr, layer.W.indices, layer.W.data, layer.b):
            crc = zlib.crc32(np.ascontiguousarray(arr).view(np.uint8), crc)
    return crc


def _timeout_from_env():
    text = os.environ.get(ENV_TIMEOUT)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{ENV_TIMEOUT} must be a number of seconds > 0, got {text!r}")
    return value


def _report_fatal(message):
    """Log ``message`` at CRITICAL; also on stderr when logging is not configured.

    The process is ended right after (MPI_Abort), so the report must not
    depend on the application having set up logging; it is flushed, then
    the launcher is given :data:`ABORT_GRACE` seconds to forward it.
    """
    logger.critical(message)
    if not logging.getLogger().handlers:
        sys.stderr.write(f"ctre-sparse: {message}\n")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    time.sleep(ABORT_GRACE)


class MPICommunicator:
    """Data-parallel training over the ranks of an MPI communicator.

    Creating one is collective (every rank of ``comm`` must do it); so is
    every method except :meth:`shard`, :meth:`dropout_generator` and
    :meth:`abort`. Call :meth:`close` on every rank when done.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        Default ``MPI.COMM_WORLD``. Duplicated: the training traffic never
        mixes with the application's.
    timeout : float, optional
        Seconds without a heartbeat from a rank before it counts as lost and
        the job is aborted (:mod:`~ctre_sparse.distributed.watchdog`);
        default ``$CTRE_SPARSE_MPI_TIMEOUT`` or 10.
    limit_threads : bool, default True
        When several ranks share a machine and neither ``OMP_NUM_THREADS``
        nor ``NUMBA_NUM_THREADS`` is set, give each rank its share of the
        cores (the native kernels', numba's and BLAS's threads; restored by
        :meth:`close`), so that the ranks do not oversubscribe the cores.

    Attributes
    ----------
    rank, size : int
    peers : list of (str, int)
        Host name and process id of every rank.
    stats : dict
        Running totals: ``allreduce_seconds``, ``allreduce_bytes``,
        ``n_allreduce`` (gradient reductions: wall time includes waiting for
        the slowest rank), ``topk_seconds`` (the split cosine top-k, gather
        included), ``gather_seconds``, ``gather_bytes`` (top-k candidates),
        ``n_batches``.
    """

    def __init__(self, comm=None, *, timeout=None, limit_threads=True):
        MPI = import_mpi()
        self._MPI = MPI
        self.timeout = _timeout_from_env() if timeout is None else float(timeout)
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        base = MPI.COMM_WORLD if comm is None else comm
        self.comm = base.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.peers = self.comm.allgather((socket.gethostname(), os.getpid()))
        self.stats = dict.fromkeys(("allreduce_seconds", "allreduce_bytes", "n_allreduce",
                                    "topk_seconds", "gather_seconds", "gather_bytes",
                                    "n_batches"), 0)
        self._epoch_start = dict(self.stats)
        self._bufs = {}
        self._closed = False
        self._restore_threads = _limit_threads(self.comm, MPI) if limit_threads else None
        self._hb_comm = self._heartbeat = None
        if self.size > 1:
            if MPI.Query_thread() >= MPI.THREAD_MULTIPLE:
                self._hb_comm = self.comm.Dup()
                self._heartbeat = Heartbeat(self._hb_comm, self.timeout, self._lost).start()
            else:
                logger.warning("MPI was initialized without MPI_THREAD_MULTIPLE: no heartbeat "
                               "watchdog, a lost rank may leave the others waiting")

    # ------------------------------------------------------------ describing
    @property
    def is_root(self):
        """Whether this is rank 0 (the one that writes files)."""
        return self.rank == 0

    def describe(self):
        """One line: the ranks, their hosts and process ids."""
        where = ", ".join(f"rank {r}: pid {pid} on {host}"
                          for r, (host, pid) in enumerate(self.peers))
        return f"{self.size} MPI ranks ({where})"

    def __repr__(self):
        return f"MPICommunicator(rank={self.rank}, size={self.size}, timeout={self.timeout})"

    def __getstate__(self):
        raise TypeError("an MPICommunicator holds live MPI handles and cannot be pickled")

    # ------------------------------------------------------------ a training step
    def shard(self, idx):
        """This rank's contiguous part of the global batch ``idx`` (may be empty)."""
        lo, hi = shard_bounds(idx.shape[0], self.rank, self.size)
        return idx[lo:hi]

    def dropout_generator(self, rng, dropout):
        """The generator of this rank's dropout masks for one epoch; None without dropout.

        Seeded from one draw of the shared ``rng`` (the same on every rank, so
        the shared stream stays in step) and the rank: the ranks' masks are
        independent, and do not repeat those of a single-process run.
        """
        if not dropout > 0:
            return None
        return np.random.default_rng([int(rng.integers(2**62)), self.rank])

    def _gradient_buffer(self, i, layer, extra):
        """Layer ``i``'s flat buffer ``[grad_W, grad_b, extra]``, the gradients made views of it.

        After a topology change the layer holds fresh gradient arrays: they
        are copied in once and replaced by views, so the following batches
        compute their gradients in the buffer itself.
        """
        nnz, n_out = layer.grad_W.shape[0], layer.grad_b.shape[0]
        buf = self._bufs.get(i)
        if (buf is not None and buf.shape[0] == nnz + n_out + extra
                and layer.grad_W.base is buf and layer.grad_b.base is buf):
            return buf
        buf = np.empty(nnz + n_out + extra, dtype=layer.grad_W.dtype)
        buf[:nnz] = layer.grad_W
        buf[nnz:nnz + n_out] = layer.grad_b
        layer.grad_W, layer.grad_b = buf[:nnz], buf[nnz:nnz + n_out]
        self._bufs[i] = buf
        return buf

    def allreduce_gradients(self, model, loss, n_correct):
        """Sum every layer's gradients, and the batch's loss and correct count, over the ranks.

        One in-place ``MPI_Allreduce`` per layer, last layer first (the order
        in which backward produces them). The model's gradients must be
        scaled for the global batch (``model.backward(y, n_total=...)``), so
        that their sum is the gradient of the global batch's mean loss.

        Parameters
        ----------
        model : SparseMLP
            After ``backward`` on this rank's shard (NumPy arrays).
        loss : float
            This shard's part of the global batch's mean loss.
        n_correct : int
            Correct predictions in this shard.

        Returns
        -------
        loss : float
            The global batch's mean loss, the same on every rank.
        n_correct : int
        """
        MPI = self._MPI
        last = model.n_layers - 1
        t0 = time.perf_counter()
        nbytes = 0
        for i in range(last, -1, -1):
            buf = self._gradient_buffer(i, model.layers[i], 2 if i == last else 0)
            if i == last:
                buf[-2], buf[-1] = loss, n_correct
                tail = buf
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            nbytes += buf.nbytes
        self.stats["allreduce_seconds"] += time.perf_counter() - t0
        self.stats["allreduce_bytes"] += nbytes
        self.stats["n_allreduce"] += model.n_layers
        self.stats["n_batches"] += 1
        return float(tail[-2]), int(round(float(tail[-1])))

    def accuracy(self, model, X, y, batch_size=1024):
        """Accuracy of ``model`` on ``(X, y)``, each rank predicting a block of the columns."""
        n = X.shape[1]
        lo, hi = shard_bounds(n, self.rank, self.size)
        correct = 0
        if hi > lo:
            codes = model.predict_codes(X[:, lo:hi], batch_size)
            correct = int(np.count_nonzero(codes == y[lo:hi]))
        total = self.comm.allreduce(correct)
        return total / n if n else float("nan")

    def any_rank(self, flag):
        """True on every rank when ``flag`` is true on any (a stop decision taken together)."""
        return bool(self.comm.allreduce(bool(flag), op=self._MPI.LOR))

    def end_epoch(self, model):
        """Check that every rank holds the same model; this epoch's communication figures.

        Returns
        -------
        dict
            ``ranks``, ``comm_seconds`` (gradient allreduce wall time of this
            rank during the epoch), ``comm_bytes_per_batch`` (bytes this rank
            reduced per batch), ``topk_seconds`` (the split cosine top-k of the
            topology update, gather included) and ``gather_seconds`` (of it,
            the gathering of the candidates).

        Raises
        ------
        RanksDivergedError
            On every rank, when the models differ (they never should).
        """
        digests = self.comm.allgather(model_digest(model))
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        if bad:
            raise RanksDivergedError(
                f"after this epoch ranks {bad} hold a different model than rank 0; the ranks "
                f"must apply identical updates (is MPI_Allreduce giving each rank the same "
                f"sum? are the kernels the same on every machine?)")
        delta = {k: self.stats[k] - self._epoch_start[k] for k in self.stats}
        self._epoch_start = dict(self.stats)
        return {"ranks": self.size, "comm_seconds": delta["allreduce_seconds"],
                "comm_bytes_per_batch": delta["allreduce_bytes"] // max(delta["n_batches"], 1),
                "topk_seconds": delta["topk_seconds"], "gather_seconds": delta["gather_seconds"]}

    # ------------------------------------------------------------ topology
    def _allgatherv(self, arr):
        counts = np.array(self.comm.allgather(int(arr.shape[0])), dtype=np.int64)
        out = np.empty(int(counts.sum()), dtype=arr.dtype)
        self.comm.Allgatherv(np.ascontiguousarray(arr), [out, counts])
        return out

    def topk_cosine(self, A, B, k, *, exclude=None, block_bytes=ops.TOPK_BLOCK_BYTES,
                    backend="auto"):
        """:func:`ctre_sparse.ops.topk_cosine`, its output neurons split over the ranks.

        Rank ``r`` scores the rows ``shard_bounds(n_out, r, size)`` of ``B``
        (and of ``exclude``) against all of ``A``, keeps its ``k`` best; the
        candidates are gathered and merged by
        :func:`~ctre_sparse.distributed.split.merge_topk`. Same arguments and
        result as the op (NumPy arrays); identical on every rank.
        """
        start = time.perf_counter()
        n_out, n_in = B.shape[0], A.shape[0]
        r0, r1 = shard_bounds(n_out, self.rank, self.size)
        keys = np.zeros(0, dtype=np.int64)
        scores = np.zeros(0, dtype=A.dtype)
        if r1 > r0 and int(k) > 0:
            block = None if exclude is None else row_block(ops.as_csr(exclude), r0, r1)
            rows, cols, scores = ops.topk_cosine(A, B[r0:r1], k, exclude=block,
                                                 block_bytes=block_bytes, backend=backend)
            keys = (rows.astype(np.int64) + r0) * n_in + cols.astype(np.int64)
        t0 = time.perf_counter()
        keys, scores = self._allgatherv(keys), self._allgatherv(scores)
        self.stats["gather_seconds"] += time.perf_counter() - t0
        self.stats["gather_bytes"] += keys.nbytes + scores.nbytes
        best = merge_topk(keys, scores, k, n_in)
        self.stats["topk_seconds"] += time.perf_counter() - start
        return best

    # ------------------------------------------------------------ before training
    def bcast(self, obj):
        """Rank 0's ``obj`` on every rank (pickled)."""
        return self.comm.bcast(obj, root=0)

    def check_agreement(self, config, what="configuration"):
        """Raise the same ValueError on every rank unless all ranks give equal ``config``.

        Parameters
        ----------
        config : dict of str -> JSON-able
            What must be equal (versions, parameters, a data fingerprint...).
        what : str
            Named in the message.
        """
        configs = self.comm.allgather(dict(config))
        ref = configs[0]
        problems = []
        for r, other in enumerate(configs[1:], start=1):
            keys = [k for k in sorted(set(ref) | set(other)) if ref.get(k) != other.get(k)]
            if keys:
                problems.append(f"rank {r} has " + ", ".join(
                    f"{k} = {other.get(k)!r} where rank 0 has {ref.get(k)!r}" for k in keys))
        if problems:
            raise ValueError(f"the {self.size} MPI ranks must train with the same {what}, "
                             f"before training starts: " + "; ".join(problems))

    def check_batch(self, batch_size):
        """ValueError (on every rank) when the global batch has fewer samples than ranks."""
        if int(batch_size) < self.size:
            raise ValueError(f"the global batch of {batch_size} samples is smaller than the "
                             f"{self.size} MPI ranks: each rank needs at least one sample per "
                             f"batch; raise batch_size or use fewer ranks")

    # ------------------------------------------------------------ ending
    def _lost(self, rank, seconds):
        host, pid = self.peers[rank]
        _report_fatal(f"MPI rank {rank} of {self.size} (pid {pid} on {host}) is lost: no "
                      f"heartbeat for {seconds:.1f} s (limit {self.timeout:g} s, "
                      f"{ENV_TIMEOUT}); stopping every rank. Checkpoints are written "
                      f"atomically: the last one written is intact, resume from it.")
        self._MPI.COMM_WORLD.Abort(EXIT_RANK_LOST)

    def abort(self, message, code=1):
        """Report ``message`` (naming this rank) and end every rank of the job (MPI_Abort).

        For an error raised on one rank during training: the other ranks
        would otherwise wait for it at the next collective, forever.
        """
        _report_fatal(f"MPI rank {self.rank} of {self.size}: {message}; stopping every rank")
        self._MPI.COMM_WORLD.Abort(int(code))

    def close(self):
        """End the heartbeats and free the communicators (collective); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self.comm.Barrier()   # every rank is past its last collective of training
            self._heartbeat.stop()
            self._hb_comm.Free()
        self.comm.Free()
        if self._restore_threads is not None:
            self._restore_threads()
        self._bufs = {}


def _limit_threads(comm, MPI):
    """Give each rank on a machine its share of the cores; return a function undoing it.

    None when nothing is changed: one rank on this machine, or the user set
    ``OMP_NUM_THREADS`` / ``NUMBA_NUM_THREADS``.
    """
    if "OMP_NUM_THREADS" in os.environ or "NUMBA_NUM_THREADS" in os.environ:
        return None
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    n_local = local.Get_size()
    local.Free()
    if n_local <= 1:
        return None
    cores = os.cpu_count() or 1
    mine = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    threads = mine if mine < cores else max(1, cores // n_local)  # bound by the launcher: its cores
    return _set_threads(threads)


def _set_threads(threads):
    """Set the native kernels', numba's and BLAS's thread counts; return the undo function.

    numba first: starting its threading layer (OpenMP) resets OpenMP's count,
    which the native kernels share; for the same reason it is undone before them.
    """
    from threadpoolctl import ThreadpoolController

    from ..backends import native

    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a core dependency
        numba = None
    undo = []
    if numba is not None:
        before_numba = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        undo.append(lambda: numba.set_num_threads(before_numba))
    if native.unavailable_reason() is None:
        before_native = native.get_num_threads()
        native.set_num_threads(threads)
        undo.append(lambda: native.set_num_threads(before_native))
    blas = ThreadpoolController().limit(limits=threads, user_api="blas")
    undo.append(blas.restore_original_limits)
    logger.info("%d thread(s) per rank (cores shared by the ranks on this machine)", threads)

    def restore():
        for fn in (undo[-1], *undo[:-1]):    # BLAS, numba, native
            fn()
    return restore
