"""Reference backend: NumPy/SciPy, the oracle every fast backend is tested against.

Kernel contract (shared by every backend; ``I`` = index dtype, ``F`` = value dtype):

``spmm(indptr, indices, data, X, out)``
    ``indptr[n_out+1]:I, indices[nnz]:I, data[nnz]:F, X[n_in, batch]:F`` (C order),
    ``out[n_out, batch]:F`` overwritten with ``W @ X``. O(nnz * batch).
``spmm_t(t_indptr, t_indices, t_perm, data, G, out)``
    transpose arrays from :meth:`CSRMatrix.transpose_arrays` (``t_indptr[n_in+1]``,
    ``t_indices[nnz]``, ``t_perm[nnz]``), ``data[nnz]``, ``G[n_out, batch]``;
    ``out[n_in, batch]`` overwritten with ``W.T @ G``. O(nnz * batch).
``sddmm(indptr, indices, G, X, out)``
    ``G[n_out, batch]``, ``X[n_in, batch]``; ``out[nnz]`` overwritten with
    ``dot(G[row(p)], X[indices[p]])``. O(nnz * batch).
``cosine_pairs(A, B, rows, cols, out)``
    ``A[n_a, S]``, ``B[n_b, S]``, ``rows[k]``, ``cols[k]`` (any int dtype, in range);
    ``out[k]`` overwritten with ``|cos(A[rows[i]], B[cols[i]])|`` (0 where a norm is 0).
``topk_cosine(A, B, k, indptr, indices, block_rows)``
    ``A[n_in, S]`` (input side), ``B[n_out, S]`` (output side), exclusion pattern
    ``indptr[n_out+1], indices[nnz]``. Returns ``(rows:int64, cols:int64, scores:F)``,
    at most ``k`` absent pairs with the largest ``|cos(B[row], A[col])|``, ordered by
    score descending, ties by ``(row, col)`` ascending. Memory O(block_rows * n_in + k).
``topk_abs_product(A, B, k, indptr, indices, block_rows)``
    As ``topk_cosine`` with the score ``|dot(B[row], A[col])|`` (no normalisation):
    with ``B`` the loss gradient at a layer's outputs and ``A`` its inputs, the
    absent weights with the largest gradient magnitude (RigL's growth criterion).
    ``topk_cosine`` is this op on the unit-normalised rows.
``prune_magnitude(indptr, indices, data, n_remove)``
    Returns the sorted positions (int64) of the entries kept after removing the
    ``n_remove`` smallest ``|data|``; ties removed lowest position first. O(nnz log nnz).
``insert(indptr, indices, data, rows, cols, values, n_cols)``
    ``rows[m], cols[m]`` valid, distinct and absent from the pattern (the op layer
    checks). Returns ``(indptr, indices, data, old_pos, new_pos)``: the merged CSR
    (rows sorted), where each old entry and each inserted entry now sits.

The training-step kernels (element-wise; every backend computes each element
with the same arithmetic as here, so the CPU backends agree bit for bit):

``gather_columns(X, idx, out)``
    ``X[n, n_samples]`` (C or F order), ``idx[m]`` (any int dtype, in range);
    ``out[n, m]`` (C order) overwritten with ``X[:, idx]``. O(n * m).
``bias_activation(Y, b, slope, Z, A)``
    ``Y[n, m]``, ``b[n]``; ``Z[n, m]`` (may be ``Y``) overwritten with
    ``Y + b[:, None]`` and ``A[n, m]`` (not ``Z``) with ``max(Z * slope, Z)``,
    the left-slope ReLU for ``|slope| <= 1`` (``slope`` a Python float, used
    as a scalar of the arrays' dtype).
``activation_backward(Z, G, slope, out)``
    ``out[n, m]`` (may be ``G``) overwritten with ``G * f'(Z)``: ``G * (Z > 0)``
    for slope 0, else ``G * ((Z > 0) * (1 - slope) + slope)`` with ``1 - slope``
    computed in float64 and rounded to the dtype.
``sgd_update(w, g, v, lr, mu, decay, nesterov)``
    ``w[n], g[n], v[n]`` in place, scalars of their dtype: ``gi = g + decay * w``,
    ``vi = mu * v + gi``, ``step = lr * (gi + mu * vi if nesterov else vi)``;
    then ``w -= step``, ``g = step`` and, when ``mu != 0``, ``v = vi``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

NAME = "reference"
_CHUNK = 1 << 16  # entries per chunk in the gather-based kernels (bounds temporaries)


def unavailable_reason():
    """The reference backend is always available."""
    return None


def _csr(indptr, indices, data, n_cols):
    return sp.csr_matrix((data, indices, indptr), shape=(indptr.shape[0] - 1, n_cols), copy=False)


def spmm(indptr, indices, data, X, out):
    """``out[...] = W @ X`` by scipy.sparse (see the kernel contract above)."""
    out[...] = _csr(indptr, indices, data, X.shape[0]) @ X


def spmm_t(t_indptr, t_indices, t_perm, data, G, out):
    """``out[...] = W.T @ G`` from the transpose arrays, by scipy.sparse (contract above)."""
    out[...] = _csr(t_indptr, t_indices, data[t_perm], G.shape[0]) @ G


def _rows_of(indptr):
    return np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))


def sddmm(indptr, indices, G, X, out):
    """``out[p] = dot(G[row(p)], X[indices[p]])``, chunk by chunk (contract above)."""
    rows = _rows_of(indptr)
    for s in range(0, rows.shape[0], _CHUNK):
        e = min(s + _CHUNK, rows.shape[0])
        out[s:e] = np.einsum("ij,ij->i", G[rows[s:e]], X[indices[s:e]])


def _row_norms(M):
    return np.sqrt(np.einsum("ij,ij->i", M, M))


def cosine_pairs(A, B, rows, cols, out):
    """``out[k] = |cos(A[rows[k]], B[cols[k]])|``, 0 where a norm is 0 (contract above)."""
    na, nb = _row_norms(A), _row_norms(B)
    for s in range(0, rows.shape[0], _CHUNK):
        e = min(s + _CHUNK, rows.shape[0])
        r, c = rows[s:e], cols[s:e]
        dots = np.abs(np.einsum("ij,ij->i", A[r], B[c]))
        den = na[r] * nb[c]
        out[s:e] = np.where(den > 0, dots / np.where(den > 0, den, 1), 0)


def normalize_rows(M):
    """Rows scaled to unit norm; all-zero rows stay zero."""
    n = _row_norms(M)
    return M / np.where(n > 0, n, 1)[:, None]


def topk_cosine(A, B, k, indptr, indices, block_rows):
    """The ``k`` best absent pairs by ``|cos|``: :func:`topk_abs_product` of the unit rows."""
    return topk_abs_product(normalize_rows(A), normalize_rows(B), k, indptr, indices, block_rows)


def topk_abs_product(A, B, k, indptr, indices, block_rows):
    """The ``k`` best absent pairs: blocks of dense products, a streaming top-k (contract above)."""
    n_out, n_in = B.shape[0], A.shape[0]
    top = _TopK(k, A.dtype)
    for r0 in range(0, n_out, block_rows):
        r1 = min(r0 + block_rows, n_out)
        S = np.abs(B[r0:r1] @ A.T)
        mask_block(S, r0, r1, indptr, indices)
        top.push(S.ravel(), r0 * n_in)
    keys, scores = top.result()
    return keys // n_in, keys % n_in, scores


def mask_block(S, r0, r1, indptr, indices):
    """Set the entries of block rows ``r0:r1`` present in the pattern to -1 (never selected)."""
    p0, p1 = int(indptr[r0]), int(indptr[r1])
    if p1 > p0:
        local = np.repeat(np.arange(r1 - r0), np.diff(indptr[r0:r1 + 1]))
        S[local, indices[p0:p1]] = -1


class _TopK:
    """Streaming top-k over blocks of scores with linear keys; ties by smaller key first."""

    def __init__(self, k, dtype):
        self.k = int(k)
        self.keys = np.zeros(0, dtype=np.int64)
        self.scores = np.zeros(0, dtype=dtype)

    def threshold(self):
        return self.scores[-1] if self.keys.shape[0] == self.k and self.k else -0.5

    def push(self, flat, key_offset):
        if self.k == 0:
            return
        sel = np.flatnonzero(flat > self.threshold())
        if sel.shape[0] > self.k:
            vals = flat[sel]
            v = np.partition(vals, vals.shape[0] - self.k)[vals.shape[0] - self.k]
            gt = sel[vals > v]
            eq = sel[vals == v][: self.k - gt.shape[0]]
            sel = np.concatenate([gt, eq])
        if sel.shape[0] == 0:
            return
        keys = np.concatenate([self.keys, sel.astype(np.int64) + key_offset])
        scores = np.concatenate([self.scores, flat[sel]])
        order = np.lexsort((keys, -scores))[: self.k]
        self.keys, self.scores = keys[order], scores[order]

    def result(self):
        return self.keys, self.scores


def prune_magnitude(indptr, indices, data, n_remove):
    """Sorted positions kept after removing the ``n_remove`` smallest ``|data|`` (see above)."""
    order = np.argsort(np.abs(data), kind="stable")
    keep = np.ones(data.shape[0], dtype=bool)
    keep[order[:n_remove]] = False
    return np.flatnonzero(keep)


def insert(indptr, indices, data, rows, cols, values, n_cols):
    """The merged CSR arrays and where each old and new entry sits (contract above)."""
    n_rows = indptr.shape[0] - 1
    old_keys = _rows_of(indptr) * n_cols + indices.astype(np.int64)
    new_keys = rows.astype(np.int64) * n_cols + cols.astype(np.int64)
    keys = np.concatenate([old_keys, new_keys])
    order = np.argsort(keys, kind="stable")
    where = np.empty_like(order)
    where[order] = np.arange(order.shape[0])
    merged = keys[order]
    out_rows = merged // n_cols
    out_indptr = np.zeros(n_rows + 1, dtype=indptr.dtype)
    np.cumsum(np.bincount(out_rows, minlength=n_rows), out=out_indptr[1:])
    out_indices = (merged % n_cols).astype(indices.dtype)
    out_data = np.concatenate([data, values.astype(data.dtype)])[order]
    n_old = old_keys.shape[0]
    return out_indptr, out_indices, out_data, where[:n_old], where[n_old:]


# ------------------------------------------------------------------ training step
def gather_columns(X, idx, out):
    """``out[...] = X[:, idx]`` (contract above)."""
    np.take(X, idx, axis=1, out=out)


def bias_activation(Y, b, slope, Z, A):
    """``Z = Y + b[:, None]``, ``A = max(Z * slope, Z)`` as three NumPy passes (contract above)."""
    np.add(Y, b[:, None], out=Z)
    np.multiply(Z, Z.dtype.type(slope), out=A)
    np.maximum(A, Z, out=A)


def activation_backward(Z, G, slope, out):
    """``out = G * f'(Z)`` for the left-slope ReLU (contract above)."""
    if slope == 0:
        np.multiply(G, Z > 0, out=out)
        return
    t = G.dtype.type
    factor = np.greater(Z, 0).astype(G.dtype)
    factor *= t(1.0 - slope)
    factor += t(slope)
    np.multiply(G, factor, out=out)


def sgd_update(w, g, v, lr, mu, decay, nesterov):
    """The SGD step as NumPy array expressions, in place (contract above)."""
    gi = g + decay * w
    vi = mu * v + gi
    step = lr * (gi + mu * vi) if nesterov else lr * vi
    if mu != 0:
        v[...] = vi
    g[...] = step
    w -= step
