"""topk_cosine: exact top-k of |cos| over absent pairs, against brute force, in bounded memory."""

import numpy as np
import pytest

from conftest import assert_topk_cosine as assert_topk
from conftest import brute_cosine, call_topk, csr_to_device, run_within_memory, to_device, to_host
from ctre_sparse import CSRMatrix, cosine_pairs, topk_cosine
from ctre_sparse.testing import random_dense, tolerance


def call(A, B, k, exclude, backend, **kw):
    return call_topk(topk_cosine, A, B, k, exclude, backend, **kw)


# ------------------------------------------------------------------ hand-worked
HAND_A = [[1, 0], [0, 1], [0, 0]]    # n_in = 3 (the third neuron is silent)
HAND_B = [[2, 0], [0, -3]]           # n_out = 2


def _hand(dtype, index_dtype):
    A, B = np.array(HAND_A, dtype=dtype), np.array(HAND_B, dtype=dtype)
    W = CSRMatrix(np.ones(1, dtype=dtype), np.array([0], dtype=index_dtype),
                  np.array([0, 1, 1], dtype=index_dtype), (2, 3), full_check=True)  # (0, 0)
    return A, B, W


def test_hand_case_exact(backend, dtype, index_dtype):
    A, B, W = _hand(dtype, index_dtype)
    # scores: (0,1) 0, (0,2) 0 [silent], (1,0) 0, (1,1) 1, (1,2) 0; (0,0) excluded
    rows, cols, scores = call(A, B, 3, W, backend)
    assert rows.tolist() == [1, 0, 0] and cols.tolist() == [1, 1, 2]
    np.testing.assert_array_equal(scores, np.array([1, 0, 0], dtype=dtype))
    rows, cols, scores = call(A, B, 100, W, backend)  # more than absent: all 5, in order
    assert list(zip(rows.tolist(), cols.tolist())) == [(1, 1), (0, 1), (0, 2), (1, 0), (1, 2)]
    np.testing.assert_array_equal(scores, np.array([1, 0, 0, 0, 0], dtype=dtype))
    rows, cols, scores = call(A, B, 2, None, backend)  # no exclusion: (0,0) wins the tie at 1
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1)]
    np.testing.assert_array_equal(scores, np.array([1, 1], dtype=dtype))


def test_k_zero(backend, dtype):
    A, B, W = _hand(dtype, np.int32)
    rows, cols, scores = call(A, B, 0, W, backend)
    assert rows.shape == cols.shape == scores.shape == (0,)


def test_everything_excluded(backend, dtype, index_dtype):
    A = random_dense(4, 3, dtype=dtype, seed=1)
    B = random_dense(5, 3, dtype=dtype, seed=2)
    W = CSRMatrix.from_dense(np.ones((5, 4), dtype=dtype), index_dtype=index_dtype)
    rows, cols, scores = call(A, B, 10, W, backend)
    assert rows.shape == (0,)


# ------------------------------------------------------------------ exact ties
def _tie_family(n, rng, dtype):
    """Rows with normalised entries in {0, +-1/2, +-1}: all scores exact in {0, 1/2, 1}."""
    basis = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -3, 0], [1, 1, 1, 1], [1, -1, 1, -1],
                      [1, 1, -1, -1], [-2, 2, 2, -2], [0, 0, 0, 0]], dtype=dtype)
    return basis[rng.integers(0, len(basis), n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ties_exact_order(backend, dtype, index_dtype, seed):
    rng = np.random.default_rng(seed)
    A, B = _tie_family(13, rng, dtype), _tie_family(11, rng, dtype)
    B[3] = B[7]  # duplicate output rows: equal scores, row 3 must come first
    W = CSRMatrix.random(11, 13, 0.3, random_state=seed, dtype=dtype, index_dtype=index_dtype)
    S, br, bc = brute_cosine(A, B, W.toarray())
    assert np.all(np.isin(S, [0, 0.5, 1]))
    for k in (1, 5, 17, 40, 200):
        for block_bytes in (1, 13 * dtype.itemsize * 3, 1 << 20):  # 1, 3 and all rows a block
            rows, cols, scores = call(A, B, k, W, backend, block_bytes=block_bytes)
            m = min(k, br.shape[0])
            np.testing.assert_array_equal(rows, br[:m])
            np.testing.assert_array_equal(cols, bc[:m])
            np.testing.assert_array_equal(scores, S[br[:m], bc[:m]].astype(dtype))


def test_duplicate_rows_equal_scores(backend, dtype):
    A = random_dense(8, 5, dtype=dtype, seed=3)
    B = random_dense(6, 5, dtype=dtype, seed=4)
    B[4] = B[1]
    rows, cols, scores = call(A, B, 48, None, backend)  # every pair
    got = {(r, c): s for r, c, s in zip(rows.tolist(), cols.tolist(), scores.tolist())}
    pos = {(r, c): i for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))}
    rtol, atol = tolerance(dtype)
    for c in range(8):
        assert got[(1, c)] == pytest.approx(got[(4, c)], rel=rtol, abs=atol)
        if got[(1, c)] == got[(4, c)]:  # an exact tie: the smaller row first
            assert pos[(1, c)] < pos[(4, c)]


# ------------------------------------------------------------------ random vs brute force
@pytest.mark.parametrize("n_out,n_in,S", [(1, 1, 1), (7, 5, 3), (30, 20, 8), (13, 60, 25),
                                          (64, 3, 4)])
@pytest.mark.parametrize("density", [0.0, 0.2, 0.7])
def test_random_vs_brute_force(backend, dtype, index_dtype, n_out, n_in, S, density):
    A = random_dense(n_in, S, dtype=dtype, seed=n_in)
    B = random_dense(n_out, S, dtype=dtype, seed=n_out + 7)
    A[::7] = 0  # silent input neurons
    W = CSRMatrix.random(n_out, n_in, density, random_state=S, dtype=dtype,
                         index_dtype=index_dtype)
    saved = (A.copy(), B.copy(), W.indices.copy(), W.indptr.copy())
    absent = n_out * n_in - W.nnz
    for k in sorted({1, 10, absent // 2, absent, absent + 5}):
        assert_topk(call(A, B, k, W, backend), A, B, k, W)
    for before, after in zip(saved, (A, B, W.indices, W.indptr)):
        np.testing.assert_array_equal(before, after)


def test_exclude_none_equals_empty_exclude(backend, dtype, index_dtype):
    A = random_dense(20, 6, dtype=dtype, seed=5)
    B = random_dense(15, 6, dtype=dtype, seed=6)
    empty = CSRMatrix.random(15, 20, nnz=0, dtype=dtype, index_dtype=index_dtype)
    a, b = call(A, B, 25, None, backend), call(A, B, 25, empty, backend)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert_topk(a, A, B, 25, None)


def test_k_larger_than_absent_returns_all_absent(backend, dtype):
    A = random_dense(9, 4, dtype=dtype, seed=7)
    B = random_dense(6, 4, dtype=dtype, seed=8)
    W = CSRMatrix.random(6, 9, 0.8, random_state=1, dtype=dtype)
    rows, cols, scores = call(A, B, 10**6, W, backend)
    absent = set(zip(*np.nonzero(W.toarray() == 0)))
    assert len(rows) == len(absent) == 54 - W.nnz
    assert set(zip(rows.tolist(), cols.tolist())) == {(int(r), int(c)) for r, c in absent}


def test_silent_neurons_score_zero(backend, dtype):
    A = random_dense(5, 4, dtype=dtype, seed=9)
    B = random_dense(4, 4, dtype=dtype, seed=10)
    A[2] = 0
    B[1] = 0
    rows, cols, scores = call(A, B, 20, None, backend)
    got = dict(zip(zip(rows.tolist(), cols.tolist()), scores.tolist()))
    assert all(got[(r, 2)] == 0 for r in range(4))
    assert all(got[(1, c)] == 0 for c in range(5))
    assert min(got[(r, c)] for r in (0, 2, 3) for c in (0, 1, 3, 4)) > 0


# ------------------------------------------------------------------ memory
def test_memory_bounded_on_a_huge_layer(backend):
    """50,000 x 50,000 (dense float32 would be 10 GB): peak stays far below 1 GiB."""
    n, S, k = 50_000, 6, 500
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, S)).astype(np.float32)
    B = rng.standard_normal((n, S)).astype(np.float32)
    W = CSRMatrix.random(n, n, nnz=200_000, random_state=1)  # density 8e-5
    call(A[:50], B[:40], 5, None, backend)  # warm-up (JIT compile) outside the measurement
    A_d, B_d, W_d = to_device(A, backend), to_device(B, backend), csr_to_device(W, backend)
    (rows, cols, scores), elapsed = run_within_memory(
        lambda: topk_cosine(A_d, B_d, k, exclude=W_d, backend=backend),
        traced_bytes=256 * 2**20, resident_bytes=(None if backend == "cuda" else 512 * 2**20))
    rows, cols, scores = to_host(rows), to_host(cols), to_host(scores)
    # sane result
    assert rows.shape == cols.shape == scores.shape == (k,)
    assert np.all(np.diff(scores) <= 0)
    assert 0 <= rows.min() and rows.max() < n and 0 <= cols.min() and cols.max() < n
    keys = rows * n + cols
    assert np.unique(keys).shape == (k,)
    w_keys = W.row_indices().astype(np.int64) * n + W.indices
    assert not np.any(np.isin(keys, w_keys)), "an existing connection was returned"
    pick = np.linspace(0, k - 1, 12).astype(np.int64)
    ref = cosine_pairs(B, A, rows[pick], cols[pick], backend="reference")
    np.testing.assert_allclose(scores[pick], ref, rtol=0, atol=1e-5)
    # optimality on a sample of rows: no absent pair there beats the k-th score
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
    dense_w = W.to_scipy()
    for r in rng.choice(n, 20, replace=False):
        row = np.abs(An @ Bn[r])
        row[dense_w[r].indices] = -1
        row[cols[rows == r]] = -1
        assert row.max() <= scores[-1] + 1e-5
    assert elapsed < 180, f"took {elapsed:.1f} s"  # ~10-15 s unloaded on 2 cores


def test_the_memory_check_fails_on_a_large_allocation():
    """run_within_memory, which the bounded-memory tests rely on, sees a 64 MiB array."""
    with pytest.raises(AssertionError, match="tracemalloc peak"):
        run_within_memory(lambda: np.ones(2**23), traced_bytes=16 * 2**20)
    assert run_within_memory(lambda: 7, traced_bytes=2**20)[0] == 7
