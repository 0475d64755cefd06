"""How the work of one step is split over ranks, and how the parts are merged back.

Pure functions, no MPI: the communicator calls them with its rank and size,
and the tests check them in one process against the unsplit computation.

- A global mini-batch (sorted sample indices) is cut into ``size``
  contiguous shards, :func:`shard_bounds`; a shard may be empty (the last
  batch of an epoch can hold fewer samples than there are ranks).
- The cosine top-k of a layer is split by output neurons: rank ``r`` scores
  the rows :func:`shard_bounds` ``(n_out, r, size)`` of the layer, against
  the pattern of those rows (:func:`row_block`), keeps its own ``k`` best, and
  :func:`merge_topk` merges the gathered candidates with the order of
  :func:`~ctre_sparse.ops.topk_cosine` (score descending, then
  ``row * n_in + col`` ascending). Every pair of the global top ``k`` is among
  its block's top ``k``, so the merge returns exactly the unsplit answer
  wherever a pair's score does not depend on the block it was computed in.
"""

from __future__ import annotations

import numpy as np

from ..sparse import CSRMatrix

__all__ = ["shard_bounds", "row_block", "merge_topk"]


def shard_bounds(n, rank, size):
    """``(lo, hi)``: the part of ``range(n)`` that rank ``rank`` of ``size`` takes.

    Contiguous, in rank order, sizes differing by at most one (the larger
    parts last).

    Examples
    --------
    >>> [shard_bounds(5, r, 2) for r in range(2)]
    [(0, 2), (2, 5)]
    >>> [shard_bounds(1, r, 3) for r in range(3)]
    [(0, 0), (0, 0), (0, 1)]
    """
    n, rank, size = int(n), int(rank), int(size)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, size) with size >= 1, got rank {rank}, "
                         f"size {size}")
    return n * rank // size, n * (rank + 1) // size


def row_block(W, r0, r1):
    """Rows ``r0:r1`` of the CSR matrix ``W`` as a CSRMatrix of shape ``(r1 - r0, n_in)``.

    Views of ``W``'s index and value arrays, except ``indptr`` (shifted to
    start at 0): O(r1 - r0).

    Examples
    --------
    >>> W = CSRMatrix.from_dense(np.array([[1., 0.], [0., 2.], [3., 4.]]))
    >>> row_block(W, 1, 3).toarray()
    array([[0., 2.],
           [3., 4.]])
    """
    if not 0 <= r0 <= r1 <= W.n_out:
        raise ValueError(f"row block [{r0}, {r1}) is outside [0, {W.n_out}]")
    p0, p1 = int(W.indptr[r0]), int(W.indptr[r1])
    return CSRMatrix(W.data[p0:p1], W.indices[p0:p1], W.indptr[r0:r1 + 1] - W.indptr[r0],
                     (r1 - r0, W.n_in))


def merge_topk(keys, scores, k, n_in):
    """The ``k`` best of gathered candidates, in :func:`~ctre_sparse.ops.topk_cosine` order.

    Parameters
    ----------
    keys : int64 ndarray
        Linear keys ``row * n_in + col`` (distinct).
    scores : ndarray
        Their scores, same length.
    k : int
    n_in : int

    Returns
    -------
    rows, cols : int64 ndarray, shape (min(k, len(keys)),)
    scores : ndarray
        Score descending, ties by key ascending.

    Examples
    --------
    >>> rows, cols, s = merge_topk(np.array([5, 1, 3]), np.array([.5, .9, .5]), 2, 4)
    >>> rows.tolist(), cols.tolist(), s.tolist()
    ([0, 0], [1, 3], [0.9, 0.5])
    """
    keys = np.asarray(keys, dtype=np.int64)
    scores = np.asarray(scores)
    if keys.shape != scores.shape or keys.ndim != 1:
        raise ValueError(f"keys and scores must be 1-d of one length, got {keys.shape} and "
                         f"{scores.shape}")
    order = np.lexsort((keys, -scores))[:max(0, int(k))]
    keys = keys[order]
    n_in = max(int(n_in), 1)
    return keys // n_in, keys % n_in, scores[order]
