"""Native topk_cosine: the sampled admission threshold never changes the answer.

Blocks of at least 32,768 entries get an admission threshold guessed from a
sample of 8,192 of their scores (``csrc/cpu/cosine.cpp``); a guess that lets
fewer than k entries through is detected and the block scanned again. These
tests use blocks that large, against the reference backend bit for bit (the
scores come from the same BLAS product) and against a brute-force selection
for hand-made score blocks where the guess is wrong on purpose.
"""

import numpy as np
import pytest

from ctre_sparse import CSRMatrix, topk_cosine
from ctre_sparse.backends import available_backends

pytestmark = pytest.mark.skipif("native" not in available_backends("cpu"),
                                reason="the native extension is not built")

SAMPLE = 8192  # kSampleSize in cosine.cpp


def _native():
    from ctre_sparse.backends import native

    return native._native


def _exact(A, B, k, W, **kw):
    ref = topk_cosine(A, B, k, exclude=W, backend="reference", **kw)
    got = topk_cosine(A, B, k, exclude=W, backend="native", **kw)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype
        np.testing.assert_array_equal(g, r)
    return got


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("k", [0, 1, 150, 500, 3000, 40_000, 70_000])
def test_random_activations_match_reference(dtype, index_dtype, k):
    rng = np.random.default_rng(k)
    A = rng.standard_normal((300, 40)).astype(dtype)
    B = np.maximum(rng.standard_normal((200, 40)), 0).astype(dtype)  # ReLU-like
    B[::17] = 0  # silent neurons score 0 with everything
    W = CSRMatrix.random(200, 300, 0.05, random_state=k, dtype=dtype, index_dtype=index_dtype)
    rows, cols, scores = _exact(A, B, k, W)
    assert rows.shape[0] == min(k, 200 * 300 - W.nnz)  # k past the absent pairs: all of them


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_cut_by_k_match_reference(dtype):
    """Activations of 0/1/2: a few hundred distinct scores, k ends inside a tie group."""
    rng = np.random.default_rng(3)
    A = rng.integers(0, 3, (300, 6)).astype(dtype)
    B = rng.integers(0, 3, (250, 6)).astype(dtype)
    W = CSRMatrix.random(250, 300, 0.1, random_state=4, dtype=dtype)
    for k in (100, 777, 5000, 20_000):
        rows, cols, scores = _exact(A, B, k, W)
        assert np.unique(scores).shape[0] < scores.shape[0]  # there were ties to break


def test_all_zero_activations_match_reference():
    A = np.zeros((300, 8), np.float32)
    B = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    W = CSRMatrix.random(200, 300, 0.02, random_state=1)
    A_live = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    for a, b, w in ((A, B, W), (A_live, np.zeros_like(B), None)):
        rows, cols, scores = _exact(a, b, 2000, w)
        assert np.all(scores == 0)


def test_several_blocks_with_a_running_top_match_reference():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((300, 30)).astype(np.float32)
    B = rng.standard_normal((400, 30)).astype(np.float32)
    W = CSRMatrix.random(400, 300, 0.03, random_state=6)
    for k in (200, 1500):
        _exact(A, B, k, W, block_bytes=120 * 300 * 4)  # blocks of 120 rows, 36,000 entries


def _brute_block(S, r0, indptr, indices, k, keys, scores):
    """The k best of (top, |S| outside the pattern): score descending, then key ascending."""
    m, n = S.shape
    vals = np.abs(S.astype(np.float64)).ravel()
    mask = np.zeros(m * n, bool)
    for i in range(m):
        mask[i * n + indices[indptr[r0 + i]:indptr[r0 + i + 1]]] = True
    bkeys = np.arange(m * n, dtype=np.int64) + r0 * n
    all_keys = np.concatenate([keys, bkeys[~mask]])
    all_vals = np.concatenate([scores.astype(np.float64), vals[~mask]])
    order = np.lexsort((all_keys, -all_vals))[:k]
    return all_keys[order], all_vals[order]


def _sampled_positions(m, n):
    total = m * n
    return np.arange(SAMPLE, dtype=np.int64) * total // SAMPLE


@pytest.mark.parametrize("excluded", [False, True])
def test_a_wrong_guess_is_caught(excluded):
    """Large scores exactly where the sample looks: the guess admits too few entries.

    Without ``excluded`` only the sampled entries are large (fewer than k, so the
    guess is above the k-th score); with it they are also excluded connections,
    so nothing above the guess may be returned at all.
    """
    m, n, k = 200, 300, 600
    rng = np.random.default_rng(8)
    S = (rng.random((m, n)) * 0.1).astype(np.float32)
    pos = _sampled_positions(m, n)
    S.ravel()[pos] = 0.5 + rng.random(pos.shape[0]).astype(np.float32) * 0.5
    if excluded:
        dense = np.zeros((m, n), np.float32)
        dense.ravel()[pos] = 1
        W = CSRMatrix.from_dense(dense)
    else:
        W = CSRMatrix.from_dense(np.zeros((m, n), np.float32))
    empty_k, empty_s = np.zeros(0, np.int64), np.zeros(0, np.float32)
    want_k, want_s = _brute_block(S, 0, W.indptr, W.indices, k, empty_k, empty_s)
    got_k, got_s = _native().topk_block(S.copy(), 0, W.indptr, W.indices, k, empty_k, empty_s)
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_array_equal(got_s.astype(np.float64), want_s)
    if excluded:
        assert np.all(got_s < 0.5)


def test_guess_and_running_top_together():
    """A running top whose k-th score is below the guess; entries of the top above it count."""
    m, n, k = 200, 300, 400
    rng = np.random.default_rng(9)
    S = rng.standard_normal((m, n)).astype(np.float32)
    W = CSRMatrix.random(m + 5, n, 0.05, random_state=10)
    top_keys = np.sort(rng.choice(5 * n, k, replace=False)).astype(np.int64)  # rows 0..4
    top_scores = np.sort(rng.random(k).astype(np.float32) * 3)[::-1].copy()
    order = np.lexsort((top_keys, -top_scores.astype(np.float64)))
    top_keys, top_scores = top_keys[order], top_scores[order]
    for kk in (k, 150, 1):
        tk, ts = top_keys[:kk], top_scores[:kk]
        want_k, want_s = _brute_block(S, 5, W.indptr, W.indices, kk, tk, ts)
        got_k, got_s = _native().topk_block(S.copy(), 5, W.indptr, W.indices, kk, tk, ts)
        np.testing.assert_array_equal(got_k, want_k)
        np.testing.assert_array_equal(got_s.astype(np.float64), want_s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_unsorted_running_top_across_many_blocks(dtype, block_rows):
    """The running top stays unsorted between blocks (one sort at the end): same answer,
    ties included, whether k is reached in the first block, exactly at a block's end, or never."""
    rng = np.random.default_rng(block_rows)
    A = rng.integers(0, 3, (60, 5)).astype(dtype)
    B = rng.integers(0, 3, (90, 5)).astype(dtype)
    W = CSRMatrix.random(90, 60, 0.2, random_state=block_rows, dtype=dtype)
    per_row = 60 - np.diff(W.indptr)  # absent pairs per row: k equal to a prefix sum of
    ends = np.minimum([0, block_rows - 1, 2 * block_rows - 1], 89)
    exact_ends = np.cumsum(per_row)[ends]  # ... block ends
    itemsize = np.dtype(dtype).itemsize
    for k in (1, 59, *exact_ends.tolist(), 2000, 90 * 60):
        _exact(A, B, int(k), W, block_bytes=block_rows * 60 * itemsize)


@pytest.mark.parametrize("k", [5, 60, 200])
def test_topk_block_unsorted_keeps_the_kth_best_last(k):
    """sort=False: once k are kept, position k - 1 holds the k-th best and the better ones
    come before it; as a set, the same top as sort=True."""
    rng = np.random.default_rng(k)
    S = rng.integers(0, 20, (10, 20)).astype(np.float32)  # ties
    W = CSRMatrix.from_dense(np.zeros((10, 20), np.float32))
    empty_k, empty_s = np.zeros(0, np.int64), np.zeros(0, np.float32)
    want_k, want_s = _native().topk_block(S.copy(), 0, W.indptr, W.indices, k, empty_k, empty_s)
    got_k, got_s = _native().topk_block(S.copy(), 0, W.indptr, W.indices, k, empty_k, empty_s,
                                        sort=False)
    order = np.lexsort((got_k, -got_s))
    np.testing.assert_array_equal(got_k[order], want_k)
    np.testing.assert_array_equal(got_s[order], want_s)
    kth = (want_s[k - 1], want_k[k - 1])
    assert (got_s[k - 1], got_k[k - 1]) == kth
    better = (got_s[:k - 1] > kth[0]) | ((got_s[:k - 1] == kth[0]) & (got_k[:k - 1] < kth[1]))
    assert better.all()
