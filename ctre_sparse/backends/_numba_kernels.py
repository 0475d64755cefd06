"""Numba kernels of the ``numba`` backend (private; the contract is in ``reference``).

Every kernel is compiled lazily and cached on disk (``cache=True``). The
products specialize per (value dtype, index dtype); the others on one dtype
only (``cosine_pairs``, top-k and prune on the value dtype, their index
arrays cast to int64 by the caller; the insert kernels on the index dtype,
values being scattered by NumPy), which keeps the cold compile short.
Parallel kernels use ``prange`` over rows (or contiguous chunks of rows)
only; nothing inside allocates Python objects or draws random numbers. Dense
operands are feature-major and C-contiguous, so the inner loops walk the
contiguous batch axis and vectorize.

Summation order: ``spmm`` and ``spmm_t`` accumulate each output row in stored
order, like scipy's ``csr_matvecs`` (FMA contraction aside; with batch 1 the
even and odd entries go to two partial sums); ``sddmm`` and ``cosine_pairs``
reduce along the batch axis with re-association allowed (vectorized). All
stay within float tolerance of the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Products: allow FMA contraction and re-association (needed to vectorize dot
# reductions), but keep NaN/Inf semantics ('nnan'/'ninf' off).
_FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
# Row-update kernels: contraction only, so sums keep their stored order.
_CONTRACT = {"contract"}


# Subscripts computed from stored indices are cast to unsigned: numba then skips
# its negative-index wraparound code, which otherwise doubles the cost of a gather.
_U = np.uint64


# ------------------------------------------------------------------ spmm
@njit(cache=True, nogil=True, inline="always")
def _weight(vals, perm, use_perm, p):
    """``vals[perm[p]]`` (transposed walk) or ``vals[p]``."""
    return vals[_U(perm[_U(p)])] if use_perm else vals[_U(p)]


@njit(cache=True, nogil=True, fastmath=_CONTRACT, inline="always")
def _axpy8(o, p, idx, vals, perm, use_perm, X):
    """``o += w(p)*X[idx[p]] + ... + w(p+7)*X[idx[p+7]]`` over the batch, left to right."""
    w0 = _weight(vals, perm, use_perm, p)
    w1 = _weight(vals, perm, use_perm, p + 1)
    w2 = _weight(vals, perm, use_perm, p + 2)
    w3 = _weight(vals, perm, use_perm, p + 3)
    w4 = _weight(vals, perm, use_perm, p + 4)
    w5 = _weight(vals, perm, use_perm, p + 5)
    w6 = _weight(vals, perm, use_perm, p + 6)
    w7 = _weight(vals, perm, use_perm, p + 7)
    x0 = X[_U(idx[_U(p)])]
    x1 = X[_U(idx[_U(p + 1)])]
    x2 = X[_U(idx[_U(p + 2)])]
    x3 = X[_U(idx[_U(p + 3)])]
    x4 = X[_U(idx[_U(p + 4)])]
    x5 = X[_U(idx[_U(p + 5)])]
    x6 = X[_U(idx[_U(p + 6)])]
    x7 = X[_U(idx[_U(p + 7)])]
    for b in range(o.shape[0]):
        o[b] = (o[b] + w0 * x0[b] + w1 * x1[b] + w2 * x2[b] + w3 * x3[b]
                + w4 * x4[b] + w5 * x5[b] + w6 * x6[b] + w7 * x7[b])


@njit(cache=True, nogil=True, fastmath=_CONTRACT, inline="always")
def _matvec_row(p0, p1, idx, vals, perm, use_perm, X):
    """Batch 1: ``sum_p w(p) * X[idx[p], 0]`` with two partial sums (even/odd p)."""
    acc0 = X.dtype.type(0)
    acc1 = X.dtype.type(0)
    p = p0
    while p + 2 <= p1:
        acc0 += _weight(vals, perm, use_perm, p) * X[_U(idx[_U(p)]), 0]
        acc1 += _weight(vals, perm, use_perm, p + 1) * X[_U(idx[_U(p + 1)]), 0]
        p += 2
    if p < p1:
        acc0 += _weight(vals, perm, use_perm, p) * X[_U(idx[_U(p)]), 0]
    return acc0 + acc1


@njit(cache=True, nogil=True, fastmath=_CONTRACT, inline="always")
def _gather_row(o, p0, p1, idx, vals, perm, use_perm, X):
    """``o = sum_p w(p) * X[idx[p]]`` over ``p in [p0, p1)``, in stored order.

    ``w(p) = vals[perm[p]]`` if ``use_perm`` else ``vals[p]``. Eight stored
    entries per pass over the batch row (one load/store of ``o`` per eight).
    """
    p0 = np.int64(p0)
    p1 = np.int64(p1)
    if o.shape[0] == 1:
        o[0] = _matvec_row(p0, p1, idx, vals, perm, use_perm, X)
        return
    o[:] = 0
    p = p0
    while p + 8 <= p1:
        _axpy8(o, p, idx, vals, perm, use_perm, X)
        p += 8
    while p < p1:
        w0 = _weight(vals, perm, use_perm, p)
        x0 = X[_U(idx[_U(p)])]
        for b in range(o.shape[0]):
            o[b] = o[b] + w0 * x0[b]
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
    zero = out.dtype.type(0)
    for i in prange(n_out):
        g = G[i]
        p = np.int64(indptr[i])
        p1 = np.int64(indptr[i + 1])
        if nb == 1:  # batch 1: plain products, no row views
            for q in range(p, p1):
                out[_U(q)] = g[0] * X[_U(indices[_U(q)]), 0]
            continue
        while p + 2 <= p1:  # two dots per pass share the loads of g
            x0 = X[_U(indices[_U(p)])]
            x1 = X[_U(indices[_U(p + 1)])]
            a0 = zero
            a1 = zero
            for b in range(nb):
                a0 += g[b] * x0[b]
                a1 += g[b] * x1[b]
            out[_U(p)] = a0
            out[_U(p + 1)] = a1
            p += 2
        if p < p1:
            x0 = X[_U(indices[_U(p)])]
            a0 = zero
            for b in range(nb):
                a0 += g[b] * x0[b]
            out[_U(p)] = a0


# ------------------------------------------------------------------ cosine
@njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)
def cosine_pairs(A, B, rows, cols, out):
    """``out[k] = |cos(A[rows[k]], B[cols[k]])|`` (0 where a norm is 0); O(k * S).

    ``rows`` and ``cols`` are int64. Norms are computed per pair in the same
    pass as the dot product (memory-bound, so nearly free).
    """
    n = rows.shape[0]
    S = A.shape[1]
    zero = out.dtype.type(0)
    for q in prange(n):
        a = A[_U(rows[q])]
        b = B[_U(cols[q])]
        dot = zero
        na = zero
        nb = zero
        for s in range(S):
            dot += a[s] * b[s]
            na += a[s] * a[s]
            nb += b[s] * b[s]
        den = np.sqrt(na) * np.sqrt(nb)
        out[q] = abs(dot) / den if den > 0 else zero


# ------------------------------------------------------------------ top-k
@njit(cache=True, nogil=True)
def _select(a, t):
    """Value of rank ``t`` (0-based, ascending) in ``a`` (reordered in place).

    Hoare-partition quickselect with a median-of-three pivot; O(len(a)) on
    average. ``a`` must hold no NaN. (Lighter to compile than np.partition.)
    """
    lo = 0
    hi = a.shape[0] - 1
    while lo < hi:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while pivot < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if j < t:
            lo = i
        if t < i:
            hi = j
        if j < t < i:  # t sits among the pivot-equal middle
            return a[t]
    return a[t]


@njit(cache=True, nogil=True)
def _shrink(bs, bk, n, cap):
    """Keep the ``cap`` best of ``bs[:n], bk[:n]`` in place, in buffer order.

    The buffer holds keys in ascending order, so among scores equal to the
    cut value ``v`` the first ones are the smallest keys, as the tie rule
    wants. Returns ``(new size, v)``; O(n) on average.
    """
    v = _select(bs[:n].copy(), n - cap)  # the cap-th largest score
    need = cap
    for i in range(n):
        if bs[i] > v:
            need -= 1
    j = 0
    for i in range(n):
        s = bs[i]
        if s > v or (s == v and need > 0):
            if s == v:
                need -= 1
            bs[j] = s
            bk[j] = bk[i]
            j += 1
    return j, v


@njit(cache=True, nogil=True)
def _scan_rows(S, lo, hi, r0, indptr, indices, bs, bk, n, cap, thr):
    """Mask then stream rows ``lo:hi`` of a score block into one chunk's buffer.

    Keys reach a chunk in ascending order (its rows, block after block), so a
    new candidate beats the retained ones only with a strictly larger score
    than the cut ``thr``. Returns ``(size, thr)``.
    """
    n_in = S.shape[1]
    size = bs.shape[0]
    for r in range(lo, hi):
        row = S[r]
        for p in range(indptr[r0 + r], indptr[r0 + r + 1]):
            row[_U(indices[p])] = np.nan  # existing connection: never selected (NaN > x is False)
        n_pass = 0
        for j in range(n_in):  # vectorized pre-count: most rows have no candidate
            n_pass += abs(row[j]) > thr
        if n_pass == 0:
            continue
        base = (r0 + r) * n_in
        for j in range(n_in):
            s = abs(row[j])
            if s > thr:
                bs[n] = s
                bk[n] = base + j
                n += 1
                if n == size and n > cap:  # (n == size <= cap: the chunk has seen all)
                    n, thr = _shrink(bs, bk, n, cap)
    return n, thr


@njit(cache=True, nogil=True, parallel=True)
def topk_block(S, r0, indptr, indices, bs, bk, counts, thr, cap):
    """Stream the score block ``S = B[r0:r0+nr] @ A.T`` (abs taken here) into per-chunk buffers.

    ``S[nr, n_in]:F`` (raw products; overwritten), ``indptr, indices:int64``
    (exclusion pattern), buffers ``bs[C, size]:F, bk[C, size]:int64`` (``size >
    cap``, or at least every entry a chunk sees), ``counts[C]:int64`` and cuts
    ``thr[C]:F`` (start at -1).
    Chunk ``c`` owns the contiguous rows ``c*nr//C : (c+1)*nr//C`` of every
    block, so the union of the chunks' ``cap`` best holds the global top-k.
    Keys are ``row * n_in + col``. O(nr * n_in) amortized.
    """
    nr = S.shape[0]
    n_chunks = bs.shape[0]
    for c in prange(n_chunks):
        lo = c * nr // n_chunks
        hi = (c + 1) * nr // n_chunks
        counts[c], thr[c] = _scan_rows(S, lo, hi, r0, indptr, indices, bs[c], bk[c], counts[c],
                                       cap, thr[c])


@njit(cache=True, nogil=True)
def topk_finish(bs, bk, counts, cap):
    """Cut every chunk's buffer to its ``cap`` best (``counts`` updated)."""
    for c in range(bs.shape[0]):
        if counts[c] > cap:
            counts[c] = _shrink(bs[c], bk[c], counts[c], cap)[0]


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


@njit(cache=True, nogil=True)
def _counting_sort(keys, n_keys, order):
    """Stable counting sort of ``order`` by ``keys[order]``; O(len(order) + n_keys)."""
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for q in order:
        start[keys[q] + 1] += 1
    for v in range(n_keys):
        start[v + 1] += start[v]
    out = np.empty(order.shape[0], dtype=np.int64)
    for q in order:
        out[start[keys[q]]] = q
        start[keys[q]] += 1
    return out


@njit(cache=True, nogil=True)
def sort_new_entries(rows, cols, n_rows, n_cols):
    """Order of the new entries by (row, col): two stable counting sorts (col, then row).

    ``rows[m], cols[m]:int64`` in range; returns ``perm[m]:int64``.
    O(m + n_rows + n_cols).
    """
    by_col = _counting_sort(cols, n_cols, np.arange(rows.shape[0]))
    return _counting_sort(rows, n_rows, by_col)


@njit(cache=True, nogil=True, parallel=True)
def insert_merge(indptr, indices, new_ptr, perm, cols, out_indices, old_pos, new_pos):
    """Per-row merge of the sorted old row with the row's sorted new columns.

    ``indptr[n+1]:I, indices[nnz]:I`` (rows sorted), ``new_ptr[n+1]:int64``
    (row offsets of the new entries), ``perm[m]:int64`` (new entries in
    (row, col) order, see :func:`sort_new_entries`), ``cols[m]:int64``.
    Writes ``out_indices[nnz+m]:I`` and where each old and each new entry
    lands (``old_pos[nnz], new_pos[m]:int64``). O(nnz + m).
    """
    n = indptr.shape[0] - 1
    for i in prange(n):
        a = np.int64(indptr[i])
        a1 = np.int64(indptr[i + 1])
        b = new_ptr[i]
        b1 = new_ptr[i + 1]
        d = a + b
        while a < a1 or b < b1:
            if b == b1 or (a < a1 and indices[_U(a)] < cols[_U(perm[_U(b)])]):
                out_indices[_U(d)] = indices[_U(a)]
                old_pos[_U(a)] = d
                a += 1
            else:
                q = perm[_U(b)]
                out_indices[_U(d)] = cols[_U(q)]
                new_pos[_U(q)] = d
                b += 1
            d += 1
