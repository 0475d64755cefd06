"""spmm_t (W.T @ G, through the cached transpose) on every backend against a dense oracle."""

import numpy as np
import pytest

from conftest import csr_to_device, to_device
from ctre_sparse import CSRMatrix, insert, prune_magnitude, spmm_t
from ctre_sparse.testing import awkward_csr, random_csr, random_dense, tolerance

AWKWARD = ["empty_rows", "nnz0", "one_col", "one_row", "full_row", "zero_shape"]


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def assert_spmm_t_close(Y, W, G):
    """|Y - W.T @ G| <= rtol * (|W.T| @ |G|) + atol."""
    Y = _np(Y)
    assert Y.dtype == W.dtype and Y.shape == (W.n_in, G.shape[1])
    Wd, Gd = W.toarray().astype(np.float64), G.astype(np.float64)
    rtol, atol = tolerance(W.dtype)
    err = np.abs(Y - Wd.T @ Gd)
    bound = rtol * (np.abs(Wd.T) @ np.abs(Gd)) + atol
    assert np.all(err <= bound), f"max error {err.max()}"


def _hand(dtype, index_dtype):
    # W = [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]]
    return CSRMatrix(np.array([1, 2, 3, 4], dtype=dtype), np.array([0, 2, 1, 3], dtype=index_dtype),
                     np.array([0, 2, 2, 4], dtype=index_dtype), (3, 4), full_check=True)


HAND_G = [[1, 2], [100, 100], [3, -1]]
# W.T @ G: row 0 = 1*[1,2]; row 1 = 3*[3,-1]; row 2 = 2*[1,2]; row 3 = 4*[3,-1]
HAND_EXPECTED = [[1, 2], [9, -3], [2, 4], [12, -4]]


def test_hand_case_exact(backend, dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    Y = _np(spmm_t(csr_to_device(W, backend), to_device(np.array(HAND_G, dtype=dtype), backend),
                   backend=backend))
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, np.array(HAND_EXPECTED, dtype=dtype))


def test_out_is_honoured(backend, dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    out = to_device(np.full((4, 2), 7.0, dtype=dtype), backend)
    Y = spmm_t(csr_to_device(W, backend), to_device(np.array(HAND_G, dtype=dtype), backend),
               out=out, backend=backend)
    assert Y is out
    np.testing.assert_array_equal(_np(out), HAND_EXPECTED)


def test_empty_columns_are_zeroed(backend, dtype, index_dtype):
    # columns 1 and 3 of W are empty: their output rows must be overwritten with zeros
    W = CSRMatrix(np.array([2, 5], dtype=dtype), np.array([0, 2], dtype=index_dtype),
                  np.array([0, 1, 2], dtype=index_dtype), (2, 4), full_check=True)
    G = np.array([[1, 1, 1], [2, 0, -2]], dtype=dtype)
    out = to_device(np.full((4, 3), np.nan, dtype=dtype), backend)
    spmm_t(csr_to_device(W, backend), to_device(G, backend), out=out, backend=backend)
    np.testing.assert_array_equal(_np(out), [[2, 2, 2], [0, 0, 0], [10, 0, -10], [0, 0, 0]])


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (17, 33), (64, 40), (150, 3)])
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
def test_random(backend, dtype, index_dtype, shape, density):
    for seed, batch in enumerate((1, 8, 37)):
        W = random_csr(*shape, density, dtype=dtype, index_dtype=index_dtype, seed=seed)
        G = random_dense(shape[0], batch, dtype=dtype, seed=200 + seed)
        saved = (W.data.copy(), W.indices.copy(), W.indptr.copy(), G.copy())
        Y = spmm_t(csr_to_device(W, backend), to_device(G, backend), backend=backend)
        assert_spmm_t_close(Y, W, G)
        for before, after in zip(saved, (W.data, W.indices, W.indptr, G)):
            np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("kind", AWKWARD)
@pytest.mark.parametrize("batch", [0, 1, 5])
def test_awkward(backend, dtype, index_dtype, kind, batch):
    W = awkward_csr(kind, dtype=dtype, index_dtype=index_dtype, seed=3)
    G = random_dense(W.n_out, batch, dtype=dtype, seed=4)
    out = to_device(np.full((W.n_in, batch), np.nan, dtype=dtype), backend)
    Y = spmm_t(csr_to_device(W, backend), to_device(G, backend), out=out, backend=backend)
    assert Y is out
    assert_spmm_t_close(Y, W, G)


def test_scipy_input(backend, dtype):
    if backend == "cuda":
        pytest.skip("scipy.sparse input is host memory; the cuda backend takes cupyx/CuPy")
    W = random_csr(20, 30, 0.2, dtype=dtype, seed=5)
    G = random_dense(20, 6, dtype=dtype, seed=6)
    assert_spmm_t_close(spmm_t(W.to_scipy(), G, backend=backend), W, G)


def test_values_updated_in_place_and_topology_edits(backend, dtype, index_dtype):
    """The cached transpose follows in-place value updates; edited matrices get a fresh one."""
    W = random_csr(30, 25, 0.2, dtype=dtype, index_dtype=index_dtype, seed=11)
    G = random_dense(30, 4, dtype=dtype, seed=12)
    Wd = csr_to_device(W, backend)
    assert_spmm_t_close(spmm_t(Wd, to_device(G, backend), backend=backend), W, G)
    W.data *= dtype.type(-0.5)  # an SGD-style update of the values only
    Wd = csr_to_device(W, backend)
    assert_spmm_t_close(spmm_t(Wd, to_device(G, backend), backend=backend), W, G)
    P = prune_magnitude(W, 0.5, backend="reference").matrix
    assert_spmm_t_close(spmm_t(csr_to_device(P, backend), to_device(G, backend),
                               backend=backend), P, G)
    r, c = np.argwhere(P.toarray() == 0)[:5].T
    Q = insert(P, r, c, np.arange(1.0, 6.0), backend="reference").matrix
    assert_spmm_t_close(spmm_t(csr_to_device(Q, backend), to_device(G, backend),
                               backend=backend), Q, G)
