"""Native backend: the C++17/OpenMP kernels of the compiled module ``ctre_sparse._native``.

Implements the kernel contract of :mod:`ctre_sparse.backends.reference` with
the same signatures. The products (``spmm``, ``spmm_t``, ``sddmm``) and
``cosine_pairs`` run in C++ with the GIL released, parallel over rows, on the
best SIMD code path of this CPU (AVX-512, AVX2+FMA or generic, chosen at run
time; see :func:`isa`). ``topk_cosine`` forms each block of scores with a
NumPy (BLAS) product of the unit-normalised rows, exactly as the reference
does, and merges it into the streaming top-k natively (masking, threshold
filter, partial sort), so it returns exactly the reference's answer.

The training-step kernels (``gather_columns``, ``bias_activation``,
``activation_backward``, ``sgd_update``) are the numba backend's: they are
memory-bound element-wise passes that numba's parallel loops already run at
the speed of memory (docs/architecture.md), so a C++ copy would add code,
not speed.

The module imports even when the extension is missing; :func:`unavailable_reason`
then says why, and the registry falls back to numba.

Build the extension in place with ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import logging
import os
import threading

import numpy as np

from .reference import normalize_rows

try:  # the training-step kernels are numba's (see the module notes)
    from .numba_backend import activation_backward, bias_activation, gather_columns, sgd_update
except ImportError:  # pragma: no cover - numba is a core dependency
    from .reference import activation_backward, bias_activation, gather_columns, sgd_update

NAME = "native"
logger = logging.getLogger(__name__)

#: Spin count of idle OpenMP (libgomp) threads while the extension loads, unless
#: the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``. libgomp's default
#: (300000 spins) makes a thread that waits at the end of a kernel burn its
#: time slice while the thread it waits for cannot run: on a loaded machine a
#: 1 ms kernel then takes 10-20 ms. Read once, when libgomp loads; no effect if
#: another module loaded it first.
OMP_SPIN_COUNT = "1000"


def _import_native():
    tune = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
    if tune:
        os.environ["GOMP_SPINCOUNT"] = OMP_SPIN_COUNT
    try:
        from .. import _native as module
    finally:
        if tune:  # libgomp has read it (if this import loaded it); don't leak it to children
            del os.environ["GOMP_SPINCOUNT"]
    return module


try:
    _native = _import_native()
except ImportError as exc:  # not built, or built for another Python / platform
    _native = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    _IMPORT_ERROR = None
    logger.debug("native kernels loaded: ISA path %s, %d threads", _native.isa(),
                 _native.get_num_threads())

__all__ = ["unavailable_reason", "spmm", "spmm_t", "sddmm", "cosine_pairs", "topk_cosine",
           "prune_magnitude", "insert", "gather_columns", "bias_activation",
           "activation_backward", "sgd_update", "get_num_threads", "set_num_threads", "isa"]


def unavailable_reason():
    """``None`` when the compiled module loads, else why it does not."""
    if _native is None:
        return (f"the compiled module ctre_sparse._native cannot be imported ({_IMPORT_ERROR}); "
                "build it with `python setup.py build_ext --inplace` (needs a C++17 compiler "
                "with OpenMP and pybind11)")
    return None


def get_num_threads():
    """Number of OpenMP threads the native kernels use."""
    return _native.get_num_threads()


def set_num_threads(n):
    """Set the number of OpenMP threads of the native kernels.

    Parameters
    ----------
    n : int
        At least 1.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _native.set_num_threads(n)


def isa():
    """The SIMD code path in use: ``"avx512"``, ``"avx2"`` or ``"generic"``."""
    return _native.isa()


def spmm(indptr, indices, data, X, out):
    """``out[...] = W @ X`` (contract: :mod:`ctre_sparse.backends.reference`)."""
    _native.spmm(indptr, indices, data, X, out)


def spmm_t(t_indptr, t_indices, t_perm, data, G, out):
    """``out[...] = W.T @ G`` from the cached transpose arrays."""
    _native.spmm_t(t_indptr, t_indices, t_perm, data, G, out)


def sddmm(indptr, indices, G, X, out):
    """``out[p] = dot(G[row(p)], X[indices[p]])``."""
    _native.sddmm(indptr, indices, G, X, out)


def _int64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def cosine_pairs(A, B, rows, cols, out):
    """``out[i] = |cos(A[rows[i]], B[cols[i]])|`` (indices cast to int64 if needed)."""
    _native.cosine_pairs(A, B, _int64(rows), _int64(cols), out)


#: Names of OpenBLAS's threading-backend setter: numpy's bundled copy (ILP64,
#: suffixed), scipy's (LP64), a plain build.
_BLAS_CALLBACK_SETTERS = ("scipy_openblas_set_threads_callback_function64_",
                          "scipy_openblas_set_threads_callback_function",
                          "openblas_set_threads_callback_function")
_blas_lock = threading.Lock()
_blas_hook = None  # (setter, current-callback variable or None, our callback); False: none


def _find_blas_hook():
    """numpy's OpenBLAS threading-backend setter and our callback, or None.

    Only numpy's bundled scipy-openblas (``numpy.libs``, ``numpy/.dylibs``) is
    looked for; another BLAS, or an OpenBLAS without the entry point, gives
    None (products then run on OpenBLAS's own threads, as before).
    """
    root = os.path.dirname(np.__file__)
    paths = sorted(glob.glob(os.path.join(os.path.dirname(root), "numpy.libs", "*openblas*")) +
                   glob.glob(os.path.join(root, ".dylibs", "*openblas*")))
    try:
        ours = ctypes.cast(ctypes.CDLL(_native.__file__).ctre_openblas_threads, ctypes.c_void_p)
    except (OSError, AttributeError):
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: the same handle
        except OSError:
            continue
        for name in _BLAS_CALLBACK_SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes, setter.restype = [ctypes.c_void_p], None
                try:
                    current = ctypes.c_void_p.in_dll(lib, "openblas_threads_callback_")
                except ValueError:
                    current = None
                return setter, current, ours
    return None


@contextlib.contextmanager
def _blas_on_our_threads():
    """Run the BLAS products inside on the OpenMP team of the native kernels.

    OpenBLAS's own idle workers spin for about 0.1 s after each product; on
    2 cores that takes a core from the OpenMP kernels that follow (the
    selection, the next training epoch). Through OpenBLAS's threading-backend
    callback (``ctre_openblas_threads`` in ``csrc/cpu/cosine.cpp``) the same
    jobs, same partition, run on the OpenMP team, whose idle threads sleep
    after 1,000 spins: the products are bit-identical (tested). The callback
    is installed only for the duration, and not at all when another one is
    already in place.
    """
    global _blas_hook
    if _blas_hook is None:
        _blas_hook = _find_blas_hook() or False
    if not _blas_hook or not _blas_lock.acquire(blocking=False):
        yield  # no hook, or another thread has it installed right now
        return
    setter, current, ours = _blas_hook
    try:
        if current is not None and current.value:
            yield  # someone else's backend: leave it
            return
        setter(ours)
        try:
            yield
        finally:
            setter(None)
    finally:
        _blas_lock.release()


def topk_cosine(A, B, k, indptr, indices, block_rows):
    """Exact top-k absent pairs: BLAS blocks of scores, native mask + streaming selection.

    Each block is the reference's own product of the unit-normalised rows, so
    the scores are identical; :func:`_native.topk_block` masks the pattern
    (NaN), keeps the entries above the running k-th score and merges them with
    the order (score descending, then ``row * n_in + col`` ascending). The
    running top stays unsorted between blocks (only its k-th score matters
    there); one sort at the end, instead of one per block, matters when k is
    large (a wide layer, or the sketch's ``oversample * k`` candidates). The
    products run on the native kernels' threads (:func:`_blas_on_our_threads`).
    """
    n_out, n_in = B.shape[0], A.shape[0]
    keys = np.zeros(0, dtype=np.int64)
    scores = np.zeros(0, dtype=A.dtype)
    if k > 0 and n_out > 0 and n_in > 0:
        An, Bn = normalize_rows(A), normalize_rows(B)
        AnT = An.T
        for r0 in range(0, n_out, block_rows):
            r1 = min(r0 + block_rows, n_out)
            with _blas_on_our_threads():
                S = np.ascontiguousarray(Bn[r0:r1] @ AnT)  # the reference's product, bit for bit
            keys, scores = _native.topk_block(S, r0, indptr, indices, k, keys, scores,
                                              sort=False)
        order = np.lexsort((keys, -scores))  # score descending, then key ascending
        keys, scores = keys[order], scores[order]
    return keys // max(n_in, 1), keys % max(n_in, 1), scores


def prune_magnitude(indptr, indices, data, n_remove):
    """Sorted kept positions after removing ``n_remove`` smallest ``|data|`` (stable ties)."""
    return _native.prune_magnitude(np.ascontiguousarray(data), int(n_remove))


def insert(indptr, indices, data, rows, cols, values, n_cols):
    """Merged CSR ``(indptr, indices, data, old_pos, new_pos)``, identical to the reference's."""
    return _native.insert(indptr, indices, data, _int64(rows), _int64(cols),
                          np.ascontiguousarray(values, dtype=data.dtype))
