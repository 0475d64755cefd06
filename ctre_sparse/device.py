"""Where arrays live: the one module that tells host (NumPy) arrays from GPU (CuPy) ones.

The training core (model, optimizer, topology updater, trainer) is written
once against an array module ``xp``, NumPy or CuPy, that each object keeps
as an attribute (set when it is built or moved with ``to_device``). The few
things that differ between the two devices are answered here, once, so that
no other module asks "CPU or GPU?":

- names and moves: :func:`check_device`, :func:`require_cuda`,
  :func:`module_for`, :func:`device_of`, :func:`array_module`,
  :func:`as_array`, :func:`to_host`, :func:`to_module`;
- what reading a value costs: :func:`synchronize` (wait for the device, for
  timings), :func:`host_scalar` (a float when reading it is free);
- randomness: the host :class:`numpy.random.Generator` draws everything,
  except dropout masks on the GPU, which come from a CuPy generator seeded
  from it (:func:`dropout_generator`, :func:`fill_uniform`);
- array-module gaps: :func:`row_of_entries` (``cupy.repeat`` wants host
  counts), :func:`one_host_blas_thread`;
- pickling objects that hold a module (:class:`PicklesArrayModule`).

Which *kernels* run is the backend registry's business
(:mod:`ctre_sparse.backends`): it follows the arrays' type. CuPy is imported
only when a GPU path is taken.

Examples
--------
>>> import numpy as np
>>> device_of(np.zeros(3)), module_for("cpu") is np
('cpu', True)
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import types

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["DEVICES", "check_device", "require_cuda", "module_for", "array_module", "device_of",
           "as_array", "to_host", "to_module", "synchronize", "host_scalar", "dropout_generator",
           "fill_uniform", "row_of_entries", "one_host_blas_thread", "PicklesArrayModule",
           "empty_aligned", "ALIGNMENT"]

#: Byte alignment of the work arrays the training core allocates (a cache line).
ALIGNMENT = 64

DEVICES = ("cpu", "cuda")


def check_device(device):
    """Return ``"cpu"`` or ``"cuda"`` (``"gpu"`` is an alias of ``"cuda"``).

    Raises
    ------
    ValueError
        For any other name.

    Examples
    --------
    >>> check_device("gpu")
    'cuda'
    """
    if device == "gpu":
        return "cuda"
    if device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device


def require_cuda(what="device='cuda'"):
    """Raise ValueError saying why ``what`` cannot run, unless the CUDA backend is available.

    Examples
    --------
    >>> from ctre_sparse.backends import backend_status
    >>> if backend_status()["cuda"] is not None:
    ...     try:
    ...         require_cuda()
    ...     except ValueError as exc:
    ...         assert "device='cuda'" in str(exc)
    """
    from .backends import backend_status

    reason = backend_status()["cuda"]
    if reason is not None:
        raise ValueError(f"{what} needs the CUDA backend, which is not available here: {reason}")


def module_for(device):
    """The array module of ``device``: numpy for "cpu", cupy for "cuda"."""
    if check_device(device) == "cpu":
        return np
    import cupy

    return cupy


def array_module(arr):
    """Return ``numpy`` or ``cupy``, following the array's type (CuPy is not imported for NumPy).

    Examples
    --------
    >>> array_module(np.zeros(2)).__name__
    'numpy'
    """
    if type(arr).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def _on_host(xp):
    return xp is np


def empty_aligned(xp, shape, dtype):
    """``xp.empty(shape, dtype)`` whose data starts on a cache line (:data:`ALIGNMENT`).

    The native kernels read rows of cache-line-aligned arrays without split
    loads (sddmm about 14% faster on 2 cores than from NumPy's usual 16-byte
    alignment); CuPy allocations are aligned already.

    Examples
    --------
    >>> a = empty_aligned(np, (3, 5), np.float32)
    >>> a.shape, a.ctypes.data % ALIGNMENT, a.flags.c_contiguous
    ((3, 5), 0, True)
    """
    dtype = np.dtype(dtype)
    if not _on_host(xp):
        return xp.empty(shape, dtype=dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def device_of(arr):
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cpu" if _on_host(array_module(arr)) else "cuda"


def as_array(x):
    """``x`` when it is a NumPy or CuPy array, else ``np.asarray(x)`` (lists, pandas objects).

    Examples
    --------
    >>> as_array([1, 2])
    array([1, 2])
    """
    if isinstance(x, np.ndarray) or not _on_host(array_module(x)):
        return x
    return np.asarray(x)


def to_host(arr):
    """A NumPy array with the values of ``arr`` (``arr`` itself when it already is one)."""
    if _on_host(array_module(arr)):
        return arr
    return arr.get()


def to_module(arr, xp):
    """``arr`` in the array module ``xp`` (no copy when it is there already)."""
    if _on_host(xp):
        return to_host(arr)
    return xp.asarray(arr)


def synchronize(xp):
    """Wait for the device of ``xp`` (no-op for NumPy); for timings only."""
    if not _on_host(xp):
        xp.cuda.get_current_stream().synchronize()


def host_scalar(value):
    """``float(value)`` when reading it costs nothing, else ``value`` unchanged.

    A 0-d host array or NumPy scalar becomes a Python float; a 0-d CuPy array
    stays on the device, since reading it would make the host wait for the
    GPU (the caller reads it later, once for many values).
    """
    if _on_host(array_module(value)):
        return float(value)
    return value


def dropout_generator(rng, xp, needed=True):
    """The generator that draws dropout masks for arrays of ``xp``.

    On the host it is ``rng`` itself (the trainer's one stream). On the GPU
    a CuPy generator seeded once from ``rng`` (one draw; none when not
    ``needed``), so that masks are drawn on the device; None when not needed.
    """
    if _on_host(xp):
        return rng
    if not needed:
        return None
    import cupy

    return cupy.random.default_rng(int(rng.integers(2**62)))


def fill_uniform(rng, out):
    """Fill ``out`` with U[0, 1) draws from ``rng`` (NumPy or CuPy generator); return it."""
    if _on_host(array_module(out)):
        rng.random(out=out, dtype=out.dtype)
    else:  # size given: CuPy's random(out=...) without size draws ONE value and broadcasts it
        rng.random(size=out.shape, dtype=out.dtype, out=out)
    return out


def row_of_entries(indptr, nnz, dtype):
    """The row of every stored position of a CSR matrix, shape (nnz,), dtype ``dtype``.

    ``repeat`` on the host (O(nnz)); a binary search per entry on the GPU,
    where ``cupy.repeat`` would need the row lengths on the host.

    Examples
    --------
    >>> row_of_entries(np.array([0, 2, 2, 3]), 3, np.int32)
    array([0, 0, 2], dtype=int32)
    """
    xp = array_module(indptr)
    n_rows = indptr.shape[0] - 1
    if _on_host(xp):
        return np.repeat(np.arange(n_rows, dtype=dtype), np.diff(indptr))
    return xp.searchsorted(indptr[1:], xp.arange(nnz, dtype=dtype), side="right").astype(dtype)


def one_host_blas_thread(xp):
    """Context: single-threaded host BLAS while inside (for arrays of ``xp``; GPU: nothing).

    For chains of tiny BLAS calls (a QR of a tall, thin matrix), where
    threads mostly wait on one another's barriers.
    """
    if not _on_host(xp):
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class PicklesArrayModule:
    """Mixin: pickle objects that keep an array module (``xp``) among their attributes.

    Modules cannot be pickled; they are stored by name and imported back.

    Examples
    --------
    >>> import pickle
    >>> from ctre_sparse.nn import SGD
    >>> pickle.loads(pickle.dumps(SGD())).xp.__name__
    'numpy'
    """

    def __getstate__(self):
        state = self.__dict__.copy()
        for key, value in state.items():
            if isinstance(value, types.ModuleType):
                state[key] = _ModuleRef(value.__name__)
        return state

    def __setstate__(self, state):
        for key, value in state.items():
            if isinstance(value, _ModuleRef):
                state[key] = importlib.import_module(value.name)
        self.__dict__.update(state)


class _ModuleRef:
    """A pickled reference to a module, by name."""

    def __init__(self, name):
        self.name = name
