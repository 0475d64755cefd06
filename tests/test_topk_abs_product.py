"""topk_abs_product: exact top-k of |B[row] . A[col]| over absent pairs, against a dense oracle.

The op behind gradient-based (RigL) growth: with ``A`` a layer's inputs and
``B`` the loss gradient at its outputs, ``|B @ A.T|`` is the dense weight
gradient's magnitude. Checked on every backend present, both value and index
dtypes, awkward shapes, exact ties, block sizes, the validation errors, its
relation to topk_cosine, and in bounded memory on a layer whose dense score
matrix would not fit.
"""


import numpy as np
import pytest

from conftest import assert_topk_abs_product as assert_topk
from conftest import brute_abs_product as brute
from conftest import call_topk, csr_to_device, run_within_memory, to_device, to_host
from ctre_sparse import CSRMatrix, topk_abs_product, topk_cosine
from ctre_sparse.testing import random_dense, tolerance

F32 = np.float32


def call(A, B, k, exclude, backend, **kw):
    return call_topk(topk_abs_product, A, B, k, exclude, backend, **kw)


def test_hand_case_exact(backend, dtype, index_dtype):
    A = np.array([[1, 0], [0, 2], [0, 0]], dtype=dtype)    # n_in = 3, the third silent
    B = np.array([[3, 1], [0, -1]], dtype=dtype)           # n_out = 2
    W = CSRMatrix(np.ones(1, dtype=dtype), np.array([0], dtype=index_dtype),
                  np.array([0, 1, 1], dtype=index_dtype), (2, 3), full_check=True)  # (0, 0)
    # |B @ A.T| = [[3, 2, 0], [0, 2, 0]]; (0, 0) excluded
    rows, cols, scores = call(A, B, 3, W, backend)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 1), (0, 2)]
    np.testing.assert_array_equal(scores, np.array([2, 2, 0], dtype=dtype))
    rows, cols, scores = call(A, B, 1, None, backend)
    assert (rows.tolist(), cols.tolist(), scores.tolist()) == ([0], [0], [3.0])


def test_not_normalised(backend, dtype):
    """Unlike topk_cosine, the magnitude counts: a long vector beats a well-aligned short one."""
    A = np.array([[1, 0], [0, 1]], dtype=dtype)
    B = np.array([[0.1, 0], [10, 10]], dtype=dtype)  # row 0 aligned with A[0], row 1 long
    rows, cols, _ = call(A, B, 1, None, backend)
    assert (rows[0], cols[0]) in {(1, 0), (1, 1)}
    rows, cols, _ = topk_cosine(to_device(A, backend), to_device(B, backend), 1, backend=backend)
    assert (int(to_host(rows)[0]), int(to_host(cols)[0])) == (0, 0)


def test_k_zero_and_everything_excluded(backend, dtype, index_dtype):
    A = random_dense(4, 3, dtype=dtype, seed=1)
    B = random_dense(5, 3, dtype=dtype, seed=2)
    assert call(A, B, 0, None, backend)[0].shape == (0,)
    W = CSRMatrix.from_dense(np.ones((5, 4), dtype=dtype), index_dtype=index_dtype)
    assert call(A, B, 10, W, backend)[0].shape == (0,)


@pytest.mark.parametrize("seed", [0, 1])
def test_integer_scores_exact_ties(backend, dtype, index_dtype, seed):
    """Small integer entries: every score is exact, so the tie order is checked pair for pair."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-2, 3, (13, 4)).astype(dtype)
    B = rng.integers(-2, 3, (11, 4)).astype(dtype)
    B[3] = B[7]
    W = CSRMatrix.random(11, 13, 0.3, random_state=seed, dtype=dtype, index_dtype=index_dtype)
    S, br, bc = brute(A, B, W.toarray())
    for k in (1, 5, 17, 40, 200):
        for block_bytes in (1, 13 * dtype.itemsize * 3, 1 << 20):
            rows, cols, scores = call(A, B, k, W, backend, block_bytes=block_bytes)
            m = min(k, br.shape[0])
            np.testing.assert_array_equal(rows, br[:m])
            np.testing.assert_array_equal(cols, bc[:m])
            np.testing.assert_array_equal(scores, S[br[:m], bc[:m]].astype(dtype))


@pytest.mark.parametrize("n_out,n_in,S", [(1, 1, 1), (7, 5, 1), (30, 20, 8), (13, 60, 25),
                                          (64, 3, 4), (3, 64, 2)])
@pytest.mark.parametrize("density", [0.0, 0.2, 0.7])
def test_random_vs_dense_oracle(backend, dtype, index_dtype, n_out, n_in, S, density):
    A = random_dense(n_in, S, dtype=dtype, seed=n_in)
    B = random_dense(n_out, S, dtype=dtype, seed=n_out + 7) * dtype.type(1e-3)  # gradient-sized
    A[::7] = 0   # silent inputs
    B[::5] = 0   # outputs with no gradient (dead ReLUs)
    W = CSRMatrix.random(n_out, n_in, density, random_state=S, dtype=dtype,
                         index_dtype=index_dtype)
    saved = (A.copy(), B.copy(), W.indices.copy(), W.indptr.copy())
    absent = n_out * n_in - W.nnz
    for k in sorted({1, 10, absent // 2, absent, absent + 5}):
        assert_topk(call(A, B, k, W, backend), A, B, k, W)
    for before, after in zip(saved, (A, B, W.indices, W.indptr)):
        np.testing.assert_array_equal(before, after)


def test_equals_topk_cosine_on_normalised_rows(backend, dtype):
    A = random_dense(40, 9, dtype=dtype, seed=21)
    B = random_dense(33, 9, dtype=dtype, seed=22)
    W = CSRMatrix.random(33, 40, 0.1, random_state=5, dtype=dtype)
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
    got = call(An.astype(dtype), Bn.astype(dtype), 60, W, backend)
    ref = [to_host(x) for x in topk_cosine(to_device(A, backend), to_device(B, backend), 60,
                                           exclude=csr_to_device(W, backend), backend=backend)]
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=4 * (rtol + atol))


def test_bad_inputs():
    A, B = np.ones((4, 3), F32), np.ones((3, 3), F32)
    W = CSRMatrix.random(3, 4, 0.5, random_state=0)
    topk_abs_product(A, B, 2, exclude=W)  # valid
    with pytest.raises(ValueError, match="k must be >= 0"):
        topk_abs_product(A, B, -1, exclude=W)
    with pytest.raises(ValueError, match="exclude must have shape"):
        topk_abs_product(A, np.ones((4, 3), F32), 2, exclude=W)
    with pytest.raises(ValueError, match="same number of samples"):
        topk_abs_product(A, np.ones((3, 2), F32), 2, exclude=W)
    with pytest.raises(ValueError, match="NaN or Inf"):
        topk_abs_product(A, np.full((3, 3), np.nan, F32), 2)
    with pytest.raises(ValueError, match="dtype"):
        topk_abs_product(A, np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        topk_abs_product(np.ones((3, 4), F32).T, B, 2)
    with pytest.raises(ValueError, match="overflow"):  # Inf/NaN scores would have no order
        topk_abs_product(np.full((4, 3), 1e20, F32), np.full((3, 3), 1e20, F32), 2)
    big = np.full((4, 3), 1e15, F32)  # the largest products still fit float32: accepted
    assert topk_abs_product(big, np.full((3, 3), 1e15, F32), 2)[0].shape == (2,)


def test_memory_bounded_on_a_large_layer(backend):
    """20,000 x 20,000 (dense float32 scores: 1.6 GB): the peak stays far below that."""
    n, S, k = 20_000, 8, 400
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, S)).astype(np.float32)
    B = (rng.standard_normal((n, S)) * 1e-3).astype(np.float32)
    W = CSRMatrix.random(n, n, nnz=60_000, random_state=1)
    call(A[:50], B[:40], 5, None, backend)  # warm-up (JIT compile) outside the measurement
    A_d, B_d, W_d = to_device(A, backend), to_device(B, backend), csr_to_device(W, backend)
    (rows, cols, scores), elapsed = run_within_memory(
        lambda: topk_abs_product(A_d, B_d, k, exclude=W_d, backend=backend),
        traced_bytes=256 * 2**20, resident_bytes=(None if backend == "cuda" else 512 * 2**20))
    rows, cols, scores = to_host(rows), to_host(cols), to_host(scores)
    assert rows.shape == (k,) and np.all(np.diff(scores) <= 0)
    keys = rows * n + cols
    assert np.unique(keys).shape == (k,)
    assert not np.any(np.isin(keys, W.row_indices().astype(np.int64) * n + W.indices))
    dense_w = W.to_scipy()
    for r in rng.choice(n, 20, replace=False):  # no absent pair of these rows beats the k-th
        row = np.abs(A.astype(np.float64) @ B[r].astype(np.float64))
        row[dense_w[r].indices] = -1
        row[cols[rows == r]] = -1
        assert row.max() <= scores[-1] * (1 + 1e-5)
    assert elapsed < 120, f"took {elapsed:.1f} s"
