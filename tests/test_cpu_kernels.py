"""The compiled CPU glue kernels against the NumPy formulas they replace."""

import numpy as np
import pytest

from ctre_sparse.nn import _cpu_kernels as K
from ctre_sparse.nn.activations import get_activation

pytestmark = pytest.mark.skipif(not K.AVAILABLE, reason="numba missing")

SHAPES = [(1, 1), (7, 1), (1, 13), (37, 129), (300, 5)]
SLOPES = [0.0, 0.01, -0.6, 0.6]


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal(shape).astype(dtype)
    Y.flat[:: 3] = 0.0  # exact zeros: the Z > 0 boundary
    b = rng.standard_normal(shape[0]).astype(dtype)
    return Y, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("slope", SLOPES)
def test_bias_left_relu_forward(dtype, shape, slope):
    Y, b = _data(shape, dtype)
    Z_ref = Y + b[:, None]
    A_ref = np.maximum(Z_ref * dtype(slope), Z_ref)
    Z, A = Y.copy(), np.empty_like(Y)
    K.bias_left_relu_forward(Z, b, dtype(slope), Z, A)  # in place, as the model calls it
    np.testing.assert_array_equal(Z, Z_ref)
    np.testing.assert_array_equal(A, A_ref)
    assert A.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("slope", SLOPES)
def test_left_relu_backward(dtype, shape, slope):
    Z, _ = _data(shape, dtype, seed=1)
    dA, _ = _data(shape, dtype, seed=2)
    if slope == 0.0:
        ref = dA * (Z > 0)
    else:
        factor = (Z > 0).astype(dtype) * dtype(1.0 - slope) + dtype(slope)
        ref = dA * factor
    got = dA.copy()
    K.left_relu_backward(Z, got, dtype(slope), dtype(1.0 - slope), slope == 0.0)
    np.testing.assert_array_equal(got, ref)
    assert got.dtype == dtype


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "alternated_left_relu"])
def test_kernels_match_activation_classes(name):
    act = get_activation(name, 0)
    Y, b = _data((11, 9), np.float32, seed=3)
    Z = Y + b[:, None]
    A_ref = act.forward(Z.copy())
    dA, _ = _data((11, 9), np.float32, seed=4)
    dZ_ref = act.backward(Z, A_ref, dA.copy())
    Zk, A = Y.copy(), np.empty_like(Y)
    K.bias_left_relu_forward(Zk, b, np.float32(act.slope), Zk, A)
    np.testing.assert_array_equal(A, A_ref)
    got = dA.copy()
    K.left_relu_backward(Z, got, np.float32(act.slope), np.float32(1.0 - act.slope),
                         act.slope == 0.0)
    np.testing.assert_array_equal(got, dZ_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_feat,n,m", [(1, 1, 1), (5, 9, 1), (784, 300, 129), (65, 70, 17)])
def test_gather_columns(dtype, n_feat, n, m):
    rng = np.random.default_rng(5)
    Xs = rng.standard_normal((n, n_feat)).astype(dtype)  # sample-major
    X = np.ascontiguousarray(Xs.T)
    idx = rng.choice(n, size=m, replace=m > n)
    out = np.full((n_feat, m), np.nan, dtype=dtype)
    K.gather_columns(X, idx, out)
    np.testing.assert_array_equal(out, X[:, idx])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 1000, 3 * (1 << 15) + 7])
@pytest.mark.parametrize("mu,nesterov", [(0.9, True), (0.9, False), (0.0, False), (0.0, True)])
def test_sgd_update_matches_numpy_whatever_the_thread_count(dtype, n, mu, nesterov):
    import numba

    rng = np.random.default_rng(6)
    w, g, v = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    lr, mu_, decay = dtype(0.01), dtype(mu), dtype(1e-4)
    gi = g + decay * w  # the formula, in the array dtype
    vi = mu_ * v + gi
    step = lr * (gi + mu_ * vi if nesterov else vi)
    want = (w - step, step, vi if mu else v.copy())
    runs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        got = [a.copy() for a in (w, g, v)]
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            K.sgd_update(*got, lr, mu_, decay, nesterov)
        finally:
            numba.set_num_threads(previous)
        runs.append(got)
    for got in runs:
        for g_, w_ in zip(got, want):
            np.testing.assert_array_equal(g_, w_)
