"""Opt-in approximate cosine growth: TopologyUpdater(cosine_approx_dim=...) and its plumbing."""

import copy

import numpy as np
import pytest
from sklearn.datasets import make_classification

from ctre_sparse import cosine_sketch, ops
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater, pattern_keys
from ctre_sparse.training import Trainer

BACKEND = "reference"
SIZES = [30, 64, 64, 4]


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=400, n_features=30, n_informative=12, n_redundant=4,
                               n_classes=4, class_sep=1.5, random_state=0)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    return np.ascontiguousarray(X[:300].T), y[:300], np.ascontiguousarray(X[300:].T), y[300:]


@pytest.fixture
def spy(monkeypatch):
    """Record the ``(n_out, n_in)`` of every topk_cosine_sketch call (and run the real one)."""
    calls, real = [], cosine_sketch.topk_cosine_sketch

    def wrapped(A, B, k, **kw):
        calls.append((B.shape[0], A.shape[0], kw["dim"], kw["oversample"]))
        return real(A, B, k, **kw)

    monkeypatch.setattr(cosine_sketch, "topk_cosine_sketch", wrapped)
    return calls


def _trainer(growth="ctre_sim", seed=0, model_seed=0, **approx_kw):
    model = SparseMLP(SIZES, "relu", epsilon=4, backend=BACKEND, random_state=model_seed)
    updater = TopologyUpdater(0.3, growth, cosine_samples=64, patience=1, backend=BACKEND,
                              **approx_kw)
    return Trainer(model, SGD(0.05), updater, batch_size=32, random_state=seed)


def _strip_time(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "topology_seconds")}
            for r in records]


def _same_model(a, b):
    for la, lb in zip(a.layers, b.layers):
        for x, y in ((la.W.indptr, lb.W.indptr), (la.W.indices, lb.W.indices),
                     (la.W.data, lb.W.data), (la.b, lb.b)):
            np.testing.assert_array_equal(x, y)


ON = dict(cosine_approx_dim=16, cosine_approx_oversample=2, cosine_approx_min_pairs=1)


# ------------------------------------------------------------------ off: nothing changes
@pytest.mark.parametrize("approx_kw", [dict(cosine_approx_dim=None),
                                       dict(cosine_approx_dim=16)])  # 16 but all layers small
def test_off_or_small_layers_identical_to_no_option(data, spy, approx_kw):
    Xtr, ytr, Xva, yva = data
    plain = _trainer()
    plain.fit(Xtr, ytr, Xva, yva, epochs=3)
    opt = _trainer(**approx_kw)
    opt.fit(Xtr, ytr, Xva, yva, epochs=3)
    assert _strip_time(plain.history) == _strip_time(opt.history)
    _same_model(plain.model, opt.model)
    assert plain.rng.bit_generator.state == opt.rng.bit_generator.state
    assert spy == []          # every layer is below the default 4096 * 4096 positions


def test_min_pairs_picks_the_layers(data, spy):
    Xtr, ytr, _, _ = data
    # positions per layer: 64*30 = 1920, 64*64 = 4096, 4*64 = 256
    trainer = _trainer("cosine", cosine_approx_dim=16, cosine_approx_min_pairs=1920)
    trainer.updater.update(trainer.model, Xtr, optimizer=trainer.optimizer,
                           rng=np.random.default_rng(0))
    assert sorted(c[:2] for c in spy) == [(64, 30), (64, 64)]
    assert all(c[2:] == (16, 4) for c in spy)


# ------------------------------------------------------------------ on
@pytest.mark.parametrize("growth", ["cosine", "ctre_sim", "ctre_seq"])
def test_sketched_update_invariants_and_determinism(data, spy, growth):
    Xtr, _, _, _ = data
    results = []
    for _ in range(2):
        trainer = _trainer(growth, **ON)
        model = trainer.model
        survivors, pruned = [], []
        for layer in model.layers:
            cut = ops.prune_magnitude(layer.W, 0.3, backend=BACKEND)
            survivors.append(set(pattern_keys(cut.matrix).tolist()))
            pruned.append(set((cut.removed_rows * layer.W.n_in + cut.removed_cols).tolist()))
        nnz = [layer.W.nnz for layer in model.layers]
        stats = trainer.updater.update(model, Xtr, optimizer=trainer.optimizer,
                                       rng=np.random.default_rng(7))
        assert stats["n_pruned"] == stats["n_cosine"] + stats["n_random"] > 0
        if growth != "ctre_sim":
            assert stats["n_random"] == 0
        for i, layer in enumerate(model.layers):
            layer.W.check_format(full_check=True)        # sorted, no duplicate connection
            assert layer.W.nnz == nnz[i] == stats["layers"][i]["nnz"]
            after = set(pattern_keys(layer.W).tolist())
            assert survivors[i] <= after                 # growth picked absent pairs only
            grown = after - survivors[i]
            assert len(grown) == len(pruned[i]) == stats["layers"][i]["n_pruned"]
            if growth == "ctre_sim" and i < 2:           # the last layer (4 x 64) is dense
                assert not grown & pruned[i]
        results.append(([layer.W.indices.copy() for layer in model.layers],
                        [layer.W.data.copy() for layer in model.layers], stats))
    assert len(spy) == 2 * len(SIZES[1:])                # every layer, both runs
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        np.testing.assert_array_equal(a, b)
    assert results[0][2] == results[1][2]


def test_sketched_training_resume_is_bit_identical(data):
    Xtr, ytr, Xva, yva = data
    full = _trainer("ctre_sim", **ON)
    full.fit(Xtr, ytr, Xva, yva, epochs=4)
    assert sum(r["n_cosine"] for r in full.history) > 0
    first = _trainer("ctre_sim", **ON)
    first.fit(Xtr, ytr, Xva, yva, epochs=2)
    state = copy.deepcopy(first.state_dict())
    del first
    resumed = _trainer("ctre_sim", seed=123, model_seed=456, **ON)
    resumed.load_state_dict(state)
    resumed.fit(Xtr, ytr, Xva, yva, epochs=4)
    assert _strip_time(resumed.history) == _strip_time(full.history)
    _same_model(resumed.model, full.model)
    assert resumed.rng.bit_generator.state == full.rng.bit_generator.state


def test_sketch_draws_from_the_update_rng(data):
    """On, the projection comes from the update's generator: the stream moves differently."""
    Xtr, _, _, _ = data
    states = []
    for kw in ({}, ON):
        trainer = _trainer("cosine", **kw)
        rng = np.random.default_rng(3)
        trainer.updater.update(trainer.model, Xtr, optimizer=trainer.optimizer, rng=rng)
        states.append(rng.bit_generator.state)
    assert states[0] != states[1]


def test_updater_validation():
    for kw, name in ((dict(cosine_approx_dim=0), "cosine_approx_dim"),
                     (dict(cosine_approx_dim=2.5), "cosine_approx_dim"),
                     (dict(cosine_approx_dim=True), "cosine_approx_dim"),
                     (dict(cosine_approx_oversample=0), "cosine_approx_oversample"),
                     (dict(cosine_approx_min_pairs=-1), "cosine_approx_min_pairs")):
        with pytest.raises(ValueError, match=name):
            TopologyUpdater(0.3, "cosine", **kw)
    upd = TopologyUpdater(0.3, "cosine", cosine_approx_dim=np.int64(32))
    assert upd.cosine_approx_dim == 32 and "cosine_approx_dim=32" in repr(upd)
    assert "approx" not in repr(TopologyUpdater(0.3, "cosine"))


# ------------------------------------------------------------------ estimator, CLI, bench
@pytest.mark.parametrize("kw,name", [(dict(cosine_approx_dim=0), "cosine_approx_dim"),
                                     (dict(cosine_approx_dim="64"), "cosine_approx_dim"),
                                     (dict(cosine_approx_dim=8.0), "cosine_approx_dim"),
                                     (dict(cosine_approx_oversample=0),
                                      "cosine_approx_oversample"),
                                     (dict(cosine_approx_oversample=None),
                                      "cosine_approx_oversample")])
def test_estimator_validates(kw, name):
    from ctre_sparse import CTREClassifier

    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match=name):
        CTREClassifier(hidden_layer_sizes=(4,), max_epochs=1, **kw).fit(X, y)


def test_estimator_passes_and_saves_the_option(tmp_path):
    from ctre_sparse import CTREClassifier

    X, y = np.random.default_rng(0).normal(size=(60, 5)), np.arange(60) % 3
    clf = CTREClassifier(hidden_layer_sizes=(8,), epsilon=2, max_epochs=2, random_state=0,
                         cosine_approx_dim=16, cosine_approx_oversample=3).fit(X, y)
    upd = clf._trainer.updater
    assert (upd.cosine_approx_dim, upd.cosine_approx_oversample) == (16, 3)
    assert upd.cosine_approx_min_pairs == 4096 * 4096
    clf.save(tmp_path / "m.npz")
    loaded = CTREClassifier.load(tmp_path / "m.npz")
    assert loaded.get_params()["cosine_approx_dim"] == 16
    assert loaded.get_params()["cosine_approx_oversample"] == 3
    assert loaded._trainer.updater.cosine_approx_dim == 16
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    default = CTREClassifier()
    assert default.cosine_approx_dim is None and default.cosine_approx_oversample == 4
    other = CTREClassifier(hidden_layer_sizes=(8,), epsilon=2, max_epochs=3, random_state=0,
                           cosine_approx_dim=32, cosine_approx_oversample=3)
    with pytest.raises(ValueError, match="cosine_approx_dim: 16 -> 32"):
        other.fit(X, y, resume=tmp_path / "m.npz")


def test_cli_train_flags(tmp_path):
    from ctre_sparse.cli import build_parser
    from ctre_sparse.cli.train import _estimator

    parser = build_parser()
    args = parser.parse_args(["train", "--cosine-approx-dim", "64",
                              "--cosine-approx-oversample", "2"])
    clf = _estimator(args, tmp_path)
    assert (clf.cosine_approx_dim, clf.cosine_approx_oversample) == (64, 2)
    clf = _estimator(parser.parse_args(["train"]), tmp_path)
    assert (clf.cosine_approx_dim, clf.cosine_approx_oversample) == (None, 4)


def test_bench_training_flag_recorded_and_reported():
    import argparse

    from benchmarks import training as tb

    parser = tb.add_arguments(argparse.ArgumentParser())
    config = tb.config_from_args(parser.parse_args(["--cosine-approx-dim", "32"]))
    assert (config.cosine_approx_dim, config.cosine_approx_oversample) == (32, 4)
    assert tb.config_from_args(parser.parse_args([])).cosine_approx_dim is None
    config = tb.TrainingBenchConfig(hidden=(16,), samples=200, batch=32, epochs=1,
                                    cosine_samples=64, threads=1, warmup=False, peer=False,
                                    cosine_approx_dim=32)
    rec = tb.run_training_bench(config)[0]
    assert rec["cosine_approx_dim"] == 32 and rec["cosine_approx_oversample"] == 4
    assert "sketched (dim 32, oversample 4)" in tb.format_record(rec)
    rec = dict(rec, cosine_approx_dim=None)
    assert "sketched" not in tb.format_record(rec)
