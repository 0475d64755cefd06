"""CTREClassifier: learning, learned attributes, growth strategies, input errors,
divergence handling, progress output."""

import numpy as np
import pytest
import scipy.sparse as sp

from ctre_sparse import CTREClassifier
from ctre_sparse.datasets import load_digits
from ctre_sparse.training import TrainingDivergedError


@pytest.fixture(scope="module")
def digits():
    return load_digits().standardized()


@pytest.fixture(scope="module")
def blobs():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=240, n_features=6, centers=3, random_state=0)
    return X.astype(np.float32), y


def small(**kw):
    params = dict(hidden_layer_sizes=(24,), epsilon=4, max_epochs=3, learning_rate=0.05,
                  batch_size=20, random_state=0)
    params.update(kw)
    return CTREClassifier(**params)


def test_learns_digits(digits):
    clf = small(hidden_layer_sizes=(64,), epsilon=8, max_epochs=6, batch_size=50,
                learning_rate=0.1)
    clf.fit(digits.X_train, digits.y_train)
    acc = clf.score(digits.X_test, digits.y_test)
    assert acc > 0.9, acc
    losses = [r["train_loss"] for r in clf.history_]
    assert losses[-1] < 0.5 * losses[0]


def test_learned_attributes(blobs):
    X, y = blobs
    clf = small(hidden_layer_sizes=(16, 8)).fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.history_) == 3
    assert clf.n_features_in_ == 6 and list(clf.classes_) == [0, 1, 2]
    shapes = [c.shape for c in clf.coefs_]
    assert shapes == [(6, 16), (16, 8), (8, 3)]          # MLPClassifier orientation
    assert all(sp.issparse(c) and c.format == "csr" for c in clf.coefs_)
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (3,)]
    assert [c.nnz for c in clf.coefs_] == clf.n_connections_
    record = clf.history_[-1]
    for key in ("epoch", "train_loss", "train_accuracy", "val_accuracy", "seconds",
                "n_cosine", "n_random", "n_connections"):
        assert key in record
    assert record["epoch"] == 3 and record["n_connections"] == sum(clf.n_connections_)
    # feature importances: connections per input / all input-layer connections
    counts = np.diff(clf.coefs_[0].indptr)                # rows of coefs_[0] = inputs
    np.testing.assert_allclose(clf.feature_importances_, counts / counts.sum())
    assert clf.feature_importances_.sum() == pytest.approx(1.0)


def test_predict_proba_consistent(blobs):
    X, y = blobs
    clf = small().fit(X, y)
    P = clf.predict_proba(X)
    assert P.shape == (X.shape[0], 3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[P.argmax(axis=1)])


def test_same_seed_same_model_and_other_seed_differs(blobs):
    X, y = blobs
    a, b, c = small().fit(X, y), small().fit(X, y), small(random_state=1).fit(X, y)
    for ca, cb in zip(a.coefs_, b.coefs_):
        assert (ca != cb).nnz == 0
    assert any((ca != cc).nnz for ca, cc in zip(a.coefs_, c.coefs_))


def test_refit_restarts_from_scratch(blobs):
    X, y = blobs
    clf = small()
    first = clf.fit(X, y).coefs_[0].toarray()
    again = clf.fit(X, y)
    assert again.n_iter_ == 3
    np.testing.assert_array_equal(first, again.coefs_[0].toarray())


def test_string_labels(blobs):
    X, y = blobs
    names = np.array(["cat", "dog", "emu"])[y]
    clf = small().fit(X, names)
    assert set(clf.predict(X)) <= {"cat", "dog", "emu"}
    assert clf.score(X, names) > 0.5


def test_partial_fit_one_epoch_per_call(blobs):
    X, y = blobs
    clf = small()
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y, classes=[0, 1])
    clf = small()
    clf.partial_fit(X[:30], y[:30], classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and list(clf.classes_) == [0, 1, 2]
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 2 and clf.history_[-1]["val_accuracy"] is None
    with pytest.raises(ValueError, match="not seen"):
        clf.partial_fit(X[:5], np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :4], y)


@pytest.mark.parametrize("growth", ["random", "set", "cosine", "ctre_seq", "ctre_sim", "static"])
def test_growth_strategies(blobs, growth):
    X, y = blobs
    clf = small(growth=growth, zeta=0.3).fit(X, y)
    topo = clf.history_[-1]          # epoch 3 starts with the update after epoch 2
    assert topo["n_cosine"] + topo["n_random"] == topo["n_pruned"]
    if growth == "static":
        assert topo["n_pruned"] == 0
        ref = small(growth="static", max_epochs=1).fit(X, y)
        for a, b in zip(clf.coefs_, ref.coefs_):      # same topology as after epoch 1
            np.testing.assert_array_equal(a.indices, b.indices)
    else:
        assert topo["n_pruned"] > 0
        assert sum(clf.n_connections_) == clf.history_[0]["n_connections"]
    if growth in ("random", "set"):
        assert topo["n_cosine"] == 0
    if growth in ("cosine", "ctre_seq"):
        assert topo["n_cosine"] == topo["n_pruned"]


@pytest.mark.parametrize("params, match", [
    (dict(epsilon=0), "epsilon"),
    (dict(epsilon=-1.0), "epsilon"),
    (dict(density=1.5), "density"),
    (dict(density=0.0), "density"),
    (dict(zeta=1.0), "zeta"),
    (dict(zeta=-0.1), "zeta"),
    (dict(growth="magic"), "growth"),
    (dict(activation="swish"), "activation"),
    (dict(learning_rate=0), "learning_rate"),
    (dict(momentum=1.0), "momentum"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_epochs=0), "max_epochs"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(hidden_layer_sizes=(8, 0)), "hidden_layer_sizes"),
    (dict(device="tpu"), "device"),
    (dict(dtype=np.int32), "dtype"),
])
def test_bad_parameters(blobs, params, match):
    X, y = blobs
    with pytest.raises(ValueError, match=match):
        small(**params).fit(X, y)


def test_cuda_device_error_is_clear(blobs):
    from ctre_sparse.nn.mlp import SparseMLP

    if hasattr(SparseMLP, "to_device"):
        pytest.skip("the training core supports devices now")
    X, y = blobs
    with pytest.raises(ValueError, match="device='cuda'"):
        small(device="cuda").fit(X, y)


def test_density_overrides_epsilon(blobs):
    X, y = blobs
    clf = small(density=0.5, hidden_layer_sizes=(10,), max_epochs=1).fit(X, y)
    assert clf.n_connections_[0] == 30            # 0.5 * 6 * 10


def test_bad_input_data(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[3, 2] = np.nan
        small().fit(Xn, y)
    with pytest.raises(ValueError, match="infinity|inf"):
        Xi = X.copy()
        Xi[0, 0] = np.inf
        small().fit(Xi, y)
    with pytest.raises(ValueError, match="class"):
        small().fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="2D array"):
        small().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        small().fit(X, y[:-1])
    clf = small().fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but CTREClassifier is expecting 6"):
        clf.predict(X[:, :5])


def test_unfitted_errors():
    from sklearn.exceptions import NotFittedError

    clf = small()
    with pytest.raises(NotFittedError):
        clf.predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        clf.coefs_
    with pytest.raises(NotFittedError):
        clf.save("/nonexistent/never.npz")


def test_callback_stops_and_sees_records(blobs):
    X, y = blobs
    seen = []

    def stop_after_two(est, record):
        seen.append(record["epoch"])
        return record["epoch"] == 2

    clf = small(max_epochs=5).fit(X, y, callbacks=[stop_after_two])
    assert seen == [1, 2] and clf.n_iter_ == 2


def test_verbose_progress_on_stderr(blobs, capsys):
    X, y = blobs
    small(verbose=1, max_epochs=2).fit(X, y)
    err = capsys.readouterr().err
    assert "epoch 1:" in err and "epoch 2:" in err and "val acc" in err


def _blow_up_after(epoch, snapshot=None):
    def callback(est, record):
        if record["epoch"] == epoch:
            if snapshot is not None:        # the checkpoint as written after this epoch
                snapshot.append((est.checkpoint_dir / "checkpoint.npz").read_bytes())
            est._trainer.optimizer.learning_rate = 1e30   # force divergence next epoch
            est._trainer.optimizer.schedule = None
    return callback


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_raises_and_keeps_last_checkpoint(blobs, tmp_path):
    X, y = blobs
    clf = small(max_epochs=6, checkpoint_dir=tmp_path, checkpoint_every=1)
    snapshot = []
    with pytest.raises(TrainingDivergedError, match=r"epoch 3.*learning rate") as info:
        clf.fit(X, y, callbacks=[_blow_up_after(2, snapshot)])
    assert "checkpoint" in str(info.value)
    ckpt = tmp_path / "checkpoint.npz"
    assert ckpt.read_bytes() == snapshot[0]          # untouched by the diverged epoch
    good = CTREClassifier.load(ckpt)
    assert good.n_iter_ == 2
    assert all(np.isfinite(c.data).all() for c in good.coefs_)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]   # no temp files


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_without_checkpoint(blobs):
    X, y = blobs
    with pytest.raises(TrainingDivergedError, match="learning rate"):
        small(learning_rate=1e30).fit(X * 1e3, y)


def test_finite_explosion_is_divergence(tmp_path):
    # raw, unscaled features with standardize=False: the loss explodes while staying finite;
    # it must stop as TrainingDivergedError before the next topology update, and keep the
    # last good checkpoint (epoch 1) loadable
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    clf = CTREClassifier(hidden_layer_sizes=(64, 64), epsilon=5, standardize=False,
                         learning_rate=0.05, max_epochs=5, growth="cosine", random_state=0,
                         checkpoint_dir=tmp_path, preset="paper")  # dense-fan-in weights
    with pytest.raises(TrainingDivergedError, match=r"epoch 2: the mean loss .* exploding"):
        clf.fit(X * 10, y)
    good = CTREClassifier.load(tmp_path / "checkpoint.npz")
    assert good.n_iter_ == 1 and good.history_[0]["train_loss"] < 1e3


def test_set_params_after_fit_reaches_partial_fit():
    # set_params(learning_rate=...) after fit used to be ignored by partial_fit, yet saved
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    clf = CTREClassifier(hidden_layer_sizes=(16,), epsilon=3, max_epochs=2, learning_rate=0.05,
                         random_state=0).fit(X[:300], y[:300])
    clf.set_params(learning_rate=0.002, zeta=0.1)
    clf.partial_fit(X[:300], y[:300])
    assert clf.history_[-1]["learning_rate"] == pytest.approx(0.002)
    assert clf._get_state()["meta"]["params"]["learning_rate"] == 0.002
    clf.set_params(hidden_layer_sizes=(32,))
    with pytest.raises(ValueError, match=r"partial_fit cannot change \['hidden_layer_sizes'\]"):
        clf.partial_fit(X[:300], y[:300])
