"""sddmm ((G @ X.T) at W's pattern) on every backend against a dense oracle."""

import numpy as np
import pytest

from conftest import csr_to_device, to_device
from ctre_sparse import CSRMatrix, sddmm
from ctre_sparse.testing import awkward_csr, random_csr, random_dense, tolerance

AWKWARD = ["empty_rows", "nnz0", "one_col", "one_row", "full_row", "zero_shape"]


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def assert_sddmm_close(out, W, G, X):
    """|out - (G @ X.T)[pattern]| <= rtol * (|G| @ |X|.T)[pattern] + atol."""
    out = _np(out)
    assert out.dtype == W.dtype and out.shape == (W.nnz,)
    rows, cols = W.row_indices().astype(np.int64), W.indices.astype(np.int64)
    Gd, Xd = G.astype(np.float64), X.astype(np.float64)
    expected = np.einsum("ij,ij->i", Gd[rows], Xd[cols])
    scale = np.einsum("ij,ij->i", np.abs(Gd[rows]), np.abs(Xd[cols]))
    rtol, atol = tolerance(W.dtype)
    err = np.abs(out - expected)
    assert np.all(err <= rtol * scale + atol), f"max error {err.max() if err.size else 0}"


def _hand(dtype, index_dtype):
    # pattern of [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]]
    return CSRMatrix(np.array([1, 2, 3, 4], dtype=dtype), np.array([0, 2, 1, 3], dtype=index_dtype),
                     np.array([0, 2, 2, 4], dtype=index_dtype), (3, 4), full_check=True)


HAND_G = [[1, 2], [3, 4], [5, 6]]
HAND_X = [[1, 0], [0, 1], [2, 2], [1, -1]]
# (0,0): [1,2].[1,0] = 1; (0,2): [1,2].[2,2] = 6; (2,1): [5,6].[0,1] = 6; (2,3): [5,6].[1,-1] = -1
HAND_EXPECTED = [1, 6, 6, -1]


def test_hand_case_exact(backend, dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    out = _np(sddmm(csr_to_device(W, backend), to_device(np.array(HAND_G, dtype=dtype), backend),
                    to_device(np.array(HAND_X, dtype=dtype), backend), backend=backend))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.array(HAND_EXPECTED, dtype=dtype))


def test_out_is_honoured(backend, dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    out = to_device(np.full(4, 7.0, dtype=dtype), backend)
    res = sddmm(csr_to_device(W, backend), to_device(np.array(HAND_G, dtype=dtype), backend),
                to_device(np.array(HAND_X, dtype=dtype), backend), out=out, backend=backend)
    assert res is out
    np.testing.assert_array_equal(_np(out), HAND_EXPECTED)


def test_values_of_w_are_ignored(backend, dtype):
    W = _hand(dtype, np.int32)
    W2 = CSRMatrix(np.array([-9, 0.5, 1e3, 0], dtype=dtype), W.indices, W.indptr, W.shape)
    G, X = np.array(HAND_G, dtype=dtype), np.array(HAND_X, dtype=dtype)
    np.testing.assert_array_equal(
        _np(sddmm(csr_to_device(W2, backend), to_device(G, backend), to_device(X, backend),
                  backend=backend)), HAND_EXPECTED)


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (17, 33), (64, 40), (3, 150)])
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
def test_random(backend, dtype, index_dtype, shape, density):
    for seed, batch in enumerate((1, 8, 37)):
        W = random_csr(*shape, density, dtype=dtype, index_dtype=index_dtype, seed=seed)
        G = random_dense(shape[0], batch, dtype=dtype, seed=300 + seed)
        X = random_dense(shape[1], batch, dtype=dtype, seed=400 + seed)
        saved = (W.data.copy(), W.indices.copy(), W.indptr.copy(), G.copy(), X.copy())
        out = sddmm(csr_to_device(W, backend), to_device(G, backend), to_device(X, backend),
                    backend=backend)
        assert_sddmm_close(out, W, G, X)
        for before, after in zip(saved, (W.data, W.indices, W.indptr, G, X)):
            np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("kind", AWKWARD)
@pytest.mark.parametrize("batch", [0, 1, 5])
def test_awkward(backend, dtype, index_dtype, kind, batch):
    W = awkward_csr(kind, dtype=dtype, index_dtype=index_dtype, seed=3)
    G = random_dense(W.n_out, batch, dtype=dtype, seed=4)
    X = random_dense(W.n_in, batch, dtype=dtype, seed=5)
    out = to_device(np.full(W.nnz, np.nan, dtype=dtype), backend)  # batch 0 must give zeros
    res = sddmm(csr_to_device(W, backend), to_device(G, backend), to_device(X, backend),
                out=out, backend=backend)
    assert res is out
    assert_sddmm_close(out, W, G, X)


def test_scipy_input(backend, dtype):
    if backend == "cuda":
        pytest.skip("scipy.sparse input is host memory; the cuda backend takes cupyx/CuPy")
    W = random_csr(20, 30, 0.2, dtype=dtype, seed=5)
    G = random_dense(20, 6, dtype=dtype, seed=6)
    X = random_dense(30, 6, dtype=dtype, seed=7)
    assert_sddmm_close(sddmm(W.to_scipy(), G, X, backend=backend), W, G, X)


def test_long_batches(backend, dtype, index_dtype):
    W = random_csr(30, 20, 0.2, dtype=dtype, index_dtype=index_dtype, seed=8)
    for batch in (2, 3, 16, 31, 65, 257):
        G = random_dense(30, batch, dtype=dtype, seed=batch)
        X = random_dense(20, batch, dtype=dtype, seed=batch + 1)
        assert_sddmm_close(sddmm(csr_to_device(W, backend), to_device(G, backend),
                                 to_device(X, backend), backend=backend), W, G, X)
