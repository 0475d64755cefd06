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

Importing this module loads nothing: the registry loads the extension (and
with it the OpenMP runtime, under :mod:`ctre_sparse.tuning`) the first time
it is asked for this backend (:func:`load`). When the extension is missing,
:func:`unavailable_reason` says why and the registry falls back to numba.

Build the extension in place with ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import tuning
from .reference import normalize_rows

try:  # the training-step kernels are numba's (see the module notes)
    from .numba_backend import activation_backward, bias_activation, gather_columns, sgd_update
except ImportError:  # pragma: no cover - numba is a core dependency
    from .reference import activation_backward, bias_activation, gather_columns, sgd_update

NAME = "native"
logger = logging.getLogger(__name__)

__all__ = ["unavailable_reason", "load", "spmm", "spmm_t", "sddmm", "cosine_pairs",
           "topk_cosine", "topk_abs_product", "prune_magnitude", "insert", "gather_columns",
           "bias_activation",
           "activation_backward", "sgd_update", "get_num_threads", "set_num_threads", "isa",
           "extension"]

_native = None       # the compiled module, once loaded
_import_error = None  # why it could not be loaded


def load():
    """Load the compiled module (once; the registry does it on first use); return it or None.

    The OpenMP runtime comes with it, so it is loaded inside
    :func:`ctre_sparse.tuning.openmp_loading` (idle-thread spin count).
    """
    global _native, _import_error
    if _native is None and _import_error is None:
        try:
            with tuning.openmp_loading():
                from .. import _native as module
        except ImportError as exc:  # not built, or built for another Python / platform
            _import_error = f"{type(exc).__name__}: {exc}"
        else:
            _native = module
            logger.debug("native kernels loaded: ISA path %s, %d threads", module.isa(),
                         module.get_num_threads())
    return _native


def extension():
    """The compiled module ``ctre_sparse._native`` (loading it); raises ImportError if missing.

    For what only the native backend has (its ISA paths, e.g. in tests).
    """
    if load() is None:
        raise ImportError(unavailable_reason())
    return _native


def unavailable_reason():
    """``None`` when the compiled module loads (it is loaded here), else why it does not."""
    if load() is None:
        return (f"the compiled module ctre_sparse._native cannot be imported ({_import_error}); "
                "build it with `python setup.py build_ext --inplace` (needs a C++17 compiler "
                "with OpenMP and pybind11)")
    return None


def get_num_threads():
    """Number of OpenMP threads the native kernels use."""
    return extension().get_num_threads()


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
    extension().set_num_threads(n)


def isa():
    """The SIMD code path in use: ``"avx512"``, ``"avx2"`` or ``"generic"``."""
    return extension().isa()


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


def topk_cosine(A, B, k, indptr, indices, block_rows):
    """Exact top-k absent pairs by ``|cos|``: :func:`topk_abs_product` of the unit rows."""
    return topk_abs_product(normalize_rows(A), normalize_rows(B), k, indptr, indices, block_rows)


def topk_abs_product(A, B, k, indptr, indices, block_rows):
    """Exact top-k absent pairs by ``|B[row] . A[col]|``: BLAS blocks, native mask + selection.

    Each block is the reference's own product (bit for bit), so the scores are
    identical; the extension's ``topk_block`` masks the pattern
    (NaN), keeps the entries above the running k-th score and merges them with
    the order (score descending, then ``row * n_in + col`` ascending). The
    running top stays unsorted between blocks (only its k-th score matters
    there); one sort at the end, instead of one per block, matters when k is
    large (a wide layer, or the sketch's ``oversample * k`` candidates).
    """
    n_out, n_in = B.shape[0], A.shape[0]
    keys = np.zeros(0, dtype=np.int64)
    scores = np.zeros(0, dtype=A.dtype)
    if k > 0 and n_out > 0 and n_in > 0:
        AT = A.T
        for r0 in range(0, n_out, block_rows):
            r1 = min(r0 + block_rows, n_out)
            S = np.ascontiguousarray(B[r0:r1] @ AT)  # the reference's product, bit for bit
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
