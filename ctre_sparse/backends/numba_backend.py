"""Numba backend: parallel JIT CPU kernels with the reference contract.

The kernel contract (argument arrays, lengths, dtypes, outputs) is the one
documented in :mod:`ctre_sparse.backends.reference`; results match the
reference within float tolerance (products) or exactly (``topk_cosine``,
``prune_magnitude``, ``insert``). The jitted kernels live in
:mod:`ctre_sparse.backends._numba_kernels`, compiled on first use (per
dtype; see there) and cached on disk. Threads: numba's pool, see
:func:`get_num_threads` (set ``NUMBA_NUM_THREADS`` or call
``numba.set_num_threads``).

If numba cannot be imported, importing this module raises ImportError and
the backend registry records the reason.

Examples
--------
Through the public ops (which validate the operands once):

>>> import numpy as np
>>> from ctre_sparse import ops
>>> from ctre_sparse.sparse import CSRMatrix
>>> W = CSRMatrix.from_dense(np.array([[1., 0., 2.], [0., 3., 0.]], dtype=np.float32))
>>> ops.spmm(W, np.ones((3, 2), dtype=np.float32), backend="numba")
array([[3., 3.],
       [3., 3.]], dtype=float32)
>>> ops.spmm_t(W, np.ones((2, 1), dtype=np.float32), backend="numba").ravel()
array([1., 3., 2.], dtype=float32)
"""

from __future__ import annotations

import logging

import numba
import numpy as np

from . import _numba_kernels as _k
from . import _numba_training as _t
from .reference import normalize_rows

logger = logging.getLogger(__name__)

NAME = "numba"

__all__ = ["NAME", "unavailable_reason", "get_num_threads", "spmm", "spmm_t", "sddmm",
           "cosine_pairs", "topk_cosine", "topk_abs_product", "prune_magnitude", "insert",
           "gather_columns",
           "bias_activation", "activation_backward", "sgd_update"]


def unavailable_reason():
    """Return None: the module imported, so numba is there."""
    return None


def get_num_threads():
    """Number of threads the parallel kernels use (numba's current setting)."""
    return numba.get_num_threads()


def _i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def _ro(*arrays):
    """Read-only views of the kernel's inputs.

    numba compiles one specialization per argument type, and read-only is
    part of the type: a validated matrix's index arrays are read-only
    (:meth:`CSRMatrix.validate`), so passing every input read-only keeps one
    compiled kernel per dtype instead of two.
    """
    views = []
    for a in arrays:
        v = a.view()
        v.flags.writeable = False
        views.append(v)
    return views


# ------------------------------------------------------------------ products
def spmm(indptr, indices, data, X, out):
    """``out[n_out, batch] = W @ X``; see the reference contract. O(nnz * batch)."""
    _k.spmm(*_ro(indptr, indices, data, X), out)


def spmm_t(t_indptr, t_indices, t_perm, data, G, out):
    """``out[n_in, batch] = W.T @ G`` from the cached transpose (no atomics)."""
    _k.spmm_t(*_ro(t_indptr, t_indices, t_perm, data, G), out)


def sddmm(indptr, indices, G, X, out):
    """``out[p] = dot(G[row(p)], X[indices[p]])`` for every stored entry p."""
    _k.sddmm(*_ro(indptr, indices, G, X), out)


def cosine_pairs(A, B, rows, cols, out):
    """``out[k] = |cos(A[rows[k]], B[cols[k]])|``, 0 where a norm is 0."""
    _k.cosine_pairs(*_ro(A, B, _i64(rows), _i64(cols)), out)


# ------------------------------------------------------------------ top-k
def topk_cosine(A, B, k, indptr, indices, block_rows):
    """The ``k`` best absent pairs by ``|cos(B[row], A[col])|``; exact, as the reference.

    :func:`topk_abs_product` of the unit-normalised rows (the reference's
    normalisation).
    """
    return topk_abs_product(normalize_rows(A), normalize_rows(B), k, indptr, indices, block_rows)


def topk_abs_product(A, B, k, indptr, indices, block_rows):
    """The ``k`` best absent pairs by ``|B[row] . A[col]|``; exact, as the reference.

    The score blocks are the reference's own products (same blocks, NumPy
    BLAS), so the scores agree bitwise; masking of existing
    connections and the streaming top-k run in a numba kernel: one buffer per
    thread-chunk of rows, cut back to its best ``k`` whenever it fills
    (O(n_out * n_in) amortized), merged at the end with the reference's tie rule
    (score descending, then ``(row, col)`` ascending).

    Returns
    -------
    rows, cols : int64 ndarrays
    scores : ndarray of A's dtype
    """
    n_out, n_in = B.shape[0], A.shape[0]
    cap = min(int(k), max(0, n_out * n_in - int(indices.shape[0])))  # at most the absent pairs
    if cap <= 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, A.dtype))
    AT = A.T
    indptr, indices = _ro(_i64(indptr), _i64(indices))
    block_rows = max(1, int(block_rows))
    n_chunks = max(1, min(get_num_threads(), n_out))
    bs, bk = _topk_buffers(cap, n_chunks, n_out, n_in, block_rows, A.dtype)
    counts = np.zeros(n_chunks, dtype=np.int64)
    thr = np.full(n_chunks, -1.0, dtype=A.dtype)
    for r0 in range(0, n_out, block_rows):
        r1 = min(r0 + block_rows, n_out)
        S = np.ascontiguousarray(B[r0:r1] @ AT)
        _k.topk_block(S, r0, indptr, indices, bs, bk, counts, thr, cap)
    _k.topk_finish(bs, bk, counts, cap)
    scores = np.concatenate([bs[c, :counts[c]] for c in range(n_chunks)])
    keys = np.concatenate([bk[c, :counts[c]] for c in range(n_chunks)])
    order = np.lexsort((keys, -scores))[:cap]
    keys, scores = keys[order], scores[order]
    return keys // n_in, keys % n_in, scores


def _topk_buffers(cap, n_chunks, n_out, n_in, block_rows, dtype):
    """Per-chunk candidate buffers: room for ``cap`` plus slack, never more than a chunk sees."""
    seen = np.zeros(n_chunks, dtype=np.int64)
    for r0 in range(0, n_out, block_rows):
        nr = min(block_rows, n_out - r0)
        bounds = np.arange(n_chunks + 1, dtype=np.int64) * nr // n_chunks
        seen += np.diff(bounds) * n_in
    size = int(min(cap + min(cap, 1 << 20), seen.max()))
    return np.empty((n_chunks, size), dtype=dtype), np.empty((n_chunks, size), dtype=np.int64)


# ------------------------------------------------------------------ topology
def prune_magnitude(indptr, indices, data, n_remove):
    """Sorted int64 positions kept after removing the ``n_remove`` smallest ``|data|``.

    Ties are removed lowest position first, exactly as the reference; O(nnz)
    (a selection, not a sort).
    """
    nnz = data.shape[0]
    n_remove = int(n_remove)
    if n_remove <= 0:
        return np.arange(nnz, dtype=np.int64)
    if n_remove >= nnz:
        return np.zeros(0, dtype=np.int64)
    absd = np.abs(data)
    v = np.partition(absd, n_remove - 1)[n_remove - 1]
    kept = np.empty(nnz - n_remove, dtype=np.int64)
    n_kept = _k.prune_keep(absd, v, n_remove, kept)
    if n_kept != kept.shape[0]:  # impossible for finite data; guards against NaN
        raise ValueError("prune_magnitude needs finite weights (found NaN in data)")
    return kept


def insert(indptr, indices, data, rows, cols, values, n_cols):
    """Merge new entries into the CSR arrays, rows kept sorted; as the reference.

    Returns ``(indptr, indices, data, old_pos, new_pos)`` with ``indptr`` and
    ``indices`` in the input index dtype and int64 positions. Each row is
    merged in parallel after the new entries are put in (row, col) order by
    two counting sorts; O(nnz + m + n_rows + n_cols).
    """
    n_rows = indptr.shape[0] - 1
    nnz, m = indices.shape[0], rows.shape[0]
    rows64, cols64 = _i64(rows), _i64(cols)
    new_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    if m:
        np.cumsum(np.bincount(rows64, minlength=n_rows), out=new_ptr[1:])
    perm = _k.sort_new_entries(rows64, cols64, n_rows, int(n_cols))
    out_indptr = (indptr.astype(np.int64) + new_ptr).astype(indptr.dtype)
    out_indices = np.empty(nnz + m, dtype=indices.dtype)
    old_pos = np.empty(nnz, dtype=np.int64)
    new_pos = np.empty(m, dtype=np.int64)
    _k.insert_merge(*_ro(indptr, indices), new_ptr, perm, cols64, out_indices, old_pos, new_pos)
    out_data = np.empty(nnz + m, dtype=data.dtype)
    out_data[old_pos] = data
    out_data[new_pos] = values.astype(data.dtype, copy=False)
    return out_indptr, out_indices, out_data, old_pos, new_pos


# ------------------------------------------------------------------ training step
def gather_columns(X, idx, out):
    """``out[...] = X[:, idx]``.

    C-ordered ``X``: a parallel kernel over the rows of ``out``. F-ordered ``X``
    (the transpose of sample-major data): the samples' rows of ``X.T`` are
    contiguous, so NumPy takes them whole and one transposing copy follows;
    measured 2x faster than a tiled numba kernel single-threaded, and it does
    not wait on a parallel region.
    """
    if X.flags.c_contiguous:
        _t.gather_columns_c(X, _i64(idx), out)
    else:
        np.copyto(out, np.take(X.T, idx, axis=0).T)


def bias_activation(Y, b, slope, Z, A):
    """``Z = Y + b[:, None]``, ``A = max(Z * slope, Z)`` in one parallel pass."""
    _t.bias_left_relu(Y, b, Y.dtype.type(slope), Z, A)


def activation_backward(Z, G, slope, out):
    """``out = G * f'(Z)`` for the left-slope ReLU, in one parallel pass."""
    t = G.dtype.type
    _t.left_relu_backward(Z, G, t(slope), t(1.0 - slope), slope == 0, out)


def sgd_update(w, g, v, lr, mu, decay, nesterov):
    """The fused SGD step over the entries, in place (see the reference contract)."""
    _t.sgd_update(w, g, v, lr, mu, decay, bool(nesterov))
