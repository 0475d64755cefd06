"""Save/load (.npz without pickle), checkpoints, and bit-identical resume."""

import json
import os

import numpy as np
import pytest

from ctre_sparse import CTREClassifier
from ctre_sparse import persistence
from ctre_sparse.persistence import atomic_savez, decode_state, encode_state, read_state


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200, n_features=12, n_informative=6, n_classes=3,
                               random_state=0)
    return X.astype(np.float32), y


def make(**kw):
    params = dict(hidden_layer_sizes=(20, 12), epsilon=3, max_epochs=3, learning_rate=0.05,
                  batch_size=25, random_state=7, growth="ctre_sim")
    params.update(kw)
    return CTREClassifier(**params)


def assert_same_model(a, b):
    assert a.n_iter_ == b.n_iter_
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca.indptr, cb.indptr)
        np.testing.assert_array_equal(ca.indices, cb.indices)
        np.testing.assert_array_equal(ca.data, cb.data)       # exact, bit for bit
    for ia, ib in zip(a.intercepts_, b.intercepts_):
        np.testing.assert_array_equal(ia, ib)


def test_save_load_roundtrip(data, tmp_path):
    X, y = data
    clf = make().fit(X, y)
    path = clf.save(tmp_path / "model.npz")
    back = CTREClassifier.load(path)
    assert_same_model(clf, back)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.get_params() == clf.get_params()
    assert back.history_ == json.loads(json.dumps(clf.history_))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert back.n_features_in_ == 12


def test_file_is_documented_npz_without_pickle(data, tmp_path):
    X, y = data
    clf = make().fit(X, y)
    clf.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert str(z["format"]) == "ctre_sparse.CTREClassifier"
        assert int(z["format_version"]) == 1
        meta = json.loads(str(z["meta_json"]))
        assert meta["params"]["hidden_layer_sizes"] == [20, 12]
        assert meta["params"]["dtype"] == "float32" and meta["n_iter"] == 3
        history = json.loads(str(z["history_json"]))
        assert len(history) == 3
        for i, W in enumerate(clf.coefs_):
            shape = tuple(z[f"layers/{i}/shape"])
            assert shape == W.T.shape                       # stored (n_out, n_in)
            import scipy.sparse as sp
            stored = sp.csr_matrix((z[f"layers/{i}/data"], z[f"layers/{i}/indices"],
                                    z[f"layers/{i}/indptr"]), shape=shape)
            assert (stored.T != W).nnz == 0
            np.testing.assert_array_equal(z[f"layers/{i}/bias"], clf.intercepts_[i])
        state = json.loads(str(z["state_json"]))
        assert "optimizer" in state and "rng" in state and "updater" in state


def test_string_classes_roundtrip(data, tmp_path):
    X, y = data
    labels = np.array(["a", "b", "c"], dtype=object)[y]
    clf = make(max_epochs=1).fit(X, labels)
    clf.save(tmp_path / "s.npz")
    back = CTREClassifier.load(tmp_path / "s.npz")
    assert list(back.predict(X[:10])) == list(clf.predict(X[:10]))


def test_resume_after_interrupt_is_identical(data, tmp_path):
    X, y = data
    straight = make(max_epochs=6).fit(X, y)

    def interrupt(est, record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make(max_epochs=6, checkpoint_dir=tmp_path).fit(X, y, callbacks=[interrupt])
    assert CTREClassifier.load(tmp_path / "checkpoint.npz").n_iter_ == 3
    resumed = make(max_epochs=6, checkpoint_dir=tmp_path).fit(X, y, resume=True)
    assert_same_model(straight, resumed)
    assert [r["train_loss"] for r in resumed.history_] == \
        [r["train_loss"] for r in straight.history_]
    assert resumed.history_[-1]["val_accuracy"] == straight.history_[-1]["val_accuracy"]


def test_resume_from_path_with_larger_max_epochs(data, tmp_path):
    """Identical to a straight run with a constant learning rate; the decaying schedule of
    the default preset is laid over max_epochs, so a longer run differs from its start."""
    X, y = data
    kw = dict(growth="ctre_seq", patience=1, lr_schedule="constant")
    straight = make(max_epochs=5, **kw).fit(X, y)
    make(max_epochs=2, checkpoint_dir=tmp_path, **kw).fit(X, y)
    resumed = make(max_epochs=5, **kw).fit(X, y, resume=tmp_path / "checkpoint.npz")
    assert_same_model(straight, resumed)


def test_checkpoint_every(data, tmp_path):
    X, y = data
    epochs_written = []

    def watch(est, record):
        path = tmp_path / "checkpoint.npz"
        epochs_written.append(CTREClassifier.load(path).n_iter_ if path.exists() else None)

    make(max_epochs=5, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X, y, callbacks=[watch])
    assert epochs_written == [None, 2, 2, 4, 5]       # every 2 epochs and at the end


def test_partial_fit_checkpoints_every_n_epochs(data, tmp_path):
    X, y = data
    clf = make(checkpoint_dir=tmp_path, checkpoint_every=2)
    written = []
    for _ in range(5):
        clf.partial_fit(X, y, classes=np.unique(y))
        path = tmp_path / "checkpoint.npz"
        written.append(CTREClassifier.load(path).n_iter_ if path.exists() else None)
    assert written == [None, 2, 2, 4, 4]


def test_checkpoint_written_when_a_callback_stops(data, tmp_path):
    X, y = data
    calls = []

    def stop(est, record):
        return record["epoch"] == 3

    def count(est, record):
        calls.append(record["epoch"])

    make(max_epochs=8, checkpoint_dir=tmp_path, checkpoint_every=5).fit(
        X, y, callbacks=[stop, count])
    assert calls == [1, 2, 3]                          # every callback runs, then stop
    assert CTREClassifier.load(tmp_path / "checkpoint.npz").n_iter_ == 3


def test_load_then_partial_fit_continues_identically(data, tmp_path):
    X, y = data
    a = make()
    for _ in range(4):
        a.partial_fit(X, y, classes=np.unique(y))
    b = make()
    for _ in range(2):
        b.partial_fit(X, y, classes=np.unique(y))
    b.save(tmp_path / "half.npz")
    c = CTREClassifier.load(tmp_path / "half.npz")
    for _ in range(2):
        c.partial_fit(X, y)
    assert_same_model(a, c)


def test_resume_refuses_other_data_or_params(data, tmp_path):
    X, y = data
    make(checkpoint_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="fingerprint"):
        make(max_epochs=4, checkpoint_dir=tmp_path).fit(X * 2, y, resume=True)
    with pytest.raises(ValueError, match="zeta"):
        make(max_epochs=4, zeta=0.3, checkpoint_dir=tmp_path).fit(X, y, resume=True)
    with pytest.raises(ValueError, match="features"):
        make(max_epochs=4, checkpoint_dir=tmp_path).fit(X[:, :5], y, resume=True)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        make().fit(X, y, resume=True)


def test_resume_without_checkpoint_starts_fresh(data, tmp_path):
    X, y = data
    fresh = make(checkpoint_dir=tmp_path / "new").fit(X, y, resume=True)
    assert_same_model(fresh, make().fit(X, y))


def test_pickle_roundtrip(data):
    import pickle

    X, y = data
    clf = make().fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_read_state_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        read_state(tmp_path / "nothing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a ctre_sparse model"):
        CTREClassifier.load(tmp_path / "other.npz")
    np.savez(tmp_path / "future.npz", format=np.array(persistence.FORMAT),
             format_version=np.array(99))
    with pytest.raises(ValueError, match="newer"):
        read_state(tmp_path / "future.npz")


def test_state_encoding_roundtrip():
    tree = {"a": np.arange(4, dtype=np.int32), "big": 2**100 + 3, "none": None,
            "nan": float("nan"), "t": (1, "x", [np.ones(2)]), 3: "int key",
            "nested": {"__odd": np.float32(1.5), "flag": True}}
    arrays = {}
    text = encode_state(tree, arrays)
    back = decode_state(text, arrays)
    assert back["big"] == 2**100 + 3 and back["none"] is None and np.isnan(back["nan"])
    assert back[3] == "int key" and back["nested"]["__odd"] == 1.5
    assert isinstance(back["t"], tuple) and back["t"][1] == "x"
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["a"].dtype == np.int32
    with pytest.raises(ValueError, match="cannot save"):
        encode_state({"f": lambda: 0}, {})
    with pytest.raises(ValueError, match="object array"):
        encode_state({"o": np.array([None, 1], dtype=object)}, {})


def test_state_encoding_reuses_known_arrays():
    w = np.arange(5.0)
    arrays = {"layers/0/data": w}
    text = encode_state({"copy": w.copy(), "other": w + 1}, arrays,
                        known=[("layers/0/data", w)])
    assert json.loads(text)["copy"] == {"__array__": "layers/0/data"}
    assert len(arrays) == 2


def test_state_dict_file_roundtrip(tmp_path):
    """persistence alone: a state dict to a file and back, shared arrays stored once."""
    w = np.arange(6, dtype=np.float32)
    state = {"meta": {"n": 1, "name": "x"}, "history": [{"epoch": 1}],
             "arrays": {"classes": np.array(["a", "b"]), "layers/0/data": w},
             "tree": {"model": {"w": w.copy()}, "rng": (2**70, None)}}
    path = persistence.write_state(tmp_path / "s.npz", state)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["classes", "format", "format_version", "history_json",
                                     "layers/0/data", "meta_json", "state_json"]
    back = persistence.read_state(path)
    assert back["meta"] == state["meta"] and back["history"] == state["history"]
    assert sorted(back["arrays"]) == ["classes", "layers/0/data"]
    np.testing.assert_array_equal(back["tree"]["model"]["w"], w)
    assert back["tree"]["rng"] == (2**70, None)
    with pytest.raises(ValueError, match="reserved by the file format"):
        persistence.state_to_members(dict(state, arrays={"meta_json": w}))
    with pytest.raises(ValueError, match="missing \\['tree'\\]"):
        persistence.state_to_members({k: v for k, v in state.items() if k != "tree"})


def test_estimator_state_is_what_the_file_holds(data, tmp_path):
    X, y = data
    clf = make(max_epochs=2).fit(X, y)
    state = clf._get_state()
    assert sorted(state) == sorted(persistence.STATE_KEYS)
    back = persistence.read_state(clf.save(tmp_path / "m.npz"))
    assert back["meta"] == json.loads(json.dumps(state["meta"]))
    for name, arr in state["arrays"].items():
        np.testing.assert_array_equal(back["arrays"][name], arr)


class _Explodes:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("boom while writing")


def test_atomic_write_keeps_previous_file(tmp_path):
    path = tmp_path / "f.npz"
    atomic_savez(path, {"x": np.arange(3)})
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        atomic_savez(path, {"x": np.arange(4), "y": _Explodes()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]


def test_orphaned_temp_files_are_removed_at_the_next_save(tmp_path):
    # a save killed half-way (kill -9) leaves its temp file; the next save in that folder
    # removes it, but never the temp file of a process that is still alive
    import subprocess
    import sys

    from ctre_sparse import persistence

    target = tmp_path / "checkpoint.npz"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".checkpoint.npz.{dead.pid}.abc123.tmp"
    orphan.write_bytes(b"x" * 1000)
    alive = tmp_path / f".checkpoint.npz.{os.getpid()}.def456.tmp"
    alive.write_bytes(b"y")
    other = tmp_path / f".model.npz.{dead.pid}.ghi789.tmp"     # another file's save: not ours
    other.write_bytes(b"z")
    persistence.atomic_savez(target, {"a": np.arange(3)})
    assert not orphan.exists()
    assert alive.exists() and other.exists()
    assert np.load(target)["a"].tolist() == [0, 1, 2]


def test_saved_bit_generator_name_is_not_looked_up_in_numpy():
    from ctre_sparse.training import _restored_generator

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="bit generator 'seed'"):
        _restored_generator(rng, {"bit_generator": "seed", "state": {}})
    with pytest.raises(ValueError, match="malformed"):
        _restored_generator(rng, {"bit_generator": "PCG64", "state": {"state": "x"}})
    other = np.random.Generator(np.random.Philox(3))
    again = _restored_generator(rng, other.bit_generator.state)
    assert again.integers(1 << 30) == other.integers(1 << 30)


@pytest.mark.parametrize("kw", [
    dict(preset="paper", growth="rigl"),
    dict(init="he", grow_init="zeros", lr_schedule="cosine", warmup_epochs=1, learning_rate=None),
])
def test_preset_parameters_roundtrip_and_continue_identically(data, tmp_path, kw):
    X, y = data
    a = make(**kw)
    for _ in range(3):
        a.partial_fit(X, y, classes=np.unique(y))
    b = make(**kw)
    b.partial_fit(X, y, classes=np.unique(y))
    c = CTREClassifier.load(b.save(tmp_path / "preset.npz"))
    assert c.get_params() == b.get_params()
    assert c._trainer.updater.grow_init == b._trainer.updater.grow_init
    for _ in range(2):
        c.partial_fit(X, y)
    assert_same_model(a, c)
    assert [r["learning_rate"] for r in c.history_] == [r["learning_rate"] for r in a.history_]


def test_files_from_before_the_presets_load_in_the_authors_regime(data, tmp_path):
    """A file without ``preset`` trained with the dense He init, He regrowth and its saved
    constant learning rate: it loads as preset="paper" and continues so."""
    X, y = data
    clf = make(preset="paper").fit(X, y)
    path = clf.save(tmp_path / "new.npz")
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    meta = json.loads(str(members["meta_json"]))
    for name in ("preset", "init", "grow_init", "lr_schedule", "warmup_epochs"):
        del meta["params"][name]
    meta["params"]["weight_decay"] = 1e-4  # what every file from before the presets holds
    meta["params"]["dropout"] = 0.0
    tree = json.loads(str(members["state_json"]))
    del tree["updater"]["grow_init"]
    members["meta_json"] = np.array(json.dumps(meta))
    members["state_json"] = np.array(json.dumps(tree))
    np.savez(tmp_path / "old.npz", **members)
    old = CTREClassifier.load(tmp_path / "old.npz")
    assert old.preset == "paper" and old.init is None and old._trainer.updater.grow_init == "he"
    assert old.weight_decay == old._trainer.optimizer.weight_decay == 1e-4
    assert old.dropout == old._trainer.model.dropout == 0.0
    assert_same_model(clf, old)
