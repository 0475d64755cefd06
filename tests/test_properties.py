"""Property-based tests (hypothesis): spmm, spmm_t, sddmm against the dense oracle."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ALL_BACKENDS, csr_to_device, to_device
from ctre_sparse import CSRMatrix, prune_magnitude, sddmm, spmm, spmm_t
from ctre_sparse.testing import tolerance

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


@st.composite
def problems(draw):
    """A random W (any shape up to 20 x 20, any density), dtypes, batch and a seed."""
    n_out = draw(st.integers(0, 20))
    n_in = draw(st.integers(0, 20))
    density = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]) | st.floats(0.0, 1.0))
    batch = draw(st.integers(0, 9))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    index_dtype = np.dtype(draw(st.sampled_from([np.int32, np.int64])))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    W = CSRMatrix.random(n_out, n_in, density, random_state=rng, dtype=dtype,
                         index_dtype=index_dtype, values="normal")
    scale = draw(st.sampled_from([1.0, 1e-3, 1e3]))
    X = (rng.standard_normal((n_in, batch)) * scale).astype(dtype)
    G = rng.standard_normal((n_out, batch)).astype(dtype)
    return W, X, G


def _within(actual, expected, bound, dtype):
    rtol, atol = tolerance(dtype)
    err = np.abs(_np(actual) - expected)
    assert np.all(err <= rtol * bound + atol), f"max error {err.max() if err.size else 0}"


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@SETTINGS
@given(problem=problems())
def test_spmm_matches_dense(backend_name, problem):
    W, X, _ = problem
    Wd, Xd = W.toarray().astype(np.float64), X.astype(np.float64)
    Y = spmm(csr_to_device(W, backend_name), to_device(X, backend_name), backend=backend_name)
    assert Y.shape == (W.n_out, X.shape[1]) and Y.dtype == W.dtype
    _within(Y, Wd @ Xd, np.abs(Wd) @ np.abs(Xd), W.dtype)


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@SETTINGS
@given(problem=problems())
def test_spmm_t_matches_dense(backend_name, problem):
    W, _, G = problem
    Wd, Gd = W.toarray().astype(np.float64), G.astype(np.float64)
    Y = spmm_t(csr_to_device(W, backend_name), to_device(G, backend_name), backend=backend_name)
    assert Y.shape == (W.n_in, G.shape[1]) and Y.dtype == W.dtype
    _within(Y, Wd.T @ Gd, np.abs(Wd.T) @ np.abs(Gd), W.dtype)


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@SETTINGS
@given(problem=problems())
def test_sddmm_matches_dense(backend_name, problem):
    W, X, G = problem
    rows, cols = W.row_indices(), W.indices
    Gd, Xd = G.astype(np.float64), X.astype(np.float64)
    out = sddmm(csr_to_device(W, backend_name), to_device(G, backend_name),
                to_device(X, backend_name), backend=backend_name)
    assert out.shape == (W.nnz,) and out.dtype == W.dtype
    _within(out, (Gd @ Xd.T)[rows, cols], (np.abs(Gd) @ np.abs(Xd).T)[rows, cols], W.dtype)


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@SETTINGS
@given(problem=problems())
def test_adjoint_identity(backend_name, problem):
    """<W @ X, G> == <X, W.T @ G> == <sddmm(G, X), W.data>: the three kernels agree."""
    W, X, G = problem
    if X.shape[1] == 0 or W.n_out == 0 or W.n_in == 0:
        return
    Wd = csr_to_device(W, backend_name)
    Xd, Gd = to_device(X, backend_name), to_device(G, backend_name)
    a = float(np.sum(_np(spmm(Wd, Xd, backend=backend_name)).astype(np.float64) * G))
    b = float(np.sum(_np(spmm_t(Wd, Gd, backend=backend_name)).astype(np.float64) * X))
    c = float(np.sum(_np(sddmm(Wd, Gd, Xd, backend=backend_name)).astype(np.float64) * W.data))
    scale = float(np.abs(W.toarray()).astype(np.float64).sum() *
                  np.abs(X).max() * np.abs(G).max() * X.shape[1]) + 1.0
    rtol, _ = tolerance(W.dtype)
    assert abs(a - b) <= 4 * rtol * scale and abs(a - c) <= 4 * rtol * scale


@pytest.mark.parametrize("backend_name", [b for b in ALL_BACKENDS if b != "cuda"])
@SETTINGS
@given(problem=problems(), fraction=st.floats(0.0, 1.0))
def test_prune_matches_reference(backend_name, problem, fraction):
    W, _, _ = problem
    got = prune_magnitude(W, fraction, backend=backend_name)
    ref = prune_magnitude(W, fraction, backend="reference")
    np.testing.assert_array_equal(got.kept, ref.kept)
    assert got.matrix.nnz == W.nnz - int(np.floor(fraction * W.nnz))
