"""Top-k cosine by sketching: random-projection candidates, re-scored exactly.

For layers too large for the exact scan.

:func:`ctre_sparse.ops.topk_cosine` is exact: it scores every absent pair
with a dense product over all ``S`` samples, ``O(n_out * n_in * S)`` work
(about 1 TFLOP for a 16384 x 16384 layer and S = 2000). This module trades
a little recall for most of that work:

1. **sketch**: project both sides' unit-normalised activations onto ``dim``
   shared directions, ``A' = A @ R`` and ``B' = B @ R`` with ``R`` of shape
   ``(S, dim)``: ``rank`` exact principal directions of the activations (found
   by a randomized range finder) and ``dim - rank`` random Gaussian ones for
   the residual. Dot products of the projections estimate the cosines
   (Johnson-Lindenstrauss); the principal part makes the estimate exact for
   what the neurons share, which for nonnegative ReLU activations is most of
   it. Cost ``O((n_in + n_out) * S * (dim + rank))``;
2. **candidates**: the exact top ``oversample * k`` of the *sketched* scores,
   by :func:`~ctre_sparse.ops.topk_cosine` on ``(A', B')``: the same blocked
   scan over every absent pair, but each score costs ``dim`` instead of ``S``
   multiply-adds;
3. **re-score**: the candidates' exact cosines by
   :func:`~ctre_sparse.ops.cosine_pairs` over all ``S`` samples, and the best
   ``k`` of them, ordered as :func:`~ctre_sparse.ops.topk_cosine` orders.

The scores returned are exact cosines; only the *set* may miss true top-k
pairs whose sketched score fell outside the candidates. How often that
happens on realistic activations is measured by
``benchmarks/bench_topk_sketch.py`` and written up in ``docs/cosine_sketch.md``.
"""

from __future__ import annotations

import logging

import numpy as np

from ._random import check_random_state
from .checks import check_activations, check_int
from .device import one_host_blas_thread
from .ops import TOPK_BLOCK_BYTES, as_csr, cosine_pairs, topk_cosine

logger = logging.getLogger(__name__)

__all__ = ["topk_cosine_sketch", "sketch", "topk_recall", "row_weights", "best_k"]


def row_weights(M, xp):
    """``1 / ||M[i]||``, 0 for rows of norm 0 (they score 0 with everything).

    Parameters
    ----------
    M : ndarray, shape (n, S)
    xp : module
        The array module of ``M``.

    Returns
    -------
    ndarray, shape (n,), dtype of ``M``
    """
    norms = xp.sqrt(xp.einsum("ij,ij->i", M, M, dtype=np.float64))
    return xp.where(norms > 0, 1.0 / xp.where(norms > 0, norms, 1.0), 0.0).astype(M.dtype)


def _gaussian(rng, shape, dtype, xp):
    """Standard normal draws from the host Generator, placed on ``xp``'s device."""
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def _principal_basis(A, B, wa, wb, rank, rng, xp):
    """Orthonormal ``(S, rank)`` basis of the top sample-space directions of the unit rows.

    A randomized range finder (one power step, 8 extra columns) on the stacked
    unit-normalised rows of A and B, then the eigen-decomposition of their
    small Gram matrix in that range: O((n_in + n_out) * S * (rank + 8)).
    Returns the basis and the rows' coordinates in it, ``(Q, A Q, B Q)``.
    """
    n_samples = A.shape[1]
    extra = min(8, n_samples - rank)
    G = _gaussian(rng, (n_samples, rank + extra), A.dtype, xp)
    M = A.T @ ((A @ G) * (wa * wa)[:, None]) + B.T @ ((B @ G) * (wb * wb)[:, None])
    # a QR of an (S, rank + 8) matrix is a long chain of tiny BLAS calls: threads would
    # mostly wait on one another (26 ms median, 650 ms worst against 4 ms single-threaded,
    # measured on 2 cores with one busy)
    with one_host_blas_thread(xp):
        Qf, _ = xp.linalg.qr(M)
    AQ, BQ = A @ Qf, B @ Qf
    gram = ((AQ * wa[:, None]).T @ (AQ * wa[:, None]) + (BQ * wb[:, None]).T @ (BQ * wb[:, None]))
    with one_host_blas_thread(xp):
        _, vecs = xp.linalg.eigh(gram.astype(np.float64))
    top = vecs[:, ::-1][:, :rank].astype(A.dtype)
    return Qf @ top, AQ @ top, BQ @ top


def sketch(A, B, dim, rank=0, random_state=None):
    """Project the unit rows of A and B to ``dim`` coordinates whose dot products estimate cosines.

    With ``rank = 0`` the projection is ``R / sqrt(dim)``, ``R`` i.i.d. standard
    normal of shape ``(S, dim)``, shared by both sides: the dot product of two
    sketched unit rows estimates their cosine ``c`` without bias, with a
    standard deviation of about ``sqrt((1 + c**2) / dim)``, and the cosine of
    the two sketched rows (what :func:`topk_cosine_sketch` ranks by) is off by
    about ``(1 - c**2) / sqrt(dim)``. With ``rank > 0`` the first ``rank`` coordinates are the exact
    projection onto the top principal directions of the rows (sample space)
    and the other ``dim - rank`` a Gaussian sketch of what lies outside them,
    so only the residual is estimated: activations that share a few strong
    directions (nonnegative ReLU outputs do) are sketched far more accurately
    for the same ``dim``. The Gaussian draws come from a
    :class:`numpy.random.Generator` on the host and are placed on the arrays'
    device, so a seed gives the same sketch on the CPU and on the GPU.

    Parameters
    ----------
    A : ndarray, shape (n_in, S)
    B : ndarray, shape (n_out, S), dtype of A
    dim : int, 1 <= dim
    rank : int, 0 <= rank < dim, rank < S
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    A_s : ndarray, shape (n_in, dim), C-contiguous, dtype of A
    B_s : ndarray, shape (n_out, dim)
        Rows of norm 0 in A or B stay 0.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(1).random((4, 300))
    >>> A_s, B_s = sketch(A, A, 64, rank=4, random_state=0)
    >>> A_s.shape, bool(np.allclose(np.diag(A_s @ B_s.T), 1, atol=0.2))
    ((4, 64), True)
    """
    xp = check_activations(A, B)
    dim = check_int("dim", dim, 1)
    rank = check_int("rank", rank, 0)
    if rank >= dim or dim > A.shape[1]:
        raise ValueError(f"need 0 <= rank < dim <= S, got rank={rank}, dim={dim}, "
                         f"S={A.shape[1]}")
    rng = check_random_state(random_state)
    wa, wb = row_weights(A, xp), row_weights(B, xp)
    parts_a, parts_b, G = [], [], _gaussian(rng, (A.shape[1], dim - rank), A.dtype, xp)
    if rank > 0:
        Q, AQ, BQ = _principal_basis(A, B, wa, wb, rank, rng, xp)
        G -= Q @ (Q.T @ G)
        parts_a.append(AQ)
        parts_b.append(BQ)
    G *= A.dtype.type(1.0 / np.sqrt(dim - rank))
    parts_a.append(A @ G)
    parts_b.append(B @ G)
    A_s = xp.concatenate(parts_a, axis=1) * wa[:, None]
    B_s = xp.concatenate(parts_b, axis=1) * wb[:, None]
    return xp.ascontiguousarray(A_s), xp.ascontiguousarray(B_s)


def topk_cosine_sketch(A, B, k, *, exclude=None, dim=64, oversample=4, rank=None,
                       random_state=None, backend="auto", block_bytes=None):
    """Approximate :func:`~ctre_sparse.ops.topk_cosine`: random-projection candidates, exact scores.

    Candidates are the ``oversample * k`` best absent pairs by the cosine of
    ``dim``-dimensional random projections of the activations (work
    ``O(n_out * n_in * dim)``, ``S / dim`` times less than the exact scan's
    products); they are re-scored exactly over all ``S`` samples and the
    best ``k`` returned. When ``dim >= S`` a sketch saves nothing and the
    exact :func:`~ctre_sparse.ops.topk_cosine` is called instead (the result
    is then identical to it). Memory is ``O(block + (n_in + n_out) * dim +
    oversample * k)``: nothing of size ``n_out * n_in`` is allocated.

    Parameters
    ----------
    A : ndarray, shape (n_in, S)
        Input-side activations (one row per input neuron, S samples).
    B : ndarray, shape (n_out, S), dtype of A
        Output-side activations.
    k : int
        How many pairs to return; fewer come back when fewer pairs are absent.
    exclude : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in), optional
        Existing connections, never returned.
    dim : int, default 64
        Sketch dimension (see :func:`sketch`).
    oversample : int, default 4
        Candidates per returned pair. With ``oversample * k`` at least the
        number of absent pairs every absent pair is re-scored and the set
        is exact.
    rank : int, optional
        How many of the ``dim`` coordinates are exact principal directions
        (see :func:`sketch`); default ``dim // 4``. ``0`` is the plain
        Gaussian random projection.
    random_state : None, int or numpy.random.Generator
        Draws the projection (see :func:`sketch`); fix it for a reproducible
        result.
    backend : str, default "auto"
        Passed to :func:`~ctre_sparse.ops.topk_cosine` and
        :func:`~ctre_sparse.ops.cosine_pairs`.
    block_bytes : int, optional
        Memory budget of one block of sketched scores. Default: 256 bytes per
        candidate (``256 * oversample * k``), at least 32 MiB (the default of
        :func:`~ctre_sparse.ops.topk_cosine`) and at most half the size of
        ``A`` and ``B`` together. The scan merges its ``oversample * k``
        candidates once per block, so larger blocks pay off when that number
        is large: measured 1.1-1.8x faster at 16384 x 16384 with 128 MiB
        than with 32 MiB (docs/cosine_sketch.md). The exact fallback uses the
        default of :func:`~ctre_sparse.ops.topk_cosine` unless one is given.

    Returns
    -------
    rows : int64 ndarray, shape (m,), m = min(k, absent pairs)
    cols : int64 ndarray, shape (m,)
    scores : ndarray, shape (m,), dtype of A
        The exact ``|cos(B[row], A[col])|`` of the returned pairs, ordered by
        score descending, ties by ``(row, col)`` ascending; vectors of norm
        0 score 0 with everything. The contract of
        :func:`~ctre_sparse.ops.topk_cosine`, except that the set may miss
        some of the exact top-k pairs.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.random((30, 500)).astype(np.float32)  # 30 input neurons, 500 samples
    >>> B = rng.random((20, 500)).astype(np.float32)
    >>> B[3] = A[7] + 0.01 * B[3]                      # a planted near-copy
    >>> rows, cols, scores = topk_cosine_sketch(A, B, 5, dim=32, random_state=0)
    >>> int(rows[0]), int(cols[0]), bool(scores[0] > 0.99)
    (3, 7, True)
    >>> from ctre_sparse.ops import cosine_pairs
    >>> bool(np.array_equal(scores, cosine_pairs(B, A, rows, cols)))
    True
    """
    xp = check_activations(A, B)
    k = check_int("k", k, 0)
    dim = check_int("dim", dim, 1)
    oversample = check_int("oversample", oversample, 1)
    rank = dim // 4 if rank is None else check_int("rank", rank, 0)
    if rank >= dim:
        raise ValueError(f"rank must be < dim, got rank={rank}, dim={dim}")
    n_out, n_in, n_samples = B.shape[0], A.shape[0], A.shape[1]
    if exclude is not None:
        exclude = as_csr(exclude, name="exclude")
        if exclude.shape != (n_out, n_in):
            raise ValueError(f"exclude must have shape (n_out, n_in) = {(n_out, n_in)} "
                             f"(B rows, A rows), got {exclude.shape}")
    if dim >= n_samples:
        logger.debug("sketch dim %d >= %d samples: exact topk_cosine instead", dim, n_samples)
        return topk_cosine(A, B, k, exclude=exclude, backend=backend,
                           block_bytes=TOPK_BLOCK_BYTES if block_bytes is None else block_bytes)
    if block_bytes is None:
        block_bytes = max(TOPK_BLOCK_BYTES, min(256 * oversample * k, (A.nbytes + B.nbytes) // 2))
    A_s, B_s = sketch(A, B, dim, rank, random_state)
    rows, cols, _ = topk_cosine(A_s, B_s, oversample * k, exclude=exclude,
                                block_bytes=block_bytes, backend=backend)
    # re-score in (row, col) order: consecutive pairs share B's row and walk A's rows upward,
    # about half the memory traffic of score order (the order of the result is set below)
    by_key = xp.argsort(rows * n_in + cols)
    rows, cols = rows[by_key], cols[by_key]
    scores = cosine_pairs(B, A, rows, cols, backend=backend)  # |cos(B[rows], A[cols])|
    order = best_k(rows, cols, scores, k, xp)
    logger.debug("sketch top-k: %d candidates re-scored, %d kept (dim %d, rank %d, %d samples)",
                 rows.shape[0], order.shape[0], dim, rank, n_samples)
    return rows[order], cols[order], scores[order]


def best_k(rows, cols, scores, k, xp):
    """Positions of the ``k`` best by score descending, then ``(row, col)`` ascending.

    The tie rule of :func:`~ctre_sparse.ops.topk_cosine`, for candidate lists.

    Parameters
    ----------
    rows, cols : int ndarray, shape (m,)
    scores : ndarray, shape (m,)
    k : int
    xp : module
        The array module of the arrays.

    Returns
    -------
    int ndarray, shape (min(k, m),)
        Positions into the candidate arrays, best first.
    """
    pos = xp.arange(scores.shape[0])
    if scores.shape[0] > k > 0:  # sort only what can make the cut
        kth = xp.partition(scores, scores.shape[0] - k)[scores.shape[0] - k]
        pos = xp.flatnonzero(scores >= kth)
    keys = xp.stack([cols[pos].astype(np.float64), rows[pos].astype(np.float64),
                     -scores[pos].astype(np.float64)])
    return pos[xp.lexsort(keys)][:k]


def topk_recall(rows, cols, ref_rows, ref_cols):
    """Fraction of the reference pairs ``(ref_rows, ref_cols)`` found in ``(rows, cols)``.

    ``|found ∩ reference| / |reference|`` (1.0 for an empty reference), the
    recall of an approximate top-k against the exact one. Host arrays.

    Examples
    --------
    >>> import numpy as np
    >>> topk_recall(np.array([0, 1]), np.array([2, 0]), np.array([1, 0]), np.array([0, 1]))
    0.5
    """
    ref_rows, ref_cols = np.asarray(ref_rows, np.int64), np.asarray(ref_cols, np.int64)
    if ref_rows.shape[0] == 0:
        return 1.0
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    width = int(max(cols.max(initial=0), ref_cols.max(initial=0))) + 1
    found = np.isin(ref_rows * width + ref_cols, rows * width + cols)
    return float(found.mean())
