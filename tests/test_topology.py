"""Topology evolution: prune-then-regrow invariants and each growth strategy."""

import numpy as np
import pytest

from ctre_sparse import ops
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.sparse import CSRMatrix
from ctre_sparse.topology import (CTRESeqGrowth, CTRESimGrowth, GrowthContext,
                                  TopologyUpdater, get_growth, pattern_keys, sample_absent)

BACKEND = "reference"
STRATEGIES = ["random", "cosine", "ctre_seq", "ctre_sim"]


def _keys(W):
    return pattern_keys(W).tolist()


def _trained_model(growth_seed=0, dtype=np.float32, sizes=(12, 20, 15, 4), density=0.3):
    """A model with nonzero momentum (a few SGD steps), its optimizer and data."""
    rng = np.random.default_rng(growth_seed)
    model = SparseMLP(list(sizes), density=density, dtype=dtype, backend=BACKEND,
                      random_state=growth_seed)
    opt = SGD(0.05)
    X = rng.standard_normal((sizes[0], 30)).astype(dtype)
    y = rng.integers(0, sizes[-1], 30)
    for _ in range(3):
        model.forward(X, training=True, rng=rng)
        model.backward(y)
        opt.step(model)
    return model, opt, X


# ------------------------------------------------------------------ sampling
def test_sample_absent_distinct_and_absent():
    rng = np.random.default_rng(0)
    exclude = np.sort(rng.choice(200 * 300, 5000, replace=False)).astype(np.int64)
    rows, cols = sample_absent(200, 300, 4000, rng, exclude)
    keys = rows * 300 + cols
    assert keys.shape == (4000,) and np.unique(keys).shape == (4000,)
    assert not np.isin(keys, exclude).any()
    assert rows.max() < 200 and cols.max() < 300 and rows.min() >= 0
    # nearly full: the enumeration path
    exclude = np.setdiff1d(np.arange(100), [3, 50, 77])
    rows, cols = sample_absent(10, 10, 3, rng, exclude)
    assert sorted((rows * 10 + cols).tolist()) == [3, 50, 77]
    with pytest.raises(ValueError, match="cannot draw"):
        sample_absent(10, 10, 4, rng, exclude)


def test_sample_absent_is_uniform():
    rng = np.random.default_rng(1)
    exclude = np.array([0, 4, 8], dtype=np.int64)  # the diagonal of a 3x3
    counts = np.zeros(9)
    for _ in range(3000):
        rows, cols = sample_absent(3, 3, 2, rng, exclude)
        np.add.at(counts, rows * 3 + cols, 1)
    assert counts[exclude].sum() == 0
    expected = 3000 * 2 / 6
    chi2 = ((counts[[1, 2, 3, 5, 6, 7]] - expected) ** 2 / expected).sum()
    assert chi2 < 20.5  # 5 degrees of freedom, p ~ 0.001


def test_sample_absent_huge_space_small_memory():
    rng = np.random.default_rng(2)
    rows, cols = sample_absent(10**6, 10**6, 1000, rng, np.array([5], dtype=np.int64))
    assert np.unique(rows * 10**6 + cols).shape == (1000,)


# ------------------------------------------------------------------ invariants
@pytest.mark.parametrize("growth", STRATEGIES)
def test_update_invariants(growth):
    model, opt, X = _trained_model()
    zeta = 0.3
    before = []
    for i, layer in enumerate(model.layers):
        W = layer.W
        n_remove = int(np.floor(zeta * W.nnz))
        pruned = set(np.array(_keys(W))[np.argsort(np.abs(W.data), kind="stable")[:n_remove]]
                     .tolist())
        before.append((dict(zip(_keys(W), zip(W.data.tolist(), opt.velocity_W[i].tolist()))),
                       pruned, W.nnz))
    updater = TopologyUpdater(zeta, growth, cosine_samples=16, backend=BACKEND)
    stats = updater.update(model, X, optimizer=opt, rng=np.random.default_rng(5))
    assert stats["n_pruned"] == stats["n_cosine"] + stats["n_random"] > 0
    assert stats["n_connections"] == model.n_connections
    for i, (layer, (old, pruned, nnz)) in enumerate(zip(model.layers, before)):
        W = layer.W
        W.check_format(full_check=True)  # sorted, no duplicates
        assert W.nnz == nnz and opt.velocity_W[i].shape == (nnz,)
        assert layer.grad_W.shape == (nnz,)
        kept = set(old) - pruned
        new = set(_keys(W)) - kept
        assert len(new) == len(pruned) == stats["layers"][i]["n_pruned"]
        assert kept <= set(_keys(W))
        # growth never re-adds a connection that survived pruning (set algebra above) and
        # CTRE-sim never re-adds one pruned in this step
        if growth == "ctre_sim":
            assert not (new & pruned)
        bound = np.sqrt(6.0 / W.n_in)
        pos = {k: p for p, k in enumerate(_keys(W))}
        for k in kept:
            assert (W.data[pos[k]], opt.velocity_W[i][pos[k]]) == old[k]
        for k in new:
            assert abs(W.data[pos[k]]) <= bound
            assert opt.velocity_W[i][pos[k]] == 0
    if growth in ("cosine", "ctre_seq"):
        assert stats["n_random"] == 0
    if growth == "random":
        assert stats["n_cosine"] == 0


def test_static_leaves_topology_unchanged():
    model, opt, X = _trained_model()
    snapshot = [(layer.W.indices.copy(), layer.W.data.copy()) for layer in model.layers]
    stats = TopologyUpdater(0.3, "static", backend=BACKEND).update(
        model, X, optimizer=opt, rng=np.random.default_rng(0))
    assert stats["n_pruned"] == stats["n_cosine"] == stats["n_random"] == 0
    for layer, (indices, data) in zip(model.layers, snapshot):
        np.testing.assert_array_equal(layer.W.indices, indices)
        np.testing.assert_array_equal(layer.W.data, data)


# ------------------------------------------------------------------ cosine
def _brute_force_topk(A_in, A_out, W, k):
    """Top-k |cos(A_out[r], A_in[c])| over absent (r, c), ties by (r, c) ascending."""
    An = A_in / np.maximum(np.linalg.norm(A_in, axis=1, keepdims=True), 1e-300)
    Bn = A_out / np.maximum(np.linalg.norm(A_out, axis=1, keepdims=True), 1e-300)
    S = np.abs(Bn @ An.T)
    present = W.toarray() != 0
    cands = [(-S[r, c], r, c) for r in range(S.shape[0]) for c in range(S.shape[1])
             if not present[r, c]]
    return sorted(cands)[:k]


def test_cosine_growth_picks_brute_force_topk():
    model, opt, X = _trained_model(dtype=np.float64, sizes=(8, 10, 3), density=0.4)
    # the activations, computed densely: input side = previous layer's output (raw input for
    # layer 0), output side = this layer's post-activation output (softmax for the last)
    W0, W1 = (layer.W.toarray() for layer in model.layers)
    H = np.maximum(W0 @ X + model.layers[0].b[:, None], 0)
    Z = W1 @ H + model.layers[1].b[:, None]
    P = np.exp(Z - Z.max(axis=0)) / np.exp(Z - Z.max(axis=0)).sum(axis=0)
    acts = [X, H, P]
    expected = []
    for i, layer in enumerate(model.layers):
        pruned = ops.prune_magnitude(layer.W, 0.25, backend=BACKEND)
        k = pruned.removed_rows.shape[0]
        top = _brute_force_topk(acts[i], acts[i + 1], pruned.matrix, k)
        assert len(top) == k
        expected.append({r * layer.W.n_in + c for _, r, c in top} | set(_keys(pruned.matrix)))
    # all 30 samples are used (cosine_samples >= n_samples), so the activations match
    TopologyUpdater(0.25, "cosine", cosine_samples=100, backend=BACKEND).update(
        model, X, optimizer=opt, rng=np.random.default_rng(0))
    for layer, keys in zip(model.layers, expected):
        assert set(_keys(layer.W)) == keys


def test_ctre_sim_replaces_repicked_pruned_connections():
    # 3 x 4 layer; output neuron r is identical to input neuron r (cos = 1) for r < 3
    A_in = np.array([[1., 0., 0.], [0., 1., 0.], [0., 0., 1.], [1., 1., 1.]])
    A_out = A_in[:3] * 2.0
    W = CSRMatrix.from_dense(np.array([[0., 1., 0., 0.], [0., 0., 0., 1.], [1., 0., 0., 0.]]))
    removed_rows, removed_cols = np.array([0, 1]), np.array([0, 1])  # (0,0) and (1,1) pruned
    ctx = GrowthContext(0, W, removed_rows, removed_cols, A_in, A_out, backend=BACKEND)
    cos_rows, cos_cols, _ = ops.topk_cosine(A_in, A_out, 3, exclude=W, backend=BACKEND)
    cos_picks = set(zip(cos_rows.tolist(), cos_cols.tolist()))
    assert {(0, 0), (1, 1)} <= cos_picks  # cosine alone would re-add both pruned ones
    rows, cols, n_cosine = CTRESimGrowth().choose(ctx, 3, np.random.default_rng(0))
    picks = list(zip(rows.tolist(), cols.tolist()))
    assert n_cosine == 1 and len(set(picks)) == 3
    assert picks[0] in cos_picks - {(0, 0), (1, 1)}
    present = {(0, 1), (1, 3), (2, 0)}
    for p in picks[1:]:
        assert p not in present | {(0, 0), (1, 1)} | cos_picks
    # plain cosine growth keeps them
    rows, cols, n_cosine = get_growth("cosine").choose(ctx, 3, np.random.default_rng(0))
    assert set(zip(rows.tolist(), cols.tolist())) == cos_picks and n_cosine == 3


def test_ctre_sim_on_a_dense_layer_falls_back():
    W = CSRMatrix.from_dense(np.ones((3, 3)) - np.eye(3))
    ctx = GrowthContext(0, W, np.arange(3), np.arange(3), np.eye(3), np.eye(3) * 2,
                        backend=BACKEND)
    rows, cols, n_cosine = CTRESimGrowth().choose(ctx, 3, np.random.default_rng(0))
    assert n_cosine == 0 and sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1),
                                                                          (2, 2)]


# ------------------------------------------------------------------ CTRE-seq
def test_ctre_seq_switches_after_patience_for_good():
    growth = CTRESeqGrowth(patience=2)
    for acc in (0.5, 0.6, 0.6):
        growth.observe(acc)
        assert not growth.switched and growth.needs_activations
    growth.observe(0.59)
    assert growth.switched and not growth.needs_activations
    growth.observe(0.99)
    assert growth.switched
    restored = CTRESeqGrowth(patience=7)
    restored.load_state_dict(growth.state_dict())
    assert restored.switched and restored.patience == 2 and restored.best == 0.6


def test_ctre_seq_through_the_updater():
    model, opt, X = _trained_model()
    updater = TopologyUpdater(0.2, "ctre_seq", patience=1, cosine_samples=10, backend=BACKEND)
    rng = np.random.default_rng(0)
    first = updater.update(model, X, optimizer=opt, val_accuracy=0.7, rng=rng)
    assert first["n_cosine"] > 0 and first["n_random"] == 0
    second = updater.update(model, X, optimizer=opt, val_accuracy=0.7, rng=rng)  # no gain
    assert second["n_cosine"] == 0 and second["n_random"] == first["n_cosine"]
    state = updater.state_dict()
    fresh = TopologyUpdater(0.5, "ctre_seq", backend=BACKEND)
    fresh.load_state_dict(state)
    assert fresh.zeta == 0.2 and fresh.growth.switched
    with pytest.raises(ValueError, match="growth"):
        TopologyUpdater(growth="random").load_state_dict(state)


def test_get_growth_and_updater_validation():
    assert get_growth("set").name == "random"
    with pytest.raises(ValueError, match="growth must be one of"):
        get_growth("hebbian")
    with pytest.raises(ValueError, match="zeta"):
        TopologyUpdater(zeta=1.5)
