"""Top-k cosine from a nearest-neighbour index: cost sublinear in the number of pairs.

:func:`~ctre_sparse.ops.topk_cosine` scores all ``n_out * n_in`` pairs of a
layer; :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch` scores them all too,
only more cheaply. Neither reaches 10^5-10^6 neurons. This module scores
only the pairs that an inverted-file index (IVF) puts close together:

1. **sketch**: both sides' unit rows are projected on ``dim`` shared
   directions (mostly principal ones, :func:`~ctre_sparse.cosine_sketch.sketch`),
   whose dot products estimate the cosines;
2. **index**: the input-side sketches are clustered (spherical k-means on a
   sample, ``nlist`` centroids) and every input row is filed under its
   nearest centroid;
3. **probe and shortlist**: every output row visits its ``nprobe`` nearest
   centroids; per centroid, one dense product of the sketches of the rows
   that probe it and of the rows filed under it estimates their cosines,
   existing connections are masked, and a streaming top-``oversample * k``
   keeps the best;
4. **re-score**: the shortlist gets its exact cosines over all S samples
   from :func:`~ctre_sparse.ops.cosine_pairs`, and the best ``k`` come back
   in the order of :func:`~ctre_sparse.ops.topk_cosine` (score descending,
   then ``(row, col)``).

Work: ``O((n_in + n_out) * S * dim)`` for the sketch, ``O((n_in + n_out) *
nlist * dim)`` to build and probe the index, about ``O(n_out * n_in * dim *
nprobe / nlist)`` to shortlist (balanced lists) and ``O(oversample * k * S)``
to re-score, against ``O(n_out * n_in * S)`` for the exact scan. With the
default ``nlist ~ sqrt(n_in)`` and a fixed ``nprobe`` (16) that is
``O(n * S * dim + n^1.5 * dim)`` instead of ``O(n^2 * S)``; memory is
``O((n_in + n_out) * (S + dim) + oversample * k + block)``.

**Absolute cosine.** Growth ranks pairs by ``|cos|``: an output neuron may
match an input neuron that is *anti*-correlated with it. A centroid search
by signed inner product never visits those (they sit on the far side of
the sphere), so unless both sides are nonnegative the index holds every
input row twice, as ``a`` and ``-a``: the copy on the side of the query is
found by the signed search, and its inner product is ``|cos|``. Indexing
the mirror rather than searching with ``q`` and ``-q`` doubles only the
clustering work: where one side is mostly positive, the mirrored rows sit
in lists that no query probes, so the shortlist costs the same. When every
activation is nonnegative (ReLU hidden layers, softmax outputs) every
cosine is ``>= 0`` already and the mirror is skipped.

The scores returned are exact cosines; only the *set* can miss a true
top-k pair, when its input row is filed under a centroid its output row
did not probe or its sketched score fell out of the shortlist. Recall
against the exact scan is measured in ``docs/cosine_index.md``
(``benchmarks/bench_topk_index.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
from scipy import sparse

from ._random import check_random_state
from .checks import check_activations, check_int
from .cosine_sketch import best_k, row_weights, sketch
from .device import to_host
from .ops import as_csr, cosine_pairs, topk_cosine

logger = logging.getLogger(__name__)

__all__ = ["topk_cosine_index", "default_nlist", "default_nprobe"]

#: Memory budget (bytes) of one block of scores (rows probing one centroid x its members).
INDEX_BLOCK_BYTES = 32 << 20
#: Training sample of the k-means: this many rows per centroid at most.
KMEANS_ROWS_PER_CENTROID = 64
KMEANS_ITERATIONS = 10


def default_nlist(n_in):
    """Centroids of the index over ``n_in`` rows: ``sqrt(n_in)``, at least 1.

    About ``sqrt(n_in)`` rows per centroid: 32 of 32 rows at 1,024 inputs,
    128 of 128 at 16,384, 1,000 of 1,000 at 10^6. Each list costs a few
    Python-level steps, so fewer and longer lists were faster at the same
    recall (16384 x 16384: 128 lists 7.4x faster than exact, 256 lists
    4.8-5.3x, recall 0.90 at nprobe 8 and 16 respectively;
    docs/cosine_index.md).
    """
    return max(1, min(int(n_in), int(round(math.sqrt(n_in)))))


def default_nprobe(nlist):
    """Centroids probed per output row: 16 (all when fewer).

    A fixed number, so that the scan grows as ``n_out * 16 * n_in / nlist``,
    ``O(n^1.5)`` with the default ``nlist``, not as a fixed fraction of the
    pairs. At 16384 x 16384 (128 lists) it gave recall 0.95; how recall
    holds at 10^5-10^6 neurons, where 16 lists are 1.6-5% of them, has not
    been measured (there is no exact answer to compare with at that size).
    """
    return min(int(nlist), 16)


def _unit_rows(M, xp):
    """Rows of ``M`` scaled to norm 1 (rows of norm 0 stay 0), C-contiguous."""
    return xp.ascontiguousarray(M * row_weights(M, xp)[:, None])


def _nearest(X, C, n, block_bytes):
    """Indices (int64, shape (len(X), n)) of the ``n`` centroids of largest ``X @ C.T``."""
    out = np.empty((X.shape[0], n), dtype=np.int64)
    step = max(1, block_bytes // max(1, 4 * C.shape[0]))
    for s in range(0, X.shape[0], step):
        P = X[s:s + step] @ C.T
        if n == 1:
            out[s:s + step, 0] = np.argmax(P, axis=1)
        elif n >= C.shape[0]:
            out[s:s + step] = np.arange(C.shape[0])
        else:
            out[s:s + step] = np.argpartition(-P, n - 1, axis=1)[:, :n]
    return out


def _routing_space(A, B, dim, rng):
    """Rows in which the lists are built, probed and scanned: ``dim`` sketched coordinates.

    The unit rows projected on ``dim`` shared directions, three quarters of
    them the top principal directions of the activations and the rest
    Gaussian (:func:`~ctre_sparse.cosine_sketch.sketch`): their dot products
    estimate the cosines, ``S / dim`` times cheaper than over all S samples.
    They only route and shortlist the pairs: the shortlist is re-scored
    exactly. With ``S <= dim`` the unit rows themselves are used.
    """
    if A.shape[1] <= dim:
        return _unit_rows(A, np), _unit_rows(B, np)
    return sketch(A, B, dim, rank=dim * 3 // 4, random_state=rng)


def _sum_by_label(X, label, n_labels):
    """Per label, the sum of the rows of ``X`` carrying it: shape (n_labels, S)."""
    onehot = sparse.csr_matrix((np.ones(label.shape[0], X.dtype), (label, np.arange(label.shape[0]))),
                               shape=(n_labels, X.shape[0]))
    return np.asarray(onehot @ X)


def _kmeans(X, nlist, rng, block_bytes):
    """Spherical k-means centroids (``nlist`` unit rows) of the unit rows ``X``.

    Trained on at most :data:`KMEANS_ROWS_PER_CENTROID` rows per centroid
    drawn from ``rng``, :data:`KMEANS_ITERATIONS` rounds; a centroid left
    empty is re-seeded with a random training row.
    """
    n = X.shape[0]
    train = X
    if n > KMEANS_ROWS_PER_CENTROID * nlist:
        train = X[np.sort(rng.choice(n, KMEANS_ROWS_PER_CENTROID * nlist, replace=False))]
    C = train[rng.choice(train.shape[0], nlist, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        label = _nearest(train, C, 1, block_bytes)[:, 0]
        sums = _sum_by_label(train, label, nlist)
        norms = np.linalg.norm(sums, axis=1)
        empty = norms == 0
        if empty.any():
            sums[empty] = train[rng.choice(train.shape[0], int(empty.sum()), replace=False)]
            norms[empty] = np.linalg.norm(sums[empty], axis=1)
        C = sums / np.where(norms > 0, norms, 1)[:, None]
    return np.ascontiguousarray(C, dtype=X.dtype)


class _StreamTopK:
    """The ``k`` largest scores pushed so far, kept as pair keys ``row * n_in + col``.

    Memory O(k + block): a buffer of at most ``2 k`` (score, key) entries,
    cut back to the best ``k`` whenever it fills; past the first cut only
    scores at or above the running k-th best get in.
    """

    #: Below every cosine estimate: marks an excluded pair in a block of scores.
    EXCLUDED = -3.0

    def __init__(self, k, n_in):
        self.k, self.n_in = k, n_in
        self.threshold = -2.0          # keep everything but EXCLUDED until k are held
        self.parts = []
        self.held = 0

    def push(self, P, rows, cols):
        """Offer a block ``P`` (len(rows) x len(cols)) of scores of pairs ``(rows[i], cols[j])``."""
        hit = np.flatnonzero(P >= self.threshold)
        if hit.shape[0] == 0:
            return
        n_cols = P.shape[1]
        keys = rows[hit // n_cols] * self.n_in + cols[hit % n_cols]
        self.parts.append((P.ravel()[hit], keys))
        self.held += hit.shape[0]
        if self.held >= 2 * self.k:
            self._shrink()

    def _shrink(self):
        scores, keys = (np.concatenate(x) for x in zip(*self.parts))
        if scores.shape[0] > self.k:
            keep = np.argpartition(-scores, self.k - 1)[:self.k]
            scores, keys = scores[keep], keys[keep]
            self.threshold = float(scores.min())
        self.parts, self.held = [(scores, keys)], scores.shape[0]

    def keys(self):
        """Sorted unique keys of the best ``k`` (fewer when fewer were pushed)."""
        if not self.parts:
            return np.zeros(0, np.int64)
        self._shrink()
        return np.unique(self.parts[0][1])  # unique: the mirror's twin of a pair


def _excluded_in_block(indptr, indices, qb, mirror, n_in):
    """Pattern entries of rows ``qb``: local row positions and the index ids of their columns."""
    lo, hi = indptr[qb].astype(np.int64), indptr[qb + 1].astype(np.int64)
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return None, None
    local = np.repeat(np.arange(qb.shape[0]), lens)
    flat = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(lo, lens)
    ids = indices[flat].astype(np.int64)
    if mirror:
        local, ids = np.concatenate([local, local]), np.concatenate([ids, ids + n_in])
    return local, ids


def _one_blas_thread():
    """Single-threaded BLAS around the many small products of the scan.

    One list's product is a few hundred rows by a few dozen columns: with
    several BLAS threads each waits on a barrier, measured 27 ms against
    1.3 ms single-threaded for 500 x 1000 x 23 on the 2-core machine (loaded).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class _Lists:
    """The inverted lists: members of each centroid, and each row's slot in its list."""

    def __init__(self, label, nlist):
        self.label = label
        self.order = np.argsort(label, kind="stable")
        self.starts = np.searchsorted(label[self.order], np.arange(nlist + 1))
        self.slot = np.empty(label.shape[0], np.int64)
        self.slot[self.order] = np.arange(label.shape[0]) - self.starts[label[self.order]]

    def members(self, c):
        return self.order[self.starts[c]:self.starts[c + 1]]


def _scan(Br, index_rows, C, lists, nprobe, pattern, top, mirror, block_bytes):
    """Push the estimated scores of every (output row, probed list) pair block into ``top``.

    Output rows go in chunks whose probe tables take at most ``block_bytes``;
    per chunk and list, one product of the rows probing the list and the
    list's members (in blocks of at most ``block_bytes`` of scores).
    """
    n_out, nlist, n_in = Br.shape[0], C.shape[0], top.n_in
    chunk = max(1, block_bytes // (16 * nprobe))
    for q0 in range(0, n_out, chunk):
        probes = _nearest(Br[q0:q0 + chunk], C, nprobe, block_bytes).ravel()
        by_list = np.argsort(probes, kind="stable")
        q_starts = np.searchsorted(probes[by_list], np.arange(nlist + 1))
        with _one_blas_thread():
            for c in range(nlist):
                members = lists.members(c)
                queries = q0 + by_list[q_starts[c]:q_starts[c + 1]] // nprobe
                if members.shape[0] == 0 or queries.shape[0] == 0:
                    continue
                _scan_list(c, Br, index_rows, members, queries, lists, pattern, top, mirror,
                           block_bytes // (4 * members.shape[0]))


def _scan_list(c, Br, index_rows, members, queries, lists, pattern, top, mirror, step):
    """Scores of ``queries`` against list ``c``'s ``members``, excluded pairs masked, pushed."""
    members_t = np.ascontiguousarray(index_rows[members].T)
    cols = members % top.n_in
    for s in range(0, queries.shape[0], max(1, step)):
        qb = queries[s:s + max(1, step)]
        P = Br[qb] @ members_t
        if pattern is not None:
            local, ids = _excluded_in_block(*pattern, qb, mirror, top.n_in)
            if local is not None:
                here = lists.label[ids] == c
                P[local[here], lists.slot[ids[here]]] = _StreamTopK.EXCLUDED
        top.push(P, qb, cols)


def _host_pattern(exclude, n_out, n_in):
    """``(indptr, indices)`` of ``exclude`` on the host, or None."""
    if exclude is None:
        return None
    W = as_csr(exclude, name="exclude")
    if W.shape != (n_out, n_in):
        raise ValueError(f"exclude must have shape (n_out, n_in) = {(n_out, n_in)} "
                         f"(B rows, A rows), got {W.shape}")
    if W.nnz == 0:
        return None
    host = W.to_device("cpu")  # self when it is there already
    return host.indptr, host.indices


def topk_cosine_index(A, B, k, *, exclude=None, nlist=None, nprobe=None, dim=64, oversample=4,
                      random_state=None, backend="auto", block_bytes=INDEX_BLOCK_BYTES):
    """Approximate :func:`~ctre_sparse.ops.topk_cosine` from an inverted-file index.

    The input-side rows are clustered into ``nlist`` lists of a
    ``dim``-coordinate sketch; each output-side row estimates its cosine
    with the rows of the ``nprobe`` lists nearest to it; the best
    ``oversample * k`` absent pairs are re-scored exactly and the best ``k``
    returned (module docstring). Work about ``(n_in + n_out) * (S + nlist) *
    dim + n_out * n_in * dim * nprobe / nlist + oversample * k * S`` instead
    of ``n_out * n_in * S``; nothing of size ``n_out * n_in`` is allocated.

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
    nlist : int, optional
        Centroids (lists) of the index; default :func:`default_nlist`.
    nprobe : int, optional
        Lists scored per output row; default :func:`default_nprobe`. More is
        slower and finds more of the exact top-k (docs/cosine_index.md).
    dim : int, default 64
        Coordinates of the sketch in which pairs are routed and shortlisted
        (3/4 principal directions, 1/4 Gaussian). With ``dim >= S`` the unit
        rows are used as they are.
    oversample : int, default 4
        Shortlisted pairs re-scored exactly per returned pair (1 when
        ``dim >= S``: the shortlist's scores are then exact already).
    random_state : None, int or numpy.random.Generator
        Draws the sketch, the k-means sample and the initial centroids; fix
        it for a reproducible result.
    backend : str, default "auto"
        Backend of the final :func:`~ctre_sparse.ops.cosine_pairs`.
    block_bytes : int, default 32 MiB
        Memory budget of one block of scores.

    Returns
    -------
    rows : int64 ndarray, shape (m,), m = min(k, absent pairs)
    cols : int64 ndarray, shape (m,)
    scores : ndarray, shape (m,), dtype of A
        The exact ``|cos(B[row], A[col])|`` of the returned pairs (from
        :func:`~ctre_sparse.ops.cosine_pairs`), ordered by score descending,
        ties by ``(row, col)`` ascending; vectors of norm 0 score 0. The
        contract of :func:`~ctre_sparse.ops.topk_cosine`, except that the set
        may miss some of the exact top-k pairs. CuPy inputs are indexed on
        the host (a copy of A and B) and the result comes back on the device.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((300, 40)).astype(np.float32)  # 300 input neurons, 40 samples
    >>> B = rng.standard_normal((200, 40)).astype(np.float32)
    >>> B[3] = -A[7] + 0.01 * B[3]                    # a planted anti-correlated pair
    >>> rows, cols, scores = topk_cosine_index(A, B, 5, nlist=16, nprobe=2, random_state=0)
    >>> int(rows[0]), int(cols[0]), bool(scores[0] > 0.99)
    (3, 7, True)
    """
    xp = check_activations(A, B)
    k = check_int("k", k, 0)
    n_out, n_in = B.shape[0], A.shape[0]
    pattern = _host_pattern(exclude, n_out, n_in)
    nlist = default_nlist(n_in) if nlist is None else check_int("nlist", nlist, 1)
    nprobe = default_nprobe(nlist) if nprobe is None else check_int("nprobe", nprobe, 1)
    dim = check_int("dim", dim, 2)
    oversample = check_int("oversample", oversample, 1)
    block_bytes = check_int("block_bytes", block_bytes, 1)
    m = min(k, n_out * n_in - (0 if pattern is None else int(pattern[0][-1])))
    if m == 0:
        empty = xp.zeros(0, dtype=np.int64)
        return empty, empty.copy(), xp.zeros(0, dtype=A.dtype)
    Ah, Bh = to_host(A), to_host(B)
    rng = check_random_state(random_state)
    mirror = bool(Ah.min() < 0 or Bh.min() < 0)  # a negative cosine is possible
    Ar, Br = _routing_space(Ah, Bh, dim, rng)
    if Ah.shape[1] <= dim:
        oversample = 1  # the routing scores are the exact cosines: a longer shortlist adds nothing
    index_rows = np.concatenate([Ar, -Ar]) if mirror else Ar
    nlist = min(nlist, index_rows.shape[0])
    C = _kmeans(index_rows, nlist, rng, block_bytes)
    lists = _Lists(_nearest(index_rows, C, 1, block_bytes)[:, 0], nlist)
    while True:  # a short answer (tiny or nearly full layers) probes more lists
        top = _StreamTopK(oversample * k * (2 if mirror else 1), n_in)
        _scan(Br, index_rows, C, lists, min(nprobe, nlist), pattern, top, mirror, block_bytes)
        keys = top.keys()
        if keys.shape[0] >= m or nprobe >= nlist:
            break
        logger.debug("index top-k: %d of %d pairs with nprobe %d; probing more",
                     keys.shape[0], m, nprobe)
        nprobe *= 2
    rows, cols = xp.asarray(keys // n_in), xp.asarray(keys % n_in)
    scores = cosine_pairs(B, A, rows, cols, backend=backend)  # (row, col) order: cache-friendly
    order = best_k(rows, cols, scores, m, xp)
    logger.debug("index top-k: %d candidates, %d kept (nlist %d, nprobe %d, mirror %s)",
                 keys.shape[0], order.shape[0], nlist, nprobe, mirror)
    return rows[order], cols[order], scores[order]
