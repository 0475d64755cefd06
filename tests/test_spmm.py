"""spmm (Y = W @ X) on every backend against a dense float64 oracle."""

import numpy as np
import pytest

from conftest import csr_to_device, to_device
from ctre_sparse import CSRMatrix, spmm
from ctre_sparse.testing import awkward_csr, random_csr, random_dense, tolerance

AWKWARD = ["empty_rows", "nnz0", "one_col", "one_row", "full_row", "zero_shape"]


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def assert_spmm_close(Y, W, X):
    """|Y - W @ X| <= rtol * (|W| @ |X|) + atol: the rounding bound of a sum, keyed by dtype."""
    Y = _np(Y)
    assert Y.dtype == W.dtype and Y.shape == (W.n_out, X.shape[1])
    Wd, Xd = W.toarray().astype(np.float64), X.astype(np.float64)
    rtol, atol = tolerance(W.dtype)
    err = np.abs(Y - Wd @ Xd)
    bound = rtol * (np.abs(Wd) @ np.abs(Xd)) + atol
    assert np.all(err <= bound), f"max error {err.max()} (bound {bound.min()})"


def _hand(dtype, index_dtype):
    # W = [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]]
    return CSRMatrix(np.array([1, 2, 3, 4], dtype=dtype), np.array([0, 2, 1, 3], dtype=index_dtype),
                     np.array([0, 2, 2, 4], dtype=index_dtype), (3, 4), full_check=True)


def test_hand_case_exact(backend, dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    X = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], dtype=dtype)
    # row 0: 1*[1,2] + 2*[5,6]; row 1 empty; row 2: 3*[3,4] + 4*[7,8]
    expected = np.array([[11, 14], [0, 0], [37, 44]], dtype=dtype)
    Y = spmm(csr_to_device(W, backend), to_device(X, backend), backend=backend)
    Y = _np(Y)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, expected)


def test_out_is_honoured(backend, dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    X = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], dtype=dtype)
    out = to_device(np.full((3, 2), 7.0, dtype=dtype), backend)  # garbage to overwrite
    Y = spmm(csr_to_device(W, backend), to_device(X, backend), out=out, backend=backend)
    assert Y is out
    np.testing.assert_array_equal(_np(out), [[11, 14], [0, 0], [37, 44]])


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (17, 33), (64, 40), (3, 150)])
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
def test_random(backend, dtype, index_dtype, shape, density):
    for seed, batch in enumerate((1, 8, 37)):
        W = random_csr(*shape, density, dtype=dtype, index_dtype=index_dtype, seed=seed)
        X = random_dense(shape[1], batch, dtype=dtype, seed=100 + seed)
        saved = (W.data.copy(), W.indices.copy(), W.indptr.copy(), X.copy())
        Y = spmm(csr_to_device(W, backend), to_device(X, backend), backend=backend)
        assert_spmm_close(Y, W, X)
        for before, after in zip(saved, (W.data, W.indices, W.indptr, X)):
            np.testing.assert_array_equal(before, after)  # inputs untouched


@pytest.mark.parametrize("kind", AWKWARD)
@pytest.mark.parametrize("batch", [0, 1, 5])
def test_awkward(backend, dtype, index_dtype, kind, batch):
    W = awkward_csr(kind, dtype=dtype, index_dtype=index_dtype, seed=3)
    X = random_dense(W.n_in, batch, dtype=dtype, seed=4)
    out = to_device(np.full((W.n_out, batch), np.nan, dtype=dtype), backend)
    Y = spmm(csr_to_device(W, backend), to_device(X, backend), out=out, backend=backend)
    assert Y is out
    assert_spmm_close(Y, W, X)


def test_scipy_input(backend, dtype):
    if backend == "cuda":
        pytest.skip("scipy.sparse input is host memory; the cuda backend takes cupyx/CuPy")
    W = random_csr(20, 30, 0.2, dtype=dtype, seed=5)
    X = random_dense(30, 6, dtype=dtype, seed=6)
    assert_spmm_close(spmm(W.to_scipy(), X, backend=backend), W, X)


def test_wide_and_long_batches(backend, dtype, index_dtype):
    W = random_csr(40, 60, 0.1, dtype=dtype, index_dtype=index_dtype, seed=7)
    for batch in (2, 3, 16, 31, 65, 257):  # odd sizes around vector widths
        X = random_dense(60, batch, dtype=dtype, seed=batch)
        assert_spmm_close(spmm(csr_to_device(W, backend), to_device(X, backend),
                               backend=backend), W, X)


def test_auto_backend_matches_reference(dtype):
    W = random_csr(30, 20, 0.2, dtype=dtype, seed=8)
    X = random_dense(20, 9, dtype=dtype, seed=9)
    assert_spmm_close(spmm(W, X), W, X)
