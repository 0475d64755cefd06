"""What :class:`~ctre_sparse.CTREClassifier` does differently with ``distributed="mpi"``.

The estimator calls these few functions around its own ``fit``; everything
else (the per-batch allreduce, the split top-k) happens in the trainer and
the topology updater through the communicator.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import zlib

import numpy as np

from .communicator import MPICommunicator, RanksDivergedError

logger = logging.getLogger(__name__)

__all__ = ["connect", "disconnect", "from_root", "check_before_training", "collective_errors",
           "RANK_LOCAL_PARAMS"]

#: Parameters that may differ between ranks (they change nothing in the model).
RANK_LOCAL_PARAMS = ("verbose", "checkpoint_dir")


def connect(est):
    """The communicator of a fit with ``est.distributed == "mpi"`` (collective)."""
    if est.distributed != "mpi":
        raise ValueError(f"distributed must be None or 'mpi', got {est.distributed!r}")
    comm = MPICommunicator()
    if comm.is_root:
        logger.info("data-parallel training on %s", comm.describe())
    return comm


def disconnect(comm, trainer=None):
    """Detach ``comm`` from ``trainer`` (when given) and close it (collective)."""
    if trainer is not None:
        trainer.communicator = None
    comm.close()


def from_root(comm, fn, *args):
    """``fn(*args)`` run on one process (rank 0 under MPI), its result on every rank.

    An exception raised by ``fn`` on rank 0 is raised on every rank.
    """
    if comm is None:
        return fn(*args)
    result = error = None
    if comm.is_root:
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            error = exc
    result, error = comm.bcast((result, error))
    if error is not None:
        raise error
    return result


def _data_digest(X, codes):
    """CRC-32 of the training data and class codes, with their shapes and dtypes."""
    crc = zlib.crc32(f"{X.shape}|{X.dtype.name}|{codes.shape}".encode())
    crc = zlib.crc32(np.ascontiguousarray(X).view(np.uint8), crc)
    return zlib.crc32(np.ascontiguousarray(codes, dtype=np.int64).view(np.uint8), crc)


def _run_config(params, n_iter, seed, backend, X, codes):
    """What must be equal on every rank: versions, parameters, kernels, data, state."""
    from .._version import __version__
    from ..backends import select_backend

    params = {k: v for k, v in params.items() if k not in RANK_LOCAL_PARAMS}
    backend = select_backend(backend, np.zeros(1)).__name__.rsplit(".", 1)[-1]
    python = ".".join(platform.python_version_tuple()[:2])
    return {"ctre_sparse version": __version__, "numpy version": np.__version__,
            "python version": python, "kernel backend": backend,
            "data (CRC-32)": _data_digest(X, codes), "epochs done": int(n_iter),
            "seed": int(seed), **{f"parameter {k}": v for k, v in params.items()}}


def check_before_training(comm, *, params, n_iter, seed, X, codes, n_train):
    """Raise the same ValueError on every rank for a configuration that cannot train.

    Ranks must agree on the package, NumPy and Python versions, the kernel
    backend, every model parameter (``params``: the estimator's, JSON-able),
    the training data (a CRC-32), the epochs already trained (``n_iter``)
    and the ``seed``; the global batch must hold at least one sample per rank.
    """
    config = _run_config(params, n_iter, seed, params["backend"], X, codes)
    comm.check_agreement(config, "versions, parameters and data")
    comm.check_batch(min(int(params["batch_size"]), int(n_train)))


@contextlib.contextmanager
def collective_errors(comm):
    """Let errors that every rank raises alike through; any other ends every rank.

    Divergence (the loss is summed over the ranks, so every rank sees it) and
    a model mismatch found by the epoch check are raised on all ranks. Any
    other exception may be this rank's alone: the others would wait for it
    at the next collective, so the job is aborted with the error's message.
    """
    from ..training import TrainingDivergedError

    if comm is None or comm.size == 1:
        yield
        return
    try:
        yield
    except (TrainingDivergedError, RanksDivergedError):
        raise
    except BaseException as exc:
        comm.abort(f"{type(exc).__name__}: {exc}")
        raise
