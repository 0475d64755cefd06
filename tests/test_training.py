"""The training loop: learning, determinism, bit-identical resume, divergence, callbacks."""

import copy
import json

import numpy as np
import pytest
from conftest import CPU_BACKENDS
from sklearn.datasets import make_classification

from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater
from ctre_sparse.training import Trainer, TrainingDivergedError

BACKEND = "reference"


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=1200, n_features=30, n_informative=12, n_redundant=4,
                               n_classes=4, class_sep=1.5, random_state=0)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    Xtr, Xva = np.ascontiguousarray(X[:900].T), np.ascontiguousarray(X[900:].T)
    return Xtr, y[:900], Xva, y[900:]


def _trainer(growth="ctre_sim", seed=0, model_seed=0, dropout=0.1, patience=2, lr=0.05,
             backend=BACKEND):
    model = SparseMLP([30, 64, 64, 4], "alternated_left_relu", epsilon=4, dropout=dropout,
                      backend=backend, random_state=model_seed)
    updater = None if growth is None else TopologyUpdater(
        0.3, growth, cosine_samples=64, patience=patience, backend=backend)
    return Trainer(model, SGD(lr), updater, batch_size=32, random_state=seed)


def _strip_time(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "topology_seconds")}
            for r in records]


def _assert_same_model(a, b):
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.W.indptr, lb.W.indptr)
        np.testing.assert_array_equal(la.W.indices, lb.W.indices)
        np.testing.assert_array_equal(la.W.data, lb.W.data)
        np.testing.assert_array_equal(la.b, lb.b)


@pytest.mark.parametrize("growth", ["random", "ctre_sim"])
def test_small_model_learns(data, growth):
    Xtr, ytr, Xva, yva = data
    trainer = _trainer(growth)
    records = trainer.fit(Xtr, ytr, Xva, yva, epochs=8)
    assert len(records) == 8 and trainer.epoch == 8
    assert records[-1]["val_accuracy"] > 0.7  # chance is 0.25
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[0]["n_pruned"] == 0  # no update before the first epoch
    n0 = records[0]["n_connections"]
    for r in records[1:]:
        assert r["n_pruned"] > 0 and r["n_pruned"] == r["n_cosine"] + r["n_random"]
        assert r["n_connections"] == n0
        assert 0 <= r["topology_seconds"] <= r["seconds"]
    if growth == "random":
        assert all(r["n_cosine"] == 0 for r in records)
    else:
        assert sum(r["n_cosine"] for r in records) > 0


def test_same_seed_same_result(data):
    Xtr, ytr, Xva, yva = data
    a, b = _trainer("ctre_seq", patience=1), _trainer("ctre_seq", patience=1)
    ra = a.fit(Xtr, ytr, Xva, yva, epochs=3)
    rb = b.fit(Xtr, ytr, Xva, yva, epochs=3)
    assert _strip_time(ra) == _strip_time(rb)
    _assert_same_model(a.model, b.model)
    c = _trainer("ctre_seq", seed=1, patience=1)
    c.fit(Xtr, ytr, Xva, yva, epochs=3)
    assert not np.array_equal(a.model.layers[0].W.data, c.model.layers[0].W.data)


@pytest.mark.parametrize("growth,backend", [("ctre_seq", BACKEND), ("ctre_sim", BACKEND),
                                            (None, BACKEND), ("ctre_sim", "auto")])
def test_resume_is_bit_identical(data, growth, backend):
    Xtr, ytr, Xva, yva = data
    full = _trainer(growth, patience=1, backend=backend)
    full.fit(Xtr, ytr, Xva, yva, epochs=4)

    first = _trainer(growth, patience=1, backend=backend)
    first.fit(Xtr, ytr, Xva, yva, epochs=2)
    state = copy.deepcopy(first.state_dict())
    json.dumps({k: v for k, v in state.items() if k not in ("model", "optimizer")})
    del first
    resumed = _trainer(growth, seed=123, model_seed=456, patience=9, lr=1.0, backend=backend)
    resumed.load_state_dict(state)
    assert resumed.epoch == 2
    resumed.fit(Xtr, ytr, Xva, yva, epochs=4)

    assert _strip_time(resumed.history) == _strip_time(full.history)
    _assert_same_model(resumed.model, full.model)
    for va, vb in zip(resumed.optimizer.velocity_W, full.optimizer.velocity_W):
        np.testing.assert_array_equal(va, vb)
    assert resumed.rng.bit_generator.state == full.rng.bit_generator.state
    if growth is not None:
        assert resumed.updater.state_dict() == full.updater.state_dict()


def test_sample_major_memory_gives_the_same_run(data):
    Xtr, ytr, Xva, yva = data
    a, b = _trainer("ctre_sim"), _trainer("ctre_sim")
    ra = a.fit(Xtr, ytr, Xva, yva, epochs=2)
    X_sm, Xva_sm = np.ascontiguousarray(Xtr.T), np.ascontiguousarray(Xva.T)
    rb = b.fit(X_sm.T, ytr, Xva_sm.T, yva, epochs=2)  # F-ordered views, no copy
    assert _strip_time(ra) == _strip_time(rb)
    _assert_same_model(a.model, b.model)


def test_divergence_raises(data):
    Xtr, ytr, _, _ = data
    trainer = _trainer("random", lr=1e6, dropout=0.0)
    with pytest.raises(TrainingDivergedError, match="diverged.*learning rate"):
        trainer.fit(Xtr * 1e3, ytr, epochs=3)


def test_callbacks_can_stop(data):
    Xtr, ytr, _, _ = data
    seen = []

    class StopAfterTwo:
        def on_epoch_end(self, trainer, record):
            seen.append(record["epoch"])
            if record["epoch"] == 2:
                trainer.stop = True

    trainer = _trainer("random")
    trainer.callbacks = [StopAfterTwo(), lambda tr, rec: seen.append(-rec["epoch"])]
    records = trainer.fit(Xtr, ytr, epochs=10)
    assert len(records) == 2 and seen == [1, -1, 2, -2]
    assert records[-1]["val_accuracy"] is None


def test_bad_labels_rejected(data):
    Xtr, ytr, _, _ = data
    trainer = _trainer("random")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        trainer.run_epoch(Xtr, ytr + 4)
    with pytest.raises(ValueError, match="integer codes"):
        trainer.run_epoch(Xtr, ytr[:10])
    with pytest.raises(ValueError, match="feature-major"):
        trainer.run_epoch(Xtr.T, ytr)
    with pytest.raises(ValueError, match="no samples"):
        trainer.run_epoch(Xtr[:, :0], ytr[:0])


# ------------------------------------------------------------------ the reference oracle
def _float64_trainer(backend):
    model = SparseMLP([30, 48, 48, 4], "alternated_left_relu", epsilon=4, dropout=0.1,
                      dtype=np.float64, backend=backend, random_state=3)
    updater = TopologyUpdater(0.3, "ctre_sim", cosine_samples=128, backend=backend)
    return Trainer(model, SGD(0.05, backend=backend), updater, batch_size=32, random_state=4)


@pytest.mark.parametrize("fast", [b for b in CPU_BACKENDS if b != "reference"])
def test_reference_backend_trains_like_the_compiled_ones(data, monkeypatch, fast):
    """The whole training step (gather, products, bias + activation, backward, SGD, topology)
    on backend="reference" agrees with the compiled backend's run.

    float64, 3 epochs: the products differ only in summation order (~1e-15 relative), which
    never flips a prune tie or a top-k pick here, so the topologies are identical and
    losses and weights agree to 1e-9 relative. The reference run goes with the compiled
    backends unregistered and "auto" refused: it cannot have used a compiled kernel.
    """
    Xtr, ytr, Xva, yva = data
    args = (Xtr.astype(np.float64), ytr, Xva.astype(np.float64), yva)
    fast_run = _float64_trainer(fast)
    rec_fast = fast_run.fit(*args, epochs=3)

    import ctre_sparse.backends as backends

    for name in ("numba", "native", "cuda"):
        monkeypatch.setitem(backends._loaded, name, (None, "switched off for this test"))

    def no_auto():
        raise AssertionError("backend='auto' was used during a reference run")

    monkeypatch.setattr(backends, "_best_cpu", no_auto)
    ref_run = _float64_trainer("reference")
    rec_ref = ref_run.fit(*args, epochs=3)
    for rf, rr in zip(rec_fast, rec_ref):
        assert rr["train_loss"] == pytest.approx(rf["train_loss"], rel=1e-9)
        assert (rr["train_accuracy"], rr["val_accuracy"]) == (rf["train_accuracy"],
                                                              rf["val_accuracy"])
        assert (rr["n_cosine"], rr["n_random"]) == (rf["n_cosine"], rf["n_random"])
    for lf, lr_ in zip(fast_run.model.layers, ref_run.model.layers):
        np.testing.assert_array_equal(lf.W.indptr, lr_.W.indptr)
        np.testing.assert_array_equal(lf.W.indices, lr_.W.indices)
        np.testing.assert_allclose(lr_.W.data, lf.W.data, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(lr_.b, lf.b, rtol=1e-9, atol=1e-12)
