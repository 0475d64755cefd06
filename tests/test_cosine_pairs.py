"""cosine_pairs (|cos(A[rows[k]], B[cols[k]])|) on every backend against a float64 oracle."""

import numpy as np
import pytest

from conftest import to_device
from ctre_sparse import cosine_pairs
from ctre_sparse.testing import random_dense, tolerance


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def oracle(A, B, rows, cols):
    A, B = A.astype(np.float64), B.astype(np.float64)
    out = np.zeros(len(rows))
    for i, (r, c) in enumerate(zip(rows, cols)):
        den = np.linalg.norm(A[r]) * np.linalg.norm(B[c])
        out[i] = abs(A[r] @ B[c]) / den if den > 0 else 0.0
    return out


def assert_cos_close(out, A, B, rows, cols):
    out = _np(out)
    assert out.dtype == A.dtype and out.shape == (len(rows),)
    rtol, atol = tolerance(A.dtype)
    # cosines lie in [0, 1]; rounding grows with the vector length
    np.testing.assert_allclose(out, oracle(A, B, rows, cols), rtol=rtol,
                               atol=atol * max(1, A.shape[1] / 8))


# vectors whose normalised entries are 0, +-0.5 or +-1: every score is exact in any order
HAND_A = [[1, 1, 1, 1], [2, 0, 0, 0], [0, 0, 0, 0], [-1, 1, -1, 1]]
HAND_B = [[1, 1, 1, -1], [1, -1, 1, -1], [0, -2, 0, 0]]
HAND_ROWS = [0, 0, 0, 1, 1, 1, 2, 3]
HAND_COLS = [0, 1, 2, 0, 1, 2, 0, 1]
# 2/4, 0/4, |-2|/4, 2/4, 2/4, 0/4, zero vector -> 0, |-4|/4
HAND_EXPECTED = [0.5, 0, 0.5, 0.5, 0.5, 0, 0, 1]


def _hand(dtype, index_dtype, backend):
    return (to_device(np.array(HAND_A, dtype=dtype), backend),
            to_device(np.array(HAND_B, dtype=dtype), backend),
            to_device(np.array(HAND_ROWS, dtype=index_dtype), backend),
            to_device(np.array(HAND_COLS, dtype=index_dtype), backend))


def test_hand_case_exact(backend, dtype, index_dtype):
    out = _np(cosine_pairs(*_hand(dtype, index_dtype, backend), backend=backend))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.array(HAND_EXPECTED, dtype=dtype))


def test_out_is_honoured(backend, dtype, index_dtype):
    out = to_device(np.full(len(HAND_ROWS), np.nan, dtype=dtype), backend)
    res = cosine_pairs(*_hand(dtype, index_dtype, backend), out=out, backend=backend)
    assert res is out
    np.testing.assert_array_equal(_np(out), HAND_EXPECTED)


def test_sign_and_scale_invariance(backend, dtype):
    A = random_dense(6, 9, dtype=dtype, seed=1)
    B = np.concatenate([A * dtype.type(3.0), -A * dtype.type(0.25)])
    rows = np.concatenate([np.arange(6), np.arange(6)])
    cols = np.arange(12)
    out = _np(cosine_pairs(to_device(A, backend), to_device(B, backend), to_device(rows, backend),
                           to_device(cols, backend), backend=backend))
    np.testing.assert_allclose(out, 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)


@pytest.mark.parametrize("n_a,n_b,S,k", [(1, 1, 1, 1), (10, 7, 3, 20), (40, 50, 16, 300),
                                         (5, 90, 64, 100), (30, 30, 200, 50)])
def test_random(backend, dtype, index_dtype, n_a, n_b, S, k):
    rng = np.random.default_rng(n_a * 1000 + S)
    A = random_dense(n_a, S, dtype=dtype, seed=n_a)
    B = random_dense(n_b, S, dtype=dtype, seed=n_b + 1)
    A[rng.random(n_a) < 0.1] = 0  # some all-zero vectors
    rows = rng.integers(0, n_a, k).astype(index_dtype)  # repeats allowed
    cols = rng.integers(0, n_b, k).astype(index_dtype)
    saved = (A.copy(), B.copy(), rows.copy(), cols.copy())
    out = cosine_pairs(to_device(A, backend), to_device(B, backend), to_device(rows, backend),
                       to_device(cols, backend), backend=backend)
    assert_cos_close(out, A, B, rows, cols)
    for before, after in zip(saved, (A, B, rows, cols)):
        np.testing.assert_array_equal(before, after)


def test_no_pairs(backend, dtype):
    A = random_dense(4, 3, dtype=dtype)
    empty = to_device(np.zeros(0, dtype=np.int64), backend)
    out = _np(cosine_pairs(to_device(A, backend), to_device(A, backend), empty, empty,
                           backend=backend))
    assert out.shape == (0,) and out.dtype == dtype


def test_single_sample_is_zero_or_one(backend, dtype):
    A = np.array([[2.0], [-3.0], [0.0]], dtype=dtype)
    B = np.array([[-0.5], [0.0]], dtype=dtype)
    rows, cols = np.array([0, 1, 2, 0]), np.array([0, 0, 0, 1])
    out = _np(cosine_pairs(to_device(A, backend), to_device(B, backend), to_device(rows, backend),
                           to_device(cols, backend), backend=backend))
    np.testing.assert_array_equal(out, [1, 1, 0, 0])


def test_zero_samples(backend, dtype):
    A = np.zeros((3, 0), dtype=dtype)
    rows = np.array([0, 2])
    out = _np(cosine_pairs(to_device(A, backend), to_device(A, backend), to_device(rows, backend),
                           to_device(rows, backend), backend=backend))
    np.testing.assert_array_equal(out, [0, 0])


def test_mixed_scales(backend, dtype):
    A = np.array([[1.0, 1.0]], dtype=dtype) * dtype.type(1e3)
    B = np.array([[1.0, 0.0]], dtype=dtype) * dtype.type(1e-3)
    out = _np(cosine_pairs(to_device(A, backend), to_device(B, backend),
                           to_device(np.array([0]), backend), to_device(np.array([0]), backend),
                           backend=backend))
    np.testing.assert_allclose(out, [np.sqrt(0.5)], rtol=tolerance(dtype)[0])
