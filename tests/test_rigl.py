"""Gradient-based growth (RigL): the loss gradients, the picks against a dense oracle, training."""

import numpy as np
import pytest

from conftest import CPU_BACKENDS
from ctre_sparse import ops
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater, pattern_keys
from ctre_sparse.training import Trainer


def _model(sizes=(9, 12, 7, 4), density=0.35, dtype=np.float64, backend="reference", seed=0,
           activation="relu"):
    rng = np.random.default_rng(seed)
    model = SparseMLP(list(sizes), density=density, dtype=dtype, backend=backend,
                      random_state=seed, activation=activation)
    for layer in model.layers:
        layer.b[...] = rng.uniform(-0.1, 0.1, layer.b.shape)  # nonzero biases: a general case
    X = rng.standard_normal((sizes[0], 23)).astype(dtype)
    y = rng.integers(0, sizes[-1], 23)
    return model, X, y


def _dense_gradients(model, X, y):
    """dL/dW for EVERY position of every layer (mean cross-entropy), by dense NumPy algebra."""
    Ws = [layer.W.toarray().astype(np.float64) for layer in model.layers]
    bs = [np.asarray(layer.b, np.float64) for layer in model.layers]
    acts = model.hidden_activations
    H, Zs, inputs = X.astype(np.float64), [], []
    for i, (W, b) in enumerate(zip(Ws, bs)):
        inputs.append(H)
        Z = W @ H + b[:, None]
        Zs.append(Z)
        if i < len(Ws) - 1:
            H = np.where(Z > 0, Z, acts[i].slope * Z)
    Z = Zs[-1]
    P = np.exp(Z - Z.max(axis=0))
    P /= P.sum(axis=0)
    G = P.copy()
    G[y, np.arange(y.shape[0])] -= 1
    G /= y.shape[0]
    out = [None] * len(Ws)
    for i in range(len(Ws) - 1, -1, -1):
        out[i] = G @ inputs[i].T
        if i:
            dH = Ws[i].T @ G
            G = dH * np.where(Zs[i - 1] > 0, 1.0, acts[i - 1].slope)
    return out


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("activation", ["relu", "alternated_left_relu"])
@pytest.mark.parametrize("batch_size", [1, 5, 1024])
def test_loss_gradients_give_the_dense_gradient(backend, activation, batch_size):
    model, X, y = _model(backend=backend, activation=activation)
    inputs, grads = model.loss_gradients(X, y, batch_size=batch_size)
    dense = _dense_gradients(model, X, y)
    for i, layer in enumerate(model.layers):
        assert inputs[i].shape == (layer.W.n_in, 23) and grads[i].shape == (layer.W.n_out, 23)
        np.testing.assert_allclose(grads[i] @ inputs[i].T, dense[i], rtol=1e-10, atol=1e-12)
    # and at the stored connections it is the training gradient (sddmm) of the whole batch
    model.forward(np.ascontiguousarray(X), training=True)
    model.backward(y)
    for i, layer in enumerate(model.layers):
        np.testing.assert_allclose(ops.sddmm(layer.W, grads[i], inputs[i]), layer.grad_W,
                                   rtol=1e-10, atol=1e-12)


def test_loss_gradients_bad_labels():
    model, X, y = _model()
    with pytest.raises(ValueError, match=r"y must have shape \(23,\)"):
        model.loss_gradients(X, y[:5])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_rigl_picks_the_dense_oracle_topk(backend):
    """Every layer regrows exactly the absent pairs of largest |dense gradient|."""
    model, X, y = _model(backend=backend)
    dense = _dense_gradients(model, X, y)
    expected = []
    for i, layer in enumerate(model.layers):
        pruned = ops.prune_magnitude(layer.W, 0.3, backend="reference")
        k = pruned.removed_rows.shape[0]
        absent = pruned.matrix.toarray() == 0
        absent[pruned.matrix.row_indices(), pruned.matrix.indices] = False  # stored zeros
        r, c = np.nonzero(absent)
        score = np.abs(dense[i][r, c])
        order = np.lexsort((c, r, -score))[:k]
        assert np.all(np.abs(np.diff(np.sort(score)[::-1][k - 1:k + 1])) > 1e-9)  # no tie at k
        expected.append(set((r[order] * layer.W.n_in + c[order]).tolist()) |
                        set(pattern_keys(pruned.matrix).tolist()))
    stats = TopologyUpdater(0.3, "rigl", cosine_samples=100, backend=backend,
                            grow_init="zeros").update(model, X, y, rng=np.random.default_rng(0))
    assert stats["n_cosine"] == stats["n_pruned"] > 0 and stats["n_random"] == 0
    for layer, keys in zip(model.layers, expected):
        assert set(pattern_keys(layer.W).tolist()) == keys


def test_rigl_needs_labels():
    model, X, y = _model()
    with pytest.raises(ValueError, match="needs the labels"):
        TopologyUpdater(0.3, "rigl").update(model, X, rng=0)


def test_rigl_uses_a_sample_subset_and_dropout():
    model, X, y = _model(dtype=np.float32)
    model.dropout = 0.5
    upd = TopologyUpdater(0.3, "rigl", cosine_samples=7, backend="reference")
    before = [layer.W.nnz for layer in model.layers]
    stats = upd.update(model, X, y, rng=np.random.default_rng(1))
    assert [layer.W.nnz for layer in model.layers] == before
    assert stats["n_cosine"] == stats["n_pruned"] > 0


def test_rigl_trains_with_the_trainer_and_resumes_identically():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 200)).astype(np.float32)
    y = (X[0] + X[1] > 0).astype(np.int64)

    def trainer():
        model = SparseMLP([10, 32, 2], epsilon=2, random_state=0, init="he_sparse")
        upd = TopologyUpdater(0.2, "rigl", cosine_samples=64, grow_init="zeros")
        return Trainer(model, SGD(0.05), upd, batch_size=20, random_state=1)

    full = trainer()
    records = full.fit(X, y, epochs=6)
    assert all(r["n_cosine"] == r["n_pruned"] > 0 for r in records[1:])
    assert records[-1]["train_accuracy"] > 0.8
    half = trainer()
    half.fit(X, y, epochs=3)
    state = half.state_dict()
    resumed = trainer()
    resumed.load_state_dict(state)
    resumed.fit(X, y, epochs=6)
    for a, b in zip(full.model.layers, resumed.model.layers):
        np.testing.assert_array_equal(a.W.indices, b.W.indices)
        np.testing.assert_array_equal(a.W.data, b.W.data)
