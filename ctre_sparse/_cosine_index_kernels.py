"""Compiled (numba) loops of the index-mode top-k cosine (:mod:`ctre_sparse.cosine_index`).

Private. Two kernels:

- :func:`top_lists`: per query row, the ``n`` columns of a block of
  centroid scores with the largest values (the lists it probes), in
  parallel over rows;
- :func:`filter_block`: one block of estimated scores (the output rows
  probing a list against the list's members, a BLAS product made by the
  caller), existing connections skipped, either counted into a histogram
  (to choose a threshold) or kept when at or above a threshold.

The scores themselves are BLAS products: per list, one ``(rows, dim) x (dim,
size)`` product ran at 2x the CPU-time rate of a numba loop blocked over
four rows (16384 x 16384 layer: 0.085 s against 0.15 s of CPU time for the
4.3 GFLOP of one scan).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["top_lists", "filter_block", "HIST_BINS", "HIST_LO", "HIST_HI"]

#: Histogram of estimated scores: HIST_BINS equal bins over [HIST_LO, HIST_HI);
#: scores outside land in the first or last bin. Unit rows' sketched dot
#: products lie in about [-1.2, 1.2].
HIST_BINS = 2048
HIST_LO = -1.5
HIST_HI = 1.5


@njit(parallel=True, cache=True, nogil=True)
def top_lists(P, n, out):  # pragma: no cover - compiled
    """``out[i]`` = the ``n`` column indices of the largest ``P[i]``, best first.

    ``P`` (rows, nlist), ``out`` (rows, n) int64, ``n <= nlist``. Ties go to
    the smaller column. O(rows * nlist * n) worst case, O(rows * nlist) when
    few columns beat the running n-th best.
    """
    rows, nlist = P.shape
    for i in prange(rows):
        best = np.empty(n, P.dtype)
        idx = np.empty(n, np.int64)
        held = 0
        for c in range(nlist):
            v = P[i, c]
            if held == n and not v > best[n - 1]:
                continue
            pos = held if held < n else n - 1
            while pos > 0 and v > best[pos - 1]:
                if pos < n:
                    best[pos] = best[pos - 1]
                    idx[pos] = idx[pos - 1]
                pos -= 1
            best[pos] = v
            idx[pos] = c
            if held < n:
                held += 1
        for j in range(n):
            out[i, j] = idx[j]


@njit(cache=True, nogil=True)
def filter_block(P, rows, c, indptr, indices, label, slot, members, n_in, mirror, tau, hist,
                 out_score, out_key):  # pragma: no cover - compiled
    """Keep (or count) the scores of one block of a list, existing connections skipped.

    ``P`` (len(rows), size): the scores of output rows ``rows`` against the
    ``size`` members of list ``c`` (input neurons ``members``);
    ``indptr``/``indices`` the pattern to skip (``indptr`` all zeros for
    none); ``label``/``slot`` each index id's list and position in it (ids
    ``j`` and, with ``mirror``, ``n_in + j`` for ``-A[j]``). With ``hist`` of
    length :data:`HIST_BINS`: counts every score into it and returns 0.
    Otherwise writes the pairs scoring ``>= tau`` to ``out_score``/``out_key``
    (key ``row * n_in + col``; as many as fit) and returns how many there
    are (more than fit: call again with more room). O(P.size + pattern of
    ``rows``).
    """
    counting = hist.shape[0] > 0
    scale = HIST_BINS / (HIST_HI - HIST_LO)
    cap = out_score.shape[0]
    found = 0
    for r in range(rows.shape[0]):
        q = rows[r]
        a = P[r]
        for p in range(indptr[q], indptr[q + 1]):  # mark this row's connections into the list
            col = np.int64(indices[p])
            if label[col] == c:
                a[slot[col]] = -np.inf
            if mirror and label[col + n_in] == c:
                a[slot[col + n_in]] = -np.inf
        if counting:
            for j in range(a.shape[0]):
                v = a[j]
                if v != -np.inf:
                    b = int((v - HIST_LO) * scale)
                    hist[min(max(b, 0), HIST_BINS - 1)] += 1
            continue
        hits = 0
        for j in range(a.shape[0]):  # branch-free count first: most rows have no hit at all
            hits += a[j] >= tau
        if hits == 0:
            continue
        for j in range(a.shape[0]):
            if a[j] >= tau:
                if found < cap:
                    out_score[found] = a[j]
                    out_key[found] = q * n_in + members[j]
                found += 1
    return found
