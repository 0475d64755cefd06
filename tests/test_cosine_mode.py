"""cosine_mode: "auto" picks exact / sketch / index per layer, records it, and can be forced."""

import json

import numpy as np
import pytest
from sklearn.datasets import make_classification

from ctre_sparse import cosine_index, ops
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater, pattern_keys, updater as updater_mod
from ctre_sparse.training import Trainer

BACKEND = "reference"
SIZES = [30, 64, 64, 4]


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=300, n_features=30, n_informative=12, n_redundant=4,
                               n_classes=4, class_sep=1.5, random_state=0)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    return np.ascontiguousarray(X.T), y


@pytest.fixture
def spy(monkeypatch):
    """The (mode, n_out, n_in, S) of every cosine top-k call, running the real functions."""
    calls = []
    for mod, name, mode in ((ops, "topk_cosine", "exact"),
                            (cosine_index, "topk_cosine_index", "index")):
        real = getattr(mod, name)

        def wrapped(A, B, k, _real=real, _mode=mode, **kw):
            calls.append((_mode, B.shape[0], A.shape[0], A.shape[1]))
            return _real(A, B, k, **kw)

        monkeypatch.setattr(mod, name, wrapped)
    return calls


def _trainer(growth="ctre_sim", **kw):
    model = SparseMLP(SIZES, "relu", epsilon=4, backend=BACKEND, random_state=0)
    upd = TopologyUpdater(0.3, growth, cosine_samples=64, backend=BACKEND, **kw)
    return Trainer(model, SGD(0.05), upd, batch_size=32, random_state=0)


def _strip(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "topology_seconds")}
            for r in records]


def test_auto_is_exact_on_small_layers_bit_identical(data, spy):
    X, y = data
    auto, exact = _trainer(), _trainer(cosine_mode="exact")
    auto.fit(X, y, epochs=3)
    n_auto = len(spy)
    exact.fit(X, y, epochs=3)
    assert {c[0] for c in spy} == {"exact"} and len(spy) == 2 * n_auto
    assert _strip(auto.history) == _strip(exact.history)
    for la, lb in zip(auto.model.layers, exact.model.layers):
        np.testing.assert_array_equal(la.W.indices, lb.W.indices)
        np.testing.assert_array_equal(la.W.data, lb.W.data)
    assert auto.rng.bit_generator.state == exact.rng.bit_generator.state
    assert auto.history[0]["cosine_modes"] is None                 # no update before epoch 1
    assert auto.history[1]["cosine_modes"] == ["exact"] * 3


def test_auto_switches_to_index_above_the_work_threshold(data, spy, monkeypatch):
    X, _ = data
    # positions x 64 samples: 1920 * 64 = 122,880; 4096 * 64 = 262,144; 256 * 64 = 16,384
    monkeypatch.setattr(updater_mod, "AUTO_EXACT_WORK", 200_000)
    trainer = _trainer("cosine")
    stats = trainer.updater.update(trainer.model, X, optimizer=trainer.optimizer,
                                   rng=np.random.default_rng(0))
    assert stats["cosine_modes"] == ["exact", "index", "exact"]
    assert [c[:3] for c in spy] == [("exact", 64, 30), ("index", 64, 64), ("exact", 4, 64)]
    assert [s["cosine_mode"] for s in stats["layers"]] == stats["cosine_modes"]


@pytest.mark.parametrize("growth", ["cosine", "ctre_sim", "ctre_seq"])
def test_forced_index_keeps_the_update_invariants(data, spy, growth):
    X, _ = data
    results = []
    for _ in range(2):
        trainer = _trainer(growth, cosine_mode="index")
        model = trainer.model
        before = [set(pattern_keys(layer.W).tolist()) for layer in model.layers]
        nnz = [layer.W.nnz for layer in model.layers]
        stats = trainer.updater.update(model, X, optimizer=trainer.optimizer,
                                       rng=np.random.default_rng(7))
        assert stats["cosine_modes"] == ["index"] * 3
        assert stats["n_pruned"] == stats["n_cosine"] + stats["n_random"] > 0
        for i, layer in enumerate(model.layers):
            layer.W.check_format(full_check=True)
            assert layer.W.nnz == nnz[i]
            grown = set(pattern_keys(layer.W).tolist()) - before[i]
            assert len(grown) <= stats["layers"][i]["n_pruned"]
        results.append([layer.W.indices.copy() for layer in model.layers])
    for a, b in zip(*results):                                     # seeded: reproducible
        np.testing.assert_array_equal(a, b)
    assert {c[0] for c in spy} == {"index"}


def test_random_growth_records_no_mode(data):
    X, _ = data
    trainer = _trainer("random")
    stats = trainer.updater.update(trainer.model, X, rng=np.random.default_rng(0))
    assert stats["cosine_modes"] == [None, None, None]


def test_auto_caps_the_samples_of_wide_networks(data, spy, monkeypatch):
    X, _ = data
    # 30 + 64 + 64 + 4 = 162 floats per sample: a budget of 162 * 4 * 40 bytes -> 40 samples,
    # raised to the floor of 50; a forced mode keeps cosine_samples (64)
    monkeypatch.setattr(updater_mod, "AUTO_ACTIVATION_BYTES", 162 * 4 * 40)
    monkeypatch.setattr(updater_mod, "AUTO_MIN_SAMPLES", 50)
    for mode, samples in (("auto", 50), ("exact", 64)):
        spy.clear()
        trainer = _trainer("cosine", cosine_mode=mode)
        trainer.updater.update(trainer.model, X, rng=np.random.default_rng(0))
        assert {c[3] for c in spy} == {samples}


def test_legacy_sketch_option_keeps_its_rule_under_auto(data):
    upd = TopologyUpdater(0.3, "cosine", cosine_approx_dim=16, cosine_approx_min_pairs=4096)
    small, big = SparseMLP([30, 64], epsilon=4, random_state=0), SparseMLP([64, 64], epsilon=4,
                                                                          random_state=0)
    assert upd._layer_mode(small.layers[0].W, 10**6) == "exact"
    assert upd._layer_mode(big.layers[0].W, 10**6) == "sketch"
    forced = TopologyUpdater(0.3, "cosine", cosine_mode="sketch")
    assert forced._layer_mode(small.layers[0].W, 1) == "sketch"
    assert "cosine_mode='sketch'" in repr(forced) and "cosine_mode" not in repr(upd)


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="cosine_mode must be one of"):
        TopologyUpdater(0.3, "cosine", cosine_mode="fast")
    from ctre_sparse import CTREClassifier

    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match="cosine_mode must be"):
        CTREClassifier(hidden_layer_sizes=(4,), max_epochs=1, cosine_mode="fast").fit(X, y)


def test_estimator_cli_and_saved_files(tmp_path):
    from ctre_sparse import CTREClassifier
    from ctre_sparse._estimator_state import with_legacy_defaults
    from ctre_sparse.cli import build_parser
    from ctre_sparse.cli.train import _estimator

    X, y = np.random.default_rng(0).normal(size=(60, 5)), np.arange(60) % 3
    clf = CTREClassifier(hidden_layer_sizes=(8,), epsilon=2, max_epochs=2, random_state=0,
                         growth="cosine", cosine_mode="index").fit(X, y)
    assert clf._trainer.updater.cosine_mode == "index"
    assert clf.history_[1]["cosine_modes"] == ["index", "index"]
    clf.save(tmp_path / "m.npz")
    assert CTREClassifier.load(tmp_path / "m.npz").get_params()["cosine_mode"] == "index"
    assert CTREClassifier().cosine_mode == "auto"
    parser = build_parser()
    assert _estimator(parser.parse_args(["train"]), tmp_path).cosine_mode == "auto"
    args = parser.parse_args(["train", "--cosine-mode", "exact"])
    assert _estimator(args, tmp_path).cosine_mode == "exact"
    # files written before cosine_mode existed ran exact (or the sketch rule with its dim)
    assert with_legacy_defaults({"cosine_approx_dim": None})["cosine_mode"] == "exact"
    assert with_legacy_defaults({"cosine_approx_dim": 8})["cosine_mode"] == "auto"
    with np.load(tmp_path / "m.npz") as npz:
        members = {k: npz[k] for k in npz.files}
    meta = json.loads(str(members["meta_json"][()]))
    del meta["params"]["cosine_mode"]
    members["meta_json"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **members)
    old = CTREClassifier.load(tmp_path / "old.npz")
    assert old.get_params()["cosine_mode"] == "exact"
    resumed = CTREClassifier(hidden_layer_sizes=(8,), epsilon=2, max_epochs=3, random_state=0,
                             growth="cosine")
    with pytest.raises(ValueError, match="cosine_mode: 'exact' -> 'auto'"):
        resumed.fit(X, y, resume=tmp_path / "old.npz")
