"""Weights scaled to the real fan-in, the regrown weights' rules, the learning-rate schedule,
and CTREClassifier's presets."""

import numpy as np
import pytest

from ctre_sparse import CTREClassifier
from ctre_sparse._params import PRESETS, fan_in_learning_rate, mean_fan_in, resolved
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.nn.init import erdos_renyi, fan_in_bounds, init_bound
from ctre_sparse.nn.optim import WarmupCosine
from ctre_sparse.topology import TopologyUpdater, pattern_keys


def test_fan_in_bounds():
    np.testing.assert_allclose(fan_in_bounds([1, 6, 24, 0]), [np.sqrt(6), 1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="fan_in_bounds"):
        init_bound(10, 10, "he_sparse")
    with pytest.raises(ValueError, match="init must be one of"):
        init_bound(10, 10, "lecun")


def test_he_sparse_bounds_follow_each_row():
    W = erdos_renyi(300, 200, epsilon=2, random_state=0, init="he_sparse")
    fan_in = np.diff(W.indptr)[W.row_indices()]
    bound = np.sqrt(6.0 / fan_in)
    assert np.all(np.abs(W.data) <= bound)
    assert np.abs(W.data / bound).max() > 0.95   # the whole interval is used
    same = erdos_renyi(300, 200, epsilon=2, random_state=0, init="he")
    np.testing.assert_array_equal(W.indices, same.indices)   # same topology either way


def test_he_sparse_preserves_the_signal_at_epsilon_1():
    """At epsilon 1 the dense He bound shrinks the signal ~20x per layer; the sparse one not."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 2000)).astype(np.float32)
    rms = {}
    for init in ("he", "he_sparse"):
        model = SparseMLP([500, 1000, 1000, 1000, 2], epsilon=1, init=init, random_state=1)
        acts = model.activations(X)
        rms[init] = [float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) for a in acts[1:-1]]
    assert rms["he"][-1] < 1e-3            # vanished
    # ReLU halves the second moment of a zero-mean pre-activation whose variance He keeps at
    # 2 q: the RMS stays near 1 (lower where neurons have no input at all)
    assert all(0.3 < r < 2.0 for r in rms["he_sparse"]), rms
    default = SparseMLP([500, 1000, 1000, 1000, 2], epsilon=1, random_state=1)
    for layer, sparse in zip(default.layers, model.layers):   # the default is "he_sparse"
        np.testing.assert_array_equal(layer.W.data, sparse.W.data)


def _update(grow_init, seed=0):
    rng = np.random.default_rng(seed)
    model = SparseMLP([30, 40, 5], density=0.2, random_state=seed, init="he_sparse")
    for layer in model.layers:
        layer.W.data *= rng.uniform(0.5, 3.0, layer.W.nnz).astype(np.float32)  # "trained"
    X = rng.standard_normal((30, 50)).astype(np.float32)
    old = [(set(pattern_keys(layer.W).tolist()), np.abs(layer.W.data).copy())
           for layer in model.layers]
    upd = TopologyUpdater(0.3, "random", grow_init=grow_init)
    upd.update(model, X, optimizer=SGD(0.1), rng=np.random.default_rng(seed + 1))
    out = []
    for layer, (keys, mags) in zip(model.layers, old):
        W = layer.W
        new = ~np.isin(pattern_keys(W), np.array(sorted(keys)))
        out.append((W, new, mags))
    return out


@pytest.mark.parametrize("grow_init", ["he", "he_sparse", "zeros", "kept", "threshold"])
def test_grow_init_rules(grow_init):
    for W, new, old_mags in _update(grow_init):
        vals = W.data[new]
        assert vals.shape[0] > 0
        if grow_init == "he":
            assert np.all(np.abs(vals) <= np.sqrt(6.0 / W.n_in))
        elif grow_init == "he_sparse":   # bound of the row's fan-in after the update
            fan_in = np.diff(W.indptr)[W.row_indices()[new]]
            assert np.all(np.abs(vals) <= np.sqrt(6.0 / fan_in))
            assert np.abs(vals / np.sqrt(6.0 / fan_in)).max() > 0.5
        elif grow_init == "zeros":
            assert np.all(vals == 0)
        elif grow_init == "threshold":   # within the largest magnitude pruned (zeta 0.3)
            t = np.sort(old_mags)[int(np.floor(0.3 * old_mags.shape[0])) - 1]
            assert np.all(np.abs(vals) <= t) and np.abs(vals).max() > 0.5 * t
        else:   # magnitudes of kept connections, both signs
            kept_mags = np.abs(W.data[~new])
            assert set(np.abs(vals).tolist()) <= set(kept_mags.tolist())
            assert (vals > 0).any() and (vals < 0).any()


def test_grow_init_validation_and_state():
    with pytest.raises(ValueError, match="grow_init must be one of"):
        TopologyUpdater(0.2, grow_init="ones")
    upd = TopologyUpdater(0.2, grow_init="zeros")
    state = upd.state_dict()
    assert state["grow_init"] == "zeros"
    other = TopologyUpdater(0.2)
    other.load_state_dict(state)
    assert other.grow_init == "zeros"
    del state["grow_init"]                      # a file written before grow_init existed
    other.load_state_dict(state)
    assert other.grow_init == "he"


def test_warmup_cosine():
    s = WarmupCosine(0.1, epochs=20, warmup=4, final_fraction=0.1)
    lrs = [s(e) for e in range(25)]
    np.testing.assert_allclose(lrs[:4], [0.02, 0.04, 0.06, 0.08])
    assert lrs[4] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:20], lrs[5:20]))          # decays
    assert lrs[19] > 0.01 and lrs[24] == lrs[19]                        # floor, then constant
    assert WarmupCosine(0.5, 1)(0) == pytest.approx(0.5)
    for kw in (dict(epochs=0), dict(epochs=5, warmup=5), dict(epochs=5, final_fraction=2)):
        with pytest.raises(ValueError):
            WarmupCosine(0.1, **kw)
    opt = SGD(0.1, schedule=s)
    assert opt.start_epoch(0) == pytest.approx(0.02)


def test_presets_resolve_and_explicit_values_win():
    paper = resolved(CTREClassifier(preset="paper"))
    assert paper["init"] == "he" and paper["grow_init"] == "he" and paper["schedule"] is None
    default = resolved(CTREClassifier(max_epochs=50))
    assert default["init"] == PRESETS["default"]["init"]
    mixed = resolved(CTREClassifier(preset="paper", init="he_sparse", lr_schedule="cosine",
                                    warmup_epochs=3, max_epochs=10, learning_rate=0.2))
    assert mixed["init"] == "he_sparse" and mixed["grow_init"] == "he"
    assert isinstance(mixed["schedule"], WarmupCosine)
    assert mixed["schedule"](3) == pytest.approx(0.2)
    sizes = [64, 1000, 1000, 1000, 10]
    assert resolved(CTREClassifier())["learning_rate"] is None  # follows the network
    rigl = resolved(CTREClassifier(growth="rigl"), sizes)
    assert rigl["grow_init"] == "zeros" and rigl["learning_rate"] == 0.1
    assert resolved(CTREClassifier(growth="rigl", preset="paper"), sizes)["learning_rate"] == 0.01
    explicit = resolved(CTREClassifier(growth="rigl", learning_rate=0.3, grow_init="he"), sizes)
    assert explicit["grow_init"] == "he" and explicit["learning_rate"] == 0.3
    short = resolved(CTREClassifier(lr_schedule="cosine", warmup_epochs=10, max_epochs=2), sizes)
    assert short["schedule"].warmup == 1    # the warm-up never takes the whole run
    assert (default["weight_decay"], paper["weight_decay"]) == (1e-3, 1e-4)
    assert resolved(CTREClassifier(preset="paper", weight_decay=0.0))["weight_decay"] == 0.0
    assert (default["dropout"], paper["dropout"]) == (0.05, 0.0)
    assert resolved(CTREClassifier(dropout=0.0))["dropout"] == 0.0


def test_weight_decay_follows_the_preset_into_the_optimizer():
    """None takes the preset's L2 at fit and after set_params; an explicit value wins."""
    X = np.random.default_rng(0).standard_normal((120, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    kw = dict(hidden_layer_sizes=(12,), epsilon=2, max_epochs=1, random_state=0)
    clf = CTREClassifier(**kw).fit(X, y)
    assert clf._trainer.optimizer.weight_decay == PRESETS["default"]["weight_decay"]
    clf.set_params(weight_decay=0.05).partial_fit(X, y)
    assert clf._trainer.optimizer.weight_decay == 0.05
    paper = CTREClassifier(preset="paper", **kw).fit(X, y)
    assert paper._trainer.optimizer.weight_decay == PRESETS["paper"]["weight_decay"]
    with pytest.raises(ValueError, match="weight_decay"):
        CTREClassifier(weight_decay=-1.0).validate_params()


def test_dropout_follows_the_preset_into_the_model():
    """None takes the preset's dropout; an explicit value wins; a trained model keeps its own."""
    X = np.random.default_rng(0).standard_normal((120, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    kw = dict(hidden_layer_sizes=(12,), epsilon=2, max_epochs=1, random_state=0)
    clf = CTREClassifier(**kw).fit(X, y)
    assert clf._trainer.model.dropout == PRESETS["default"]["dropout"] > 0
    assert CTREClassifier(preset="paper", **kw).fit(X, y)._trainer.model.dropout == 0.0
    assert CTREClassifier(dropout=0.3, **kw).fit(X, y)._trainer.model.dropout == 0.3
    with pytest.raises(ValueError, match="cannot change.*dropout"):
        clf.set_params(dropout=0.3).partial_fit(X, y)
    for bad in (-0.1, 1.0, "0.1"):
        with pytest.raises(ValueError, match="dropout"):
            CTREClassifier(dropout=bad).validate_params()


@pytest.mark.parametrize("params, match", [
    (dict(preset="fast"), "preset"),
    (dict(init="glorot"), "init"),
    (dict(grow_init="ones"), "grow_init"),
    (dict(lr_schedule="step"), "lr_schedule"),
    (dict(warmup_epochs=-1), "warmup_epochs"),
    (dict(growth="rigl", distributed="mpi"), "does not run with distributed"),
])
def test_bad_preset_parameters(params, match):
    X = np.random.default_rng(0).standard_normal((60, 4))
    y = np.repeat([0, 1], 30)
    with pytest.raises(ValueError, match=match):  # before any data is looked at
        CTREClassifier(**params).validate_params()
    with pytest.raises(ValueError, match=match):
        CTREClassifier(hidden_layer_sizes=(8,), max_epochs=1, **params).fit(X, y)


@pytest.mark.parametrize("kw, k", [(dict(epsilon=1.0), 2.018), (dict(epsilon=20.0), 36.97),
                                   (dict(density=0.5), 344.52)])
def test_default_learning_rate_follows_the_mean_fan_in(kw, k):
    """min(0.3, 0.4 / sqrt(k)), k = connections per receiving neuron of the whole network."""
    sizes = [64, 1000, 1000, 1000, 10]
    assert mean_fan_in(sizes, **kw) == pytest.approx(k, abs=0.01)
    lr = resolved(CTREClassifier(**kw), sizes)["learning_rate"]
    assert lr == pytest.approx(min(0.3, 0.4 / np.sqrt(k)), rel=1e-3)
    assert resolved(CTREClassifier(**kw), sizes)["schedule"].learning_rate == lr
    assert fan_in_learning_rate([5, 3], epsilon=0.01) == 0.3  # fewer than 1 input: the cap


def test_fan_in_learning_rate_reaches_the_optimizer():
    X = np.random.default_rng(0).standard_normal((200, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    clf = CTREClassifier(hidden_layer_sizes=(40, 40), epsilon=8, max_epochs=2,
                         random_state=0).fit(X, y)
    want = fan_in_learning_rate([6, 40, 40, 2], epsilon=8)
    assert clf._trainer.optimizer.learning_rate == pytest.approx(want)
    assert [r["learning_rate"] for r in clf.history_] == pytest.approx([want / 2, want])


def test_paper_preset_is_the_authors_regime():
    """preset="paper" trains exactly as the training core with the authors' settings (the
    dense-fan-in init, He regrowth, constant 0.01, L2 1e-4, no dropout)."""
    from ctre_sparse.topology import TopologyUpdater as TU
    from ctre_sparse.training import Trainer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    clf = CTREClassifier(hidden_layer_sizes=(16,), epsilon=2, max_epochs=3, preset="paper",
                         validation_fraction=0.0, growth="random", random_state=3).fit(X, y)
    seeds = np.random.SeedSequence(clf._entropy).spawn(3)
    model = SparseMLP([6, 16, 2], epsilon=2.0, init="he",
                      random_state=np.random.default_rng(seeds[1]))
    trainer = Trainer(model, SGD(0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
                      TU(0.2, "random", cosine_samples=2**62, patience=40), batch_size=100,
                      random_state=np.random.default_rng(seeds[2]))
    trainer.fit(np.ascontiguousarray(clf._feature_major(X)), y, epochs=3)  # standardized
    for a, b in zip(clf._trainer.model.layers, trainer.model.layers):
        np.testing.assert_array_equal(a.W.indices, b.W.indices)
        np.testing.assert_array_equal(a.W.data, b.W.data)
