"""Top-k cosine from a nearest-neighbour index: cost sublinear in the number of pairs.

:func:`~ctre_sparse.ops.topk_cosine` scores all ``n_out * n_in`` pairs of a
layer; :func:`~ctre_sparse.cosine_sketch.topk_cosine_sketch` scores them all too,
only more cheaply. Neither reaches 10^5-10^6 neurons. This module scores
only the pairs that an inverted-file index (IVF) puts close together:

1. **sketch**: both sides' unit rows are projected on ``dim`` shared
   directions (three quarters of them the principal directions of a sample
   of the rows, the rest Gaussian), whose dot products estimate the
   cosines;
2. **index**: the input-side sketches are clustered (spherical k-means on a
   sample, ``nlist`` centroids) and every input row is filed under its
   nearest centroid;
3. **probe and shortlist**: every output row visits its ``nprobe`` nearest
   centroids; per centroid, one BLAS product of the sketches of the rows
   that probe it and of the rows filed under it estimates their cosines,
   and a compiled filter skips existing connections and keeps the pairs at
   or above a threshold, set from the scores of a sample of the rows to
   keep about ``oversample * k`` pairs (lists shared among threads);
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
``O((n_in + n_out) * (S + dim) + n_out * nprobe + oversample * k + block)``.

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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import sparse

from ._random import check_random_state
from . import _cosine_index_kernels as _kernels
from .checks import check_activations, check_int
from .cosine_sketch import best_k, row_weights
from .device import to_host
from .ops import as_csr, cosine_pairs

logger = logging.getLogger(__name__)

__all__ = ["topk_cosine_index", "default_nlist", "default_nprobe"]

#: Memory budget (bytes) of one block of scores (output rows x lists or x one list's members).
INDEX_BLOCK_BYTES = 16 << 20
#: Rows (of A and B together) whose principal directions span the routing space.
SKETCH_SAMPLE_ROWS = 4096
#: The shortlist's threshold is set from the scores of every SAMPLE_STRIDE-th output row ...
SAMPLE_STRIDE = 16
#: ... when there are at least SAMPLE_MIN_ROWS of them (all rows otherwise) ...
SAMPLE_MIN_ROWS = 256
#: ... to keep this many times the pairs asked for (the estimate's margin).
SHORTLIST_MARGIN = 1.3
#: Training sample of the k-means: this many rows per centroid at most.
KMEANS_ROWS_PER_CENTROID = 32
KMEANS_ITERATIONS = 5


def default_nlist(n_in):
    """Centroids of the index over ``n_in`` rows: ``sqrt(n_in)``, at least 1.

    About ``sqrt(n_in)`` rows per centroid: 32 of 32 rows at 1,024 inputs,
    128 of 128 at 16,384, 1,000 of 1,000 at 10^6: the k-means and the
    probes cost ``O(n * nlist)``, the scan ``O(n * nprobe * n / nlist)``,
    and this balances them (docs/cosine_index.md).
    """
    return max(1, min(int(n_in), int(round(math.sqrt(n_in)))))


def default_nprobe(nlist):
    """Centroids probed per output row: 16 (all when fewer).

    A fixed number, so that the scan grows as ``n_out * 16 * n_in / nlist``,
    ``O(n^1.5)`` with the default ``nlist``, not as a fixed fraction of the
    pairs. At 16384 x 16384 (128 lists) it gave recall 0.925 at 11.8x less
    time than exact (32 probes: 0.965 at about the same time; at 10^6
    neurons they would double the scan, 80% of that update); how recall
    holds at 10^5-10^6 neurons, where 16 lists are 1.6-5% of them, has not
    been measured (there is no exact answer to compare with at that size).
    """
    return min(int(nlist), 16)


def _unit_rows(M, xp):
    """Rows of ``M`` scaled to norm 1 (rows of norm 0 stay 0), C-contiguous."""
    return xp.ascontiguousarray(M * row_weights(M, xp)[:, None])


def _nearest(X, C, n, block_bytes):
    """The ``n`` centroids of largest ``X @ C.T`` per row (int64, (len(X), n)), best first."""
    out = np.empty((X.shape[0], n), dtype=np.int64)
    step = max(1, block_bytes // max(1, 4 * C.shape[0]))
    for s in range(0, X.shape[0], step):
        P = X[s:s + step] @ C.T
        if n == 1:
            out[s:s + step, 0] = np.argmax(P, axis=1)
        else:
            _kernels.top_lists(P, n, out[s:s + step])
    return out


def _routing_weights(M):
    """``1 / ||M[i]||`` (0 for rows of norm 0), summed in the dtype of ``M``.

    Only for routing: half the memory traffic of the float64 sums of the
    exact path, and the shortlist is re-scored exactly anyway.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", M, M))
    return np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 0).astype(M.dtype)


def _projection(A, B, wa, wb, dim, rng):
    """The ``(S, dim)`` projection of the routing space, from a sample of the rows.

    Its first ``rank = 3 dim / 4`` columns are the top principal directions
    (sample space) of :data:`SKETCH_SAMPLE_ROWS` unit rows drawn from A and B
    together (a randomized range finder with one power step and 8 extra
    columns, then the eigenvectors of the small Gram matrix in that range):
    the directions that most rows share, found without a pass over all rows.
    The other ``dim - rank`` are Gaussian, orthogonal to those and scaled by
    ``1 / sqrt(dim - rank)``, for what lies outside them.
    """
    n_a, n_samples = A.shape
    rank = dim * 3 // 4
    take = min(n_a + B.shape[0], SKETCH_SAMPLE_ROWS)
    pick = np.sort(rng.choice(n_a + B.shape[0], take, replace=False))
    ia, ib = pick[pick < n_a], pick[pick >= n_a] - n_a
    X = np.concatenate([A[ia] * wa[ia, None], B[ib] * wb[ib, None]])
    G = rng.standard_normal((n_samples, rank + min(8, n_samples - rank))).astype(A.dtype)
    with _one_blas_thread():
        basis, _ = np.linalg.qr(X.T @ (X @ G))
        Z = X @ basis
        _, vecs = np.linalg.eigh((Z.T @ Z).astype(np.float64))
    P = basis @ vecs[:, ::-1][:, :rank].astype(A.dtype)
    R = rng.standard_normal((n_samples, dim - rank)).astype(A.dtype)
    R -= P @ (P.T @ R)
    R *= A.dtype.type(1.0 / math.sqrt(dim - rank))
    return np.ascontiguousarray(np.concatenate([P, R], axis=1))


def _routing_space(A, B, dim, rng):
    """Rows in which the lists are built, probed and scanned: ``dim`` sketched coordinates.

    The unit rows projected by :func:`_projection`: their dot products
    estimate the cosines, ``S / dim`` times cheaper than over all S samples,
    exactly for what lies in the principal directions. They only route and
    shortlist the pairs: the shortlist is re-scored exactly. Two products of
    ``(n, S)`` by ``(S, dim)``; with ``S <= dim`` the unit rows themselves
    are used.
    """
    if A.shape[1] <= dim:
        return _unit_rows(A, np), _unit_rows(B, np)
    wa, wb = _routing_weights(A), _routing_weights(B)
    R = _projection(A, B, wa, wb, dim, rng)
    A_s, B_s = A @ R, B @ R
    A_s *= wa[:, None]
    B_s *= wb[:, None]
    return A_s, B_s


def _sum_by_label(X, label, n_labels):
    """Per label, the sum of the rows of ``X`` carrying it: shape (n_labels, S)."""
    onehot = sparse.csr_matrix((np.ones(label.shape[0], X.dtype),
                                (label, np.arange(label.shape[0]))), shape=(n_labels, X.shape[0]))
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


def _one_blas_thread():
    """Single-threaded BLAS around small factorizations and products.

    A QR or a product of a few thousand rows by a few dozen columns is a
    chain of small BLAS calls; with two threads each waits on a barrier:
    27 ms against 1.3 ms single-threaded for 500 x 1000 x 23, and 0.46 s
    against 2 ms for a 56 x 16384 by 16384 x 56 product, on the 2-core
    machine under load.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class _Index:
    """The inverted lists: per list its members' input neurons and their rows, transposed.

    ``blocks[c]`` is the ``(dim, size)`` matrix of list ``c``'s rows (the
    right operand of the list's product); ``members[c]`` their input
    neurons; ``label`` and ``slot`` each index id's list and position in it.
    """

    def __init__(self, rows, label, nlist, n_in):
        order = np.argsort(label, kind="stable")
        starts = np.zeros(nlist + 1, np.int64)
        np.cumsum(np.bincount(label, minlength=nlist), out=starts[1:])
        self.blocks = [np.ascontiguousarray(rows[order[lo:hi]].T)
                       for lo, hi in zip(starts[:-1], starts[1:])]
        self.members = [order[lo:hi] % n_in for lo, hi in zip(starts[:-1], starts[1:])]
        self.label = label
        self.slot = np.empty(label.shape[0], np.int64)
        self.slot[order] = np.arange(label.shape[0]) - starts[label[order]]
        self.nlist, self.n_in = nlist, n_in


def _rows_by_list(probes, nlist):
    """``(q_starts, q_rows)``: the rows that probe each list (ascending), from a probe table."""
    flat = probes.ravel()
    small = flat.astype(np.int16 if nlist <= np.iinfo(np.int16).max else np.int32)
    by_list = np.argsort(small, kind="stable")  # a radix sort for 16-bit keys
    q_starts = np.zeros(nlist + 1, np.int64)
    np.cumsum(np.bincount(flat, minlength=nlist), out=q_starts[1:])
    return q_starts, by_list // probes.shape[1]


def _threads():
    """Worker threads of the scan: numba's thread count (the cores this process may use)."""
    try:
        import numba
        return max(1, int(numba.get_num_threads()))
    except Exception:  # pragma: no cover - numba is a dependency
        return 1


class _Scan:
    """The estimated scores of every (output row, probed list) pair, one list at a time.

    Per list, one BLAS product of the probing rows' sketches and the list's
    block (single-threaded, in blocks of at most ``block_bytes``), then
    :func:`~._cosine_index_kernels.filter_block`. Lists are shared among
    :func:`_threads` worker threads (the product and the kernel release the
    GIL); each list's result lands in its own slot, so the outcome does not
    depend on the threads.
    """

    def __init__(self, Q, index, probes, pattern, mirror, block_bytes):
        self.Q, self.index, self.mirror, self.probes = Q, index, mirror, probes
        self.block_bytes = block_bytes
        if pattern is None:
            pattern = (np.zeros(Q.shape[0] + 1, np.int64), np.zeros(0, np.int64))
        self.pattern = pattern

    def _lists(self, stride, work):
        """``[work(c, rows probing c, P of each block) for c]`` over the lists, threaded."""
        q_starts, q_rows = _rows_by_list(self.probes[::stride], self.index.nlist)
        q_rows *= stride

        def one(c):
            rows, block = q_rows[q_starts[c]:q_starts[c + 1]], self.index.blocks[c]
            step = max(1, self.block_bytes // max(1, 4 * block.shape[1]))
            return [work(c, rows[s:s + step], self.Q[rows[s:s + step]] @ block)
                    for s in range(0, rows.shape[0], step) if block.shape[1]]

        with _one_blas_thread():
            if _threads() == 1:
                return [one(c) for c in range(self.index.nlist)]
            with ThreadPoolExecutor(_threads()) as pool:
                return list(pool.map(one, range(self.index.nlist)))

    def _filter(self, c, rows, P, tau, hist, room):
        ix = self.index
        score, key = np.empty(room, P.dtype), np.empty(room, np.int64)
        found = _kernels.filter_block(P, rows, c, self.pattern[0], self.pattern[1], ix.label,
                                      ix.slot, ix.members[c], ix.n_in, self.mirror, tau, hist,
                                      score, key)
        return found, score, key

    def histogram(self, stride):
        """Per-list histograms ``(nlist, HIST_BINS)`` of every ``stride``-th row's scores."""
        hist = np.zeros((self.index.nlist, _kernels.HIST_BINS), np.int64)
        self._lists(stride, lambda c, rows, P: self._filter(c, rows, P, 0.0, hist[c], 0))
        return hist

    def collect(self, tau, room):
        """(scores, keys) of every pair scoring ``>= tau``, lists in order; ``room``: a guess."""
        no_hist = np.zeros(0, np.int64)

        def keep(c, rows, P):
            found, score, key = self._filter(c, rows, P, tau, no_hist, int(room[c]))
            if found > score.shape[0]:  # more than guessed: the same block again, with room
                found, score, key = self._filter(c, rows, P, tau, no_hist, found)
            return score[:found], key[:found]

        parts = [part for blocks in self._lists(1, keep) for part in blocks]
        if not parts:
            return np.zeros(0, self.Q.dtype), np.zeros(0, np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


#: A threshold that keeps every scanned pair (skipped pairs are marked -inf, below it).
_KEEP_ALL = -np.finfo(np.float64).max


def _threshold(hist, stride, want):
    """``(tau, cap)``: a score threshold expected to keep about ``want`` pairs, and room per list.

    ``hist`` counts the scores of every ``stride``-th row's pairs; scaled by
    ``stride`` it estimates the scan's. ``tau`` is the lower edge of the
    highest bin from which the estimated count reaches ``want`` (the lowest
    float when no bin does: every pair but the skipped ones, marked -inf);
    ``cap`` is each list's estimated count above it, with a margin (a block
    that finds more is filtered again with room for all it found).
    """
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1] * stride  # per list, count in bins >= b
    hit = np.flatnonzero(above.sum(axis=0) >= want)
    b = int(hit[-1]) if hit.shape[0] else 0
    width = (_kernels.HIST_HI - _kernels.HIST_LO) / _kernels.HIST_BINS
    tau = _KEEP_ALL if b == 0 else _kernels.HIST_LO + b * width
    return tau, (above[:, b] * 3 // 2 + 1024).astype(np.int64)


def _shortlist(scan, want):
    """(scores, keys) of at least ``want`` scanned pairs, all those above some threshold.

    The threshold comes from the histogram of a sample of the output rows
    (every :data:`SAMPLE_STRIDE`-th; all of them for small layers), set to
    keep :data:`SHORTLIST_MARGIN` times ``want`` pairs; in the rare case
    that keeps fewer than ``want`` it is lowered and the scan repeated.
    The pairs are then exactly those scoring at or above it: the same set
    whatever the order of the work. Fewer than ``want`` come back only when
    the probed lists hold fewer pairs.
    """
    n_out = scan.Q.shape[0]
    stride = SAMPLE_STRIDE if n_out >= SAMPLE_STRIDE * SAMPLE_MIN_ROWS else 1
    hist = scan.histogram(stride)
    for margin in (SHORTLIST_MARGIN, 4 * SHORTLIST_MARGIN, np.inf):
        tau, cap = _threshold(hist, stride, margin * want)
        scores, keys = scan.collect(tau, cap)
        if scan.mirror:  # a pair found through A[j] and -A[j]: keep its better estimate
            order = np.lexsort((-scores, keys))
            first = np.ones(order.shape[0], bool)
            first[1:] = keys[order[1:]] != keys[order[:-1]]
            scores, keys = scores[order[first]], keys[order[first]]
        if keys.shape[0] >= want or tau == _KEEP_ALL:
            return scores, keys
        logger.debug("index top-k: threshold %.4f kept %d of %d pairs; lowering it",
                     tau, keys.shape[0], want)
    return scores, keys  # pragma: no cover - the last margin keeps everything


def _best_keys(scores, keys, want):
    """The keys of the ``want`` best by estimated score (ties: smaller key), sorted ascending."""
    if keys.shape[0] > want:
        kth = np.partition(scores, keys.shape[0] - want)[keys.shape[0] - want]
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)
        ties = ties[np.argsort(keys[ties], kind="stable")[:want - above.shape[0]]]
        keys = keys[np.concatenate([above, ties])]
    return np.sort(keys)


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
    block_bytes : int, default 16 MiB
        Memory budget of one block of scores (per worker thread).

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
    absent = n_out * n_in - (0 if pattern is None else int(pattern[0][-1]))
    m = min(k, absent)
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
    index = _Index(index_rows, _nearest(index_rows, C, 1, block_bytes)[:, 0], nlist, n_in)
    del index_rows, Ar
    want = min(oversample * k, absent)
    while True:  # a short answer (tiny or nearly full layers) probes more lists
        nprobe = min(nprobe, nlist)
        scan = _Scan(Br, index, _nearest(Br, C, nprobe, block_bytes), pattern, mirror,
                     block_bytes)
        scores, keys = _shortlist(scan, want)
        if keys.shape[0] >= m or nprobe >= nlist:
            break
        logger.debug("index top-k: %d of %d pairs with nprobe %d; probing more",
                     keys.shape[0], m, nprobe)
        nprobe *= 2
    keys = _best_keys(scores, keys, want)
    rows, cols = xp.asarray(keys // n_in), xp.asarray(keys % n_in)
    scores = cosine_pairs(B, A, rows, cols, backend=backend)  # (row, col) order: cache-friendly
    order = best_k(rows, cols, scores, m, xp)
    logger.debug("index top-k: %d candidates, %d kept (nlist %d, nprobe %d, mirror %s)",
                 keys.shape[0], order.shape[0], nlist, nprobe, mirror)
    return rows[order], cols[order], scores[order]
