"""The training-step ops on every backend against the reference (and hand-worked values).

The CPU backends compute each element with the reference's arithmetic, so they
must agree bit for bit; the GPU (where present) within float tolerance.
"""

import numpy as np
import pytest

from conftest import CPU_BACKENDS, to_device, to_host
from ctre_sparse import activation_backward, bias_activation, gather_columns, sgd_update
from ctre_sparse.testing import tolerance

SHAPES = [(1, 1), (7, 1), (1, 13), (37, 129), (300, 5), (0, 4), (5, 0)]
SLOPES = [0.0, 0.01, -0.6, 0.6, 1.0, -1.0]


def _same(got, want, backend, dtype):
    got = to_host(got)
    assert got.dtype == want.dtype and got.shape == want.shape
    if backend == "cuda":  # NVRTC may contract a multiply-add into an FMA
        rtol, atol = tolerance(dtype)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(got, want)


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal(shape).astype(dtype)
    Y.flat[::3] = 0.0  # exact zeros: the z > 0 boundary
    if Y.size > 4:
        Y.flat[1] = -0.0
    return Y


# ------------------------------------------------------------------ gather_columns
def test_gather_hand_case(backend, dtype):
    X = np.arange(12, dtype=dtype).reshape(3, 4)
    for Xo in (X, np.asfortranarray(X)):
        got = gather_columns(to_device(Xo, backend), to_device(np.array([3, 0, 3]), backend),
                             backend=backend)
        np.testing.assert_array_equal(to_host(got), [[3, 0, 3], [7, 4, 7], [11, 8, 11]])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n_feat,n,m", [(1, 1, 1), (5, 9, 1), (784, 300, 129), (65, 70, 17),
                                        (3, 40, 0), (0, 5, 3)])
def test_gather_matches_reference(backend, dtype, order, index_dtype, n_feat, n, m):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n_feat, n)).astype(dtype, order=order)
    idx = rng.choice(n, size=m, replace=m > n).astype(index_dtype)
    out = to_device(np.full((n_feat, m), np.nan, dtype=dtype), backend)
    got = gather_columns(to_device(X, backend), to_device(idx, backend), out=out,
                         backend=backend)
    assert got is out
    np.testing.assert_array_equal(to_host(got), X[:, idx])


@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_gather_bad_arguments(backend_name):
    X = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 4\), found values in \[0, 4\]"):
        gather_columns(X, np.array([0, 4]), backend=backend_name)
    with pytest.raises(ValueError, match="idx must be a 1-D integer array"):
        gather_columns(X, np.array([0.0]), backend=backend_name)
    with pytest.raises(ValueError, match="X must be C- or F-contiguous"):
        gather_columns(np.ones((3, 8), np.float32)[:, ::2], np.array([0]), backend=backend_name)
    with pytest.raises(ValueError, match=r"out must have shape \(3, 2\)"):
        gather_columns(X, np.array([0, 1]), out=np.empty((2, 3), np.float32),
                       backend=backend_name)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        gather_columns(X, np.array([0, 1]), out=np.empty((3, 2), np.float32, order="F"),
                       backend=backend_name)


# ------------------------------------------------------------------ bias_activation
def _bias_act_ref(Y, b, slope):
    Z = Y + b[:, None]
    return Z, np.maximum(Z * Y.dtype.type(slope), Z)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("slope", SLOPES)
def test_bias_activation_matches_reference(backend, dtype, shape, slope):
    Y = _data(shape, dtype)
    b = _data((shape[0],), dtype, seed=1)
    Z_ref, A_ref = _bias_act_ref(Y, b, slope)
    Yd = to_device(Y.copy(), backend)
    Z, A = bias_activation(Yd, to_device(b, backend), slope=slope, preactivation=Yd,
                           backend=backend)
    assert Z is Yd                                   # in place, as the model calls it
    _same(Z, Z_ref, backend, dtype)
    _same(A, A_ref, backend, dtype)
    Z2, A2 = bias_activation(to_device(Y, backend), to_device(b, backend), slope=slope,
                             backend=backend)       # fresh outputs, Y untouched
    _same(Z2, Z_ref, backend, dtype)
    _same(A2, A_ref, backend, dtype)


def test_bias_activation_hand_case(backend):
    Y = to_device(np.array([[-2.0, 0.0, 3.0], [1.0, -1.0, -0.5]]), backend)
    b = to_device(np.array([1.0, -1.0]), backend)
    Z, A = bias_activation(Y, b, slope=-0.5, backend=backend)
    np.testing.assert_array_equal(to_host(Z), [[-1.0, 1.0, 4.0], [0.0, -2.0, -1.5]])
    np.testing.assert_array_equal(to_host(A), [[0.5, 1.0, 4.0], [0.0, 1.0, 0.75]])


@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_bias_activation_bad_arguments(backend_name):
    Y = np.ones((3, 4), np.float32)
    b = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"slope must lie in \[-1, 1\]"):
        bias_activation(Y, b, slope=1.5, backend=backend_name)
    with pytest.raises(ValueError, match="b must have one entry per row of Y"):
        bias_activation(Y, np.ones(4, np.float32), backend=backend_name)
    with pytest.raises(ValueError, match=r"b must have dtype float32 \(the dtype of Y\)"):
        bias_activation(Y, np.ones(3), backend=backend_name)
    with pytest.raises(ValueError, match="out must not overlap Y or preactivation"):
        bias_activation(Y, b, out=Y, backend=backend_name)
    with pytest.raises(ValueError, match="Y must be C-contiguous"):
        bias_activation(np.asfortranarray(np.ones((3, 4), np.float32)), b,
                        backend=backend_name)


# ------------------------------------------------------------------ activation_backward
def _backward_ref(Z, G, slope):
    if slope == 0:
        return G * (Z > 0)
    t = G.dtype.type
    return G * ((Z > 0).astype(G.dtype) * t(1.0 - slope) + t(slope))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("slope", SLOPES)
def test_activation_backward_matches_reference(backend, dtype, shape, slope):
    Z = _data(shape, dtype, seed=2)
    G = _data(shape, dtype, seed=3)
    want = _backward_ref(Z, G, slope)
    Gd = to_device(G.copy(), backend)
    got = activation_backward(to_device(Z, backend), Gd, slope=slope, out=Gd, backend=backend)
    assert got is Gd
    _same(got, want, backend, dtype)
    fresh = activation_backward(to_device(Z, backend), to_device(G, backend), slope=slope,
                                backend=backend)
    _same(fresh, want, backend, dtype)


def test_activation_backward_keeps_signed_zero_and_nan(fast_backend):
    Z = np.array([[-1.0, 2.0, -3.0]])
    G = np.array([[-4.0, np.nan, np.nan]])
    got = to_host(activation_backward(to_device(Z, fast_backend), to_device(G, fast_backend),
                                      backend=fast_backend))
    want = _backward_ref(Z, G, 0.0)  # [-0., nan, nan]
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[0, 0]) == np.signbit(want[0, 0])


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "alternated_left_relu"])
def test_ops_match_the_activation_classes(name, backend):
    from ctre_sparse.nn.activations import get_activation

    act = get_activation(name, 0)
    Y = _data((11, 9), np.float32, seed=3)
    b = _data((11,), np.float32, seed=4)
    A_cls = act.forward(Y + b[:, None])
    _, A = bias_activation(to_device(Y, backend), to_device(b, backend), slope=act.slope,
                           backend=backend)
    _same(A, A_cls, backend, np.float32)


# ------------------------------------------------------------------ sgd_update
def _sgd_ref(w, g, v, lr, mu, decay, nesterov):
    t = w.dtype.type
    gi = g + t(decay) * w
    vi = t(mu) * v + gi
    step = t(lr) * (gi + t(mu) * vi if nesterov else vi)
    return w - step, step, (vi if mu else v.copy())


@pytest.mark.parametrize("n", [0, 1, 2, 3, 1000, 3 * (1 << 15) + 7])
@pytest.mark.parametrize("mu,nesterov,decay", [(0.9, True, 1e-4), (0.9, False, 1e-4),
                                               (0.0, False, 0.0), (0.0, True, 1e-2)])
def test_sgd_update_matches_reference(backend, dtype, n, mu, nesterov, decay):
    rng = np.random.default_rng(6)
    w, g, v = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    want = _sgd_ref(w, g, v, 0.01, mu, decay, nesterov)
    got = [to_device(a.copy(), backend) for a in (w, g, v)]
    ret = sgd_update(*got, learning_rate=0.01, momentum=mu, weight_decay=decay,
                     nesterov=nesterov, backend=backend)
    assert ret is got[0]
    for a, b in zip(got, want):
        _same(a, b, backend, dtype)


def test_sgd_update_hand_case(backend):
    w, g, v = (to_device(np.array(x), backend) for x in ([1.0, -2.0], [0.5, 0.0], [1.0, 0.0]))
    sgd_update(w, g, v, learning_rate=0.1, momentum=0.5, weight_decay=0.1, nesterov=True,
               backend=backend)
    # gi = [0.6, -0.2]; vi = [1.1, -0.2]; step = 0.1 * (gi + 0.5 vi) = [0.115, -0.03]
    np.testing.assert_allclose(to_host(v), [1.1, -0.2], rtol=1e-15)
    np.testing.assert_allclose(to_host(g), [0.115, -0.03], rtol=1e-14)
    np.testing.assert_allclose(to_host(w), [0.885, -1.97], rtol=1e-14)


@pytest.mark.skipif("numba" not in CPU_BACKENDS, reason="numba missing")
def test_sgd_update_does_not_depend_on_the_thread_count():
    import numba

    rng = np.random.default_rng(7)
    w, g, v = (rng.standard_normal(3 * (1 << 15) + 7).astype(np.float32) for _ in range(3))
    runs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        got = [a.copy() for a in (w, g, v)]
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            sgd_update(*got, learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
                       nesterov=True, backend="numba")
        finally:
            numba.set_num_threads(previous)
        runs.append(got)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_sgd_update_bad_arguments(backend_name):
    w, g, v = np.ones(4), np.ones(4), np.zeros(4)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        sgd_update(w, g, v, learning_rate=0.0, backend=backend_name)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        sgd_update(w, g, v, learning_rate=0.1, momentum=1.0, backend=backend_name)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        sgd_update(w, g, v, learning_rate=0.1, weight_decay=-1.0, backend=backend_name)
    with pytest.raises(ValueError, match=r"v must have the shape of w \(4,\)"):
        sgd_update(w, g, np.zeros(3), learning_rate=0.1, backend=backend_name)
    with pytest.raises(ValueError, match="g must have dtype float64 \\(the dtype of w\\)"):
        sgd_update(w, g.astype(np.float32), v, learning_rate=0.1, backend=backend_name)
    with pytest.raises(ValueError, match="three separate arrays"):
        sgd_update(w, w, v, learning_rate=0.1, backend=backend_name)
    with pytest.raises(ValueError, match="three separate arrays"):
        buf = np.zeros(8)
        sgd_update(w, buf[:4], buf[2:6], learning_rate=0.1, backend=backend_name)
    np.testing.assert_array_equal(w, 1.0)            # nothing was written
