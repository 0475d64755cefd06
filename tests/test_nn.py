"""The sparse model: activations, loss, gradients (vs finite differences), SGD, init, state."""

import numpy as np
import pytest
from conftest import CPU_BACKENDS

from ctre_sparse.nn import (ACTIVATIONS, SGD, SparseMLP, erdos_renyi, erdos_renyi_nnz,
                            get_activation, init_bound, softmax, softmax_cross_entropy)
from ctre_sparse.sparse import CSRMatrix

BACKEND = "reference"


# ------------------------------------------------------------------ activations
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("layer_index", [0, 1])
def test_activation_derivative_matches_finite_difference(name, layer_index):
    act = get_activation(name, layer_index)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((4, 5)) * 2
    Z[np.abs(Z) < 1e-3] = 0.5  # keep away from the kink
    h = 1e-6
    numeric = (act.forward(Z + h) - act.forward(Z - h)) / (2 * h)
    A = act.forward(Z)
    dA = rng.standard_normal(Z.shape)
    expected = dA * numeric
    got = act.backward(Z, A, dA.copy())
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_activation_values():
    Z = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(get_activation("relu").forward(Z), [[0, 0, 3]])
    np.testing.assert_allclose(get_activation("leaky_relu").forward(Z), [[-0.02, 0, 3]])
    np.testing.assert_allclose(get_activation("tanh").forward(Z), np.tanh(Z))
    np.testing.assert_allclose(get_activation("sigmoid").forward(Z), 1 / (1 + np.exp(-Z)))
    np.testing.assert_allclose(get_activation("alternated_left_relu", 0).forward(Z),
                               [[1.2, 0, 3]])
    np.testing.assert_allclose(get_activation("alternated_left_relu", 1).forward(Z),
                               [[-1.2, 0, 3]])
    big = np.array([[-1000.0, 1000.0]])
    np.testing.assert_array_equal(get_activation("sigmoid").forward(big), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation("swish")


def test_activation_forward_in_place():
    Z = np.array([[-1.0, 2.0]])
    out = get_activation("alternated_left_relu", 0).forward(Z, out=Z)
    assert out is Z
    np.testing.assert_allclose(Z, [[0.6, 2.0]])


# ------------------------------------------------------------------ loss
def test_softmax_cross_entropy_stable_and_correct():
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((5, 7))
    y = rng.integers(0, 5, 7)
    loss, P, G = softmax_cross_entropy(Z, y)
    naive_P = np.exp(Z) / np.exp(Z).sum(axis=0)
    np.testing.assert_allclose(P, naive_P, rtol=1e-12)
    assert loss == pytest.approx(-np.mean(np.log(naive_P[y, np.arange(7)])), rel=1e-12)
    onehot = np.zeros_like(Z)
    onehot[y, np.arange(7)] = 1
    np.testing.assert_allclose(G, (naive_P - onehot) / 7, atol=1e-15)
    loss, P, _ = softmax_cross_entropy(np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32),
                                       np.array([1, 1]))
    assert np.isfinite(loss) and loss == pytest.approx(1e4)
    assert np.all(np.isfinite(softmax(np.array([[1e30], [-1e30]], np.float32))))


# ------------------------------------------------------------------ gradients
def _loss(model, X, y, seed):
    model.forward(X, training=True, rng=np.random.default_rng(seed))
    return model.backward(y)


@pytest.mark.parametrize("activation,dropout", [(a, 0.0) for a in ACTIVATIONS] +
                         [("relu", 0.3), ("tanh", 0.5)])
def test_gradients_match_finite_differences(activation, dropout):
    rng = np.random.default_rng(3)
    model = SparseMLP([5, 7, 6, 3], activation, density=0.6, dropout=dropout,
                      dtype=np.float64, backend=BACKEND, random_state=4)
    for layer in model.layers:
        layer.b[:] = rng.standard_normal(layer.b.shape) * 0.1
    X = rng.standard_normal((5, 4))
    y = np.array([0, 2, 1, 2])
    _loss(model, X, y, seed=9)
    grads = [(layer.grad_W.copy(), layer.grad_b.copy()) for layer in model.layers]
    h = 1e-6
    for layer, (gW, gb) in zip(model.layers, grads):
        for arr, g in ((layer.W.data, gW), (layer.b, gb)):
            numeric = np.empty_like(g)
            for p in range(arr.shape[0]):
                old = arr[p]
                arr[p] = old + h
                up = _loss(model, X, y, seed=9)
                arr[p] = old - h
                down = _loss(model, X, y, seed=9)
                arr[p] = old
                numeric[p] = (up - down) / (2 * h)
            np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-8)


def test_unknown_backend_fails_at_construction():
    with pytest.raises(ValueError, match="backend must be one of"):
        SparseMLP([3, 2], epsilon=1, backend="fortran")


def test_backward_needs_training_forward():
    model = SparseMLP([3, 2], epsilon=1, backend=BACKEND, random_state=0)
    model.forward(np.ones((3, 2), np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.array([0, 1]))


def test_forward_rejects_bad_input():
    model = SparseMLP([3, 4, 2], epsilon=1, backend=BACKEND, random_state=0)
    with pytest.raises(ValueError, match="float32"):
        model.forward(np.ones((3, 2), np.float64))
    with pytest.raises(ValueError, match="shape"):
        model.forward(np.ones((4, 2), np.float32))
    model.dropout = 0.5
    with pytest.raises(ValueError, match="rng"):
        model.forward(np.ones((3, 2), np.float32), training=True)


# ------------------------------------------------------------------ SGD
def _tiny_model():
    W = CSRMatrix.from_dense(np.array([[1.0, 0.0, -2.0], [0.0, 0.5, 0.0]]))
    model = SparseMLP([3, 2], epsilon=1, dtype=np.float64, backend=BACKEND, random_state=0)
    model.layers[0].set_weight(W)
    model.layers[0].b[:] = [0.1, -0.2]
    return model


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_hand_computation(nesterov, backend):
    lr, mu, wd = 0.1, 0.9, 0.01
    model = _tiny_model()
    opt = SGD(lr, momentum=mu, nesterov=nesterov, weight_decay=wd, backend=backend)
    opt.start_epoch(0)
    layer = model.layers[0]
    w = layer.W.data.copy()
    b = layer.b.copy()
    vw, vb = np.zeros(3), np.zeros(2)
    for gW, gb in (([0.5, -1.0, 2.0], [1.0, 0.5]), ([0.25, 0.0, -1.0], [-1.0, 2.0])):
        layer.grad_W[:] = gW
        layer.grad_b[:] = gb
        opt.step(model)
        g = np.array(gW) + wd * w          # decay on the weights only
        vw = mu * vw + g
        w = w - lr * (g + mu * vw if nesterov else vw)
        vb = mu * vb + np.array(gb)
        b = b - lr * (np.array(gb) + mu * vb if nesterov else vb)
        np.testing.assert_allclose(layer.W.data, w, rtol=1e-14)
        np.testing.assert_allclose(layer.b, b, rtol=1e-14)
        np.testing.assert_allclose(opt.velocity_W[0], vw, rtol=1e-14)


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "reference"])
@pytest.mark.parametrize("momentum,nesterov,decay", [(0.9, True, 1e-3), (0.5, False, 0.0),
                                                     (0.0, False, 1e-2)])
def test_sgd_compiled_equals_reference_bit_for_bit(momentum, nesterov, decay, backend):
    models = [SparseMLP([20, 30, 5], epsilon=3, backend=BACKEND, random_state=1)
              for _ in range(2)]
    opts = [SGD(0.05, momentum, nesterov, decay, backend=b) for b in (backend, "reference")]
    rng = np.random.default_rng(2)
    for _ in range(3):
        grads = [rng.standard_normal(layer.W.nnz).astype(np.float32)
                 for layer in models[0].layers]
        for model, opt in zip(models, opts):
            for layer, g in zip(model.layers, grads):
                layer.grad_W[:] = g
                layer.grad_b[:] = g[: layer.b.shape[0]]
            opt.step(model)
    for la, lb in zip(models[0].layers, models[1].layers):
        np.testing.assert_array_equal(la.W.data, lb.W.data)
        np.testing.assert_array_equal(la.b, lb.b)
    for va, vb in zip(opts[0].velocity_W, opts[1].velocity_W):
        np.testing.assert_array_equal(va, vb)


def test_sgd_plain_and_schedule():
    model = _tiny_model()
    opt = SGD(0.5, momentum=0.0, nesterov=False, weight_decay=0.0,
              schedule=lambda epoch: 0.1 / (1 + epoch) if epoch > 0 else None)
    assert opt.start_epoch(0) == 0.5
    assert opt.start_epoch(1) == pytest.approx(0.05)
    layer = model.layers[0]
    before = layer.W.data.copy()
    layer.grad_W[:] = [1.0, 2.0, 3.0]
    layer.grad_b[:] = 0
    opt.step(model)
    np.testing.assert_allclose(layer.W.data, before - 0.05 * np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="learning rate"):
        SGD(0.1, schedule=lambda e: -1.0).start_epoch(0)


def test_sgd_remap_and_state():
    model = _tiny_model()
    opt = SGD(0.1)
    layer = model.layers[0]
    layer.grad_W[:] = [1.0, 2.0, 3.0]
    opt.step(model)
    v = opt.velocity_W[0].copy()
    # keep old entries 0 and 2, now at positions 2 and 0, two new entries at 1 and 3
    opt.remap(0, np.array([0, 2]), np.array([2, 0]), np.array([1, 3]), 4)
    np.testing.assert_array_equal(opt.velocity_W[0], [v[2], 0, v[0], 0])
    state = opt.state_dict()
    opt2 = SGD(0.5)
    opt2.load_state_dict(state)
    np.testing.assert_array_equal(opt2.velocity_W[0], opt.velocity_W[0])
    assert opt2.learning_rate == 0.1 and opt2.nesterov
    with pytest.raises(ValueError, match="remap"):
        opt.step(model)  # model still has 3 entries, the momentum 4


# ------------------------------------------------------------------ init
def test_erdos_renyi():
    assert erdos_renyi_nnz(1000, 784, epsilon=20) == 35680
    assert erdos_renyi_nnz(4, 3, epsilon=20) == 12  # capped: dense
    assert erdos_renyi_nnz(10, 10, density=0.25) == 25
    with pytest.raises(ValueError, match="exactly one"):
        erdos_renyi_nnz(10, 10, epsilon=1, density=0.1)
    W = erdos_renyi(300, 200, epsilon=3, random_state=0, dtype=np.float64)
    W.check_format(full_check=True)
    assert W.nnz == 1500 and W.dtype == np.float64
    bound = init_bound(200, 300)
    assert np.abs(W.data).max() <= bound and np.abs(W.data).max() > 0.9 * bound
    G = erdos_renyi(300, 200, epsilon=3, random_state=0, init="glorot")
    assert np.abs(G.data).max() <= init_bound(200, 300, "glorot") < bound
    again = erdos_renyi(300, 200, epsilon=3, random_state=0, dtype=np.float64)
    np.testing.assert_array_equal(W.indices, again.indices)


# ------------------------------------------------------------------ state
def test_model_state_dict_round_trip():
    model = SparseMLP([6, 9, 4], "alternated_left_relu", epsilon=2, dropout=0.2,
                      backend=BACKEND, random_state=0)
    X = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    P = model.forward(X).copy()
    state = model.state_dict()
    clone = SparseMLP.from_state_dict(state, backend=BACKEND)
    np.testing.assert_array_equal(clone.forward(X), P)
    assert clone.dropout == 0.2 and clone.n_connections == model.n_connections
    other = SparseMLP([6, 8, 4], epsilon=2, backend=BACKEND, random_state=0)
    with pytest.raises(ValueError, match="layer_sizes"):
        other.load_state_dict(state)


def test_activations_and_predict():
    model = SparseMLP([6, 9, 7, 4], epsilon=2, backend=BACKEND, random_state=0)
    X = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    acts = model.activations(X)
    assert [a.shape for a in acts] == [(6, 10), (9, 10), (7, 10), (4, 10)]
    assert np.all(acts[1] >= 0)
    np.testing.assert_allclose(acts[-1].sum(axis=0), 1, rtol=1e-6)
    for chunked, whole in zip(model.activations(X, batch_size=3), acts):
        np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict_proba(X, batch_size=3), acts[-1], rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_array_equal(model.predict_codes(X), np.argmax(acts[-1], axis=0))
