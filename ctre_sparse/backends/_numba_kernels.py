"""Numba kernels of the ``numba`` backend (private; the contract is in ``reference``).

Every kernel is compiled lazily, once per (value dtype, index dtype) it meets,
and cached on disk (``cache=True``). Parallel kernels use ``prange`` over rows
(or over contiguous chunks of rows) only; nothing inside allocates Python
objects or draws random numbers. Dense operands are feature-major and
C-contiguous, so the inner loops walk the contiguous batch axis and vectorize.

Summation order: ``spmm`` and ``spmm_t`` accumulate each output row in stored
order, like scipy's ``csr_matvecs`` (only FMA contraction differs); ``sddmm``
and ``cosine_pairs`` reduce along the batch axis with re-association allowed
(vectorized), which stays within float tolerance of the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Products: allow FMA contraction and re-association (needed to vectorize dot
# reductions), but keep NaN/Inf semantics ('nnan'/'ninf' off).
_FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
# Row-update kernels: contraction only, so sums keep their stored order.
_CONTRACT = {"contract"}


# ------------------------------------------------------------------ spmm
@njit(cache=True, nogil=True, fastmath=_CONTRACT, inline="always")
def _axpy_row(o, first, w0, x0, w1, x1, w2, x2, w3, x3, n_terms):
    """``o (+)= w0*x0 + ... `` over the batch, summed left to right (stored order)."""
    nb = o.shape[0]
    if n_terms == 4:
        if first:
            for b in range(nb):
                o[b] = w0 * x0[b] + w1 * x1[b] + w2 * x2[b] + w3 * x3[b]
        else:
            for b in range(nb):
                o[b] = o[b] + w0 * x0[b] + w1 * x1[b] + w2 * x2[b] + w3 * x3[b]
    elif first:
        for b in range(nb):
            o[b] = w0 * x0[b]
    else:
        for b in range(nb):
            o[b] = o[b] + w0 * x0[b]


@njit(cache=True, nogil=True, fastmath=_CONTRACT, inline="always")
def _gather_row(o, p0, p1, idx, vals, perm, use_perm, X):
    """``o = sum_p vals[perm[p]] * X[idx[p]]`` over ``p in [p0, p1)`` (stored order)."""
    if p1 == p0:
        o[:] = 0
        return
    p = p0
    first = True
    while p + 4 <= p1:
        if use_perm:
            w0, w1 = vals[perm[p]], vals[perm[p + 1]]
            w2, w3 = vals[perm[p + 2]], vals[perm[p + 3]]
        else:
            w0, w1, w2, w3 = vals[p], vals[p + 1], vals[p + 2], vals[p + 3]
        _axpy_row(o, first, w0, X[idx[p]], w1, X[idx[p + 1]], w2, X[idx[p + 2]],
                  w3, X[idx[p + 3]], 4)
        first = False
        p += 4
    while p < p1:
        w0 = vals[perm[p]] if use_perm else vals[p]
        x0 = X[idx[p]]
        _axpy_row(o, first, w0, x0, w0, x0, w0, x0, w0, x0, 1)
        first = False
        p += 1


@njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def spmm(indptr, indices, data, X, out):
    """``out[n_out, batch] = W @ X``; O(nnz * batch)."""
    n_out = indptr.shape[0] - 1
    for i in prange(n_out):
        _gather_row(out[i], indptr[i], indptr[i + 1], indices, data, indices, False, X)


@njit(cache=True, nogil=True, parallel=True, fastmath=_CONTRACT)
def spmm_t(t_indptr, t_indices, t_perm, data, G, out):
    """``out[n_in, batch] = W.T @ G`` via the transpose arrays (no atomics); O(nnz * batch)."""
    n_in = t_indptr.shape[0] - 1
    for j in prange(n_in):
        _gather_row(out[j], t_indptr[j], t_indptr[j + 1], t_indices, data, t_perm, True, G)


# ------------------------------------------------------------------ sddmm
@njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)
def sddmm(indptr, indices, G, X, out):
    """``out[p] = dot(G[row(p)], X[indices[p]])``; O(nnz * batch)."""
    n_out = indptr.shape[0] - 1
    nb = G.shape[1]
    for i in prange(n_out):
        g = G[i]
        p = indptr[i]
        p1 = indptr[i + 1]
        while p + 2 <= p1:  # two dots per pass share the loads of g
            x0 = X[indices[p]]
            x1 = X[indices[p + 1]]
            a0 = out.dtype.type(0)
            a1 = out.dtype.type(0)
            for b in range(nb):
                a0 += g[b] * x0[b]
                a1 += g[b] * x1[b]
            out[p] = a0
            out[p + 1] = a1
            p += 2
        if p < p1:
            x0 = X[indices[p]]
            a0 = out.dtype.type(0)
            for b in range(nb):
                a0 += g[b] * x0[b]
            out[p] = a0


# ------------------------------------------------------------------ cosine
@njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)
def cosine_pairs(A, B, rows, cols, out):
    """``out[k] = |cos(A[rows[k]], B[cols[k]])|`` (0 where a norm is 0); O(k * S).

    ``rows`` and ``cols`` are int64. Norms are computed per pair in the same
    pass as the dot product (memory-bound, so nearly free).
    """
    n = rows.shape[0]
    S = A.shape[1]
    for q in prange(n):
        a = A[rows[q]]
        b = B[cols[q]]
        dot = out.dtype.type(0)
        na = out.dtype.type(0)
        nb = out.dtype.type(0)
        for s in range(S):
            dot += a[s] * b[s]
            na += a[s] * a[s]
            nb += b[s] * b[s]
        den = np.sqrt(na) * np.sqrt(nb)
        out[q] = abs(dot) / den if den > 0 else 0


# ------------------------------------------------------------------ top-k
@njit(cache=True, nogil=True, inline="always")
def _worse(s1, k1, s2, k2):
    """Order of the top-k: score descending, then key ascending; True if (s1, k1) ranks lower."""
    return s1 < s2 or (s1 == s2 and k1 > k2)


@njit(cache=True, nogil=True)
def _heap_push(hs, hk, n, s, key):
    """Add (s, key) to the min-heap ``hs[:n], hk[:n]`` (root = worst entry)."""
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if not _worse(s, key, hs[parent], hk[parent]):
            break
        hs[i] = hs[parent]
        hk[i] = hk[parent]
        i = parent
    hs[i] = s
    hk[i] = key


@njit(cache=True, nogil=True)
def _heap_replace_root(hs, hk, n, s, key):
    """Replace the worst entry of the full heap ``hs[:n], hk[:n]`` by (s, key)."""
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _worse(hs[c + 1], hk[c + 1], hs[c], hk[c]):
            c += 1
        if not _worse(hs[c], hk[c], s, key):
            break
        hs[i] = hs[c]
        hk[i] = hk[c]
        i = c
    hs[i] = s
    hk[i] = key


@njit(cache=True, nogil=True)
def _scan_rows(S, lo, hi, r0, indptr, indices, hs, hk, n):
    """Mask then stream rows ``lo:hi`` of the score block into one heap; returns its size."""
    n_in = S.shape[1]
    cap = hs.shape[0]
    for r in range(lo, hi):
        row = S[r]
        for p in range(indptr[r0 + r], indptr[r0 + r + 1]):
            row[indices[p]] = np.nan  # existing connection: never selected
        base = (r0 + r) * n_in
        for j in range(n_in):
            s = abs(row[j])
            if not s >= 0:  # masked (NaN)
                continue
            if n < cap:
                _heap_push(hs, hk, n, s, base + j)
                n += 1
            elif s >= hs[0] and _worse(hs[0], hk[0], s, base + j):
                _heap_replace_root(hs, hk, n, s, base + j)
    return n


@njit(cache=True, nogil=True, parallel=True)
def topk_block(S, r0, indptr, indices, hs, hk, counts):
    """Merge the score block ``S = Bn[r0:r0+nr] @ An.T`` into per-chunk top-k heaps.

    ``S[nr, n_in]:F`` (raw products; overwritten), ``indptr, indices:int64``
    (exclusion pattern), ``hs[C, cap]:F, hk[C, cap]:int64, counts[C]:int64``:
    chunk ``c`` owns the contiguous rows ``c*nr//C : (c+1)*nr//C`` of every
    block, so the union of the C heaps always holds the global top-k.
    Keys are ``row * n_in + col``. O(nr * n_in * log cap) worst case.
    """
    nr = S.shape[0]
    n_chunks = hs.shape[0]
    for c in prange(n_chunks):
        lo = c * nr // n_chunks
        hi = (c + 1) * nr // n_chunks
        counts[c] = _scan_rows(S, lo, hi, r0, indptr, indices, hs[c], hk[c], counts[c])


# ------------------------------------------------------------------ topology
@njit(cache=True, nogil=True)
def prune_keep(absd, v, n_remove, kept):
    """Write the kept positions (ascending) into ``kept``; returns how many.

    ``v`` is the ``n_remove``-th smallest of ``absd``: every entry below it
    goes, and of those equal to it the lowest positions go first. O(nnz).
    """
    n_less = 0
    for p in range(absd.shape[0]):
        if absd[p] < v:
            n_less += 1
    need = n_remove - n_less  # equal entries still to remove
    j = 0
    for p in range(absd.shape[0]):
        a = absd[p]
        if a > v:
            kept[j] = p
            j += 1
        elif a == v:
            if need > 0:
                need -= 1
            else:
                kept[j] = p
                j += 1
    return j


@njit(cache=True, nogil=True, parallel=True)
def insert_merge(indptr, indices, new_ptr, s_cols, out_indices, old_pos, new_pos_sorted):
    """Per-row merge of the sorted old row with the sorted new columns.

    ``indptr[n+1]:I, indices[nnz]:I`` (rows sorted), ``new_ptr[n+1]:int64,
    s_cols[m]:int64`` (new entries sorted by (row, col)); writes
    ``out_indices[nnz+m]:I`` and where each old / sorted-new entry lands
    (``old_pos[nnz], new_pos_sorted[m]:int64``). O(nnz + m).
    """
    n = indptr.shape[0] - 1
    for i in prange(n):
        a = np.int64(indptr[i])
        a1 = np.int64(indptr[i + 1])
        b = new_ptr[i]
        b1 = new_ptr[i + 1]
        d = a + b
        while a < a1 and b < b1:
            if indices[a] < s_cols[b]:
                out_indices[d] = indices[a]
                old_pos[a] = d
                a += 1
            else:
                out_indices[d] = s_cols[b]
                new_pos_sorted[b] = d
                b += 1
            d += 1
        while a < a1:
            out_indices[d] = indices[a]
            old_pos[a] = d
            a += 1
            d += 1
        while b < b1:
            out_indices[d] = s_cols[b]
            new_pos_sorted[b] = d
            b += 1
            d += 1
