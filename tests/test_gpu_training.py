"""Training on the GPU: the device path of the model, optimizer, topology and trainer.

Two halves. The tests marked ``gpu`` run only where the CUDA backend is
available (``GPU_BACKENDS`` of the test grid is non-empty); they compare GPU
training with CPU training from the same seed, check that the state stays on
the device, that a GPU checkpoint loads on the CPU, and that a batch does no
host synchronisation. The others run everywhere: the clear error without a
GPU, and the array-module agnostic code paths exercised with a stand-in
module that computes with NumPy, which must reproduce the CPU run exactly.
"""

import pickle
import re

import numpy as np
import pytest
from conftest import GPU_BACKENDS
from sklearn.datasets import make_classification

from ctre_sparse import CTREClassifier
from ctre_sparse.backends import backend_status
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater
from ctre_sparse.training import Trainer, TrainingDivergedError

HAVE_GPU = bool(GPU_BACKENDS)
gpu = pytest.mark.skipif(not HAVE_GPU, reason="no CUDA device/CuPy here: "
                         f"{backend_status()['cuda']}")
no_gpu = pytest.mark.skipif(HAVE_GPU, reason="checks the error raised without a GPU")


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=600, n_features=20, n_informative=10, n_redundant=2,
                               n_classes=3, class_sep=1.5, random_state=0)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    return X, y.astype(np.int64)


def _trainer(growth="ctre_sim", dtype=np.float32, dropout=0.0, lr=0.05, backend="auto", seed=0,
             prune="magnitude"):
    model = SparseMLP([20, 48, 48, 3], "relu", epsilon=4, dropout=dropout, dtype=dtype,
                      backend=backend, random_state=seed)
    updater = TopologyUpdater(0.3, growth, cosine_samples=200, backend=backend, prune=prune)
    return Trainer(model, SGD(lr), updater, batch_size=32, random_state=seed + 1)


def _fm(X, dtype=np.float32):
    """Feature-major F-ordered view, as the estimator passes it."""
    return np.ascontiguousarray(X, dtype=dtype).T


def _strip_time(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "topology_seconds")}
            for r in records]


def _host_layers(model):
    return [(np.asarray(_get(l.W.indptr)), np.asarray(_get(l.W.indices)),
             np.asarray(_get(l.W.data)), np.asarray(_get(l.b))) for l in model.layers]


def _get(arr):
    return arr.get() if type(arr).__module__.startswith("cupy") else arr


# ------------------------------------------------------------ without a GPU
@no_gpu
def test_cuda_device_without_gpu_is_a_clear_error(data):
    X, y = data
    reason = backend_status()["cuda"]
    clf = CTREClassifier(hidden_layer_sizes=(8,), max_epochs=1, device="cuda", random_state=0)
    with pytest.raises(ValueError, match=r"device='cuda'.*" + re.escape(reason)):
        clf.fit(X, y)
    model = SparseMLP([4, 3], epsilon=1, random_state=0)
    with pytest.raises(ValueError, match=re.escape(reason)):
        model.to_device("cuda")
    assert model.device == "cpu" and isinstance(model.layers[0].W.data, np.ndarray)


def test_cuda_device_with_a_cpu_backend_is_rejected(data):
    X, y = data
    clf = CTREClassifier(hidden_layer_sizes=(8,), max_epochs=1, device="cuda",
                         backend="reference", random_state=0)
    with pytest.raises(ValueError, match="backend 'auto' or 'cuda'"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="device must be"):
        SparseMLP([4, 3], epsilon=1, random_state=0).to_device("tpu")


def _fake_device(trainer):
    """Put the trainer on a stand-in array module that is not ``numpy`` but computes with it.

    Whatever the device module answers for a non-NumPy array module (data
    cache, loss kept as an array, generic moves) then runs on the CPU; only
    what needs CuPy itself (the dropout generator, ``to_device``) is left out.
    The kernels follow the arrays, which are NumPy's.
    """
    import types

    from ctre_sparse.nn.mlp import ForwardBuffers

    fake = types.ModuleType("fake_xp")
    fake.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    fake.cuda = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(
        synchronize=lambda: None))
    model, opt = trainer.model, trainer.optimizer
    opt._init_state(model)
    model.xp, opt.xp = fake, fake
    model._buffers = ForwardBuffers(fake, model.dtype)
    for layer in model.layers:
        layer.xp = fake
    for act in model.hidden_activations:
        act.xp = fake
    return trainer


@pytest.mark.parametrize("layout", ["F", "C"])
@pytest.mark.parametrize("growth", ["random", "ctre_sim", "cosine"])
def test_fake_device_runs_like_the_cpu(data, growth, layout):
    X, y = data
    Xfm = _fm(X) if layout == "F" else np.ascontiguousarray(X.T)
    cpu, dev = _trainer(growth), _fake_device(_trainer(growth))
    args = (Xfm[:, :500], y[:500], Xfm[:, 500:], y[500:])
    rec_cpu, rec_dev = cpu.fit(*args, epochs=3), dev.fit(*args, epochs=3)
    assert _strip_time(rec_dev) == _strip_time(rec_cpu)
    assert len(dev._device_data) == 2        # train and validation sets, cached once
    for a, b in zip(_host_layers(cpu.model), _host_layers(dev.model)):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert cpu.rng.bit_generator.state == dev.rng.bit_generator.state


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN on purpose
def test_divergence_is_reported_at_the_end_of_the_epoch(data):
    X, y = data
    trainer = _fake_device(_trainer("random", lr=1e6))
    with pytest.raises(TrainingDivergedError, match=r"loss is (nan|inf) at batch \d+"):
        trainer.fit(_fm(X), y, epochs=3)


def test_to_device_cpu_is_a_no_op_and_state_dicts_are_numpy(data):
    X, y = data
    trainer = _trainer("ctre_sim")
    trainer.fit(_fm(X), y, epochs=2)
    before = _host_layers(trainer.model)
    assert trainer.to_device("cpu") is trainer
    for a, b in zip(before, _host_layers(trainer.model)):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    state = trainer.state_dict()
    arrays = [v for v in state["model"].values() if hasattr(v, "dtype")]
    arrays += [v for v in state["optimizer"].values() if hasattr(v, "dtype")]
    assert arrays and all(type(a) is np.ndarray for a in arrays)


def test_pickled_model_and_optimizer_keep_their_array_module(data):
    X, y = data
    trainer = _trainer("random")
    trainer.fit(_fm(X), y, epochs=1)
    model, opt = pickle.loads(pickle.dumps((trainer.model, trainer.optimizer)))
    assert {model.xp.__name__, opt.xp.__name__, model.layers[0].xp.__name__} == {"numpy"}
    P = model.predict_proba(_fm(X[:5]))
    np.testing.assert_array_equal(P, trainer.model.predict_proba(_fm(X[:5])))


def test_model_saved_with_device_cuda_loads_on_the_cpu(data, tmp_path):
    """A file whose params say device='cuda' (as written by a GPU fit) opens on the CPU."""
    X, y = data
    clf = CTREClassifier(hidden_layer_sizes=(16,), epsilon=4, max_epochs=2, random_state=0)
    clf.fit(X, y)
    clf.set_params(device="cuda")         # the saved params now say cuda, as a GPU fit's do
    clf.save(tmp_path / "m.npz")
    back = CTREClassifier.load(tmp_path / "m.npz", device="cpu")
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    if not HAVE_GPU:                      # no device given: falls back to the CPU, logged
        implicit = CTREClassifier.load(tmp_path / "m.npz")
        assert implicit.device == "cpu"
        np.testing.assert_array_equal(implicit.predict(X), clf.predict(X))


# ------------------------------------------------------------ on a GPU
def _cupy():
    import cupy

    return cupy


@gpu
@pytest.mark.parametrize("growth", ["random", "ctre_sim", "static"])
@pytest.mark.parametrize("prune", ["magnitude", "activity"])
def test_gpu_training_matches_cpu_float64(data, growth, prune):
    """float64: rounding differences stay ~1e-12, so no tie flips: the same topology."""
    X, y = data
    cpu = _trainer(growth, dtype=np.float64, prune=prune)
    gpu_ = _trainer(growth, dtype=np.float64, prune=prune).to_device("cuda")
    args = (_fm(X[:500], np.float64), y[:500], _fm(X[500:], np.float64), y[500:])
    rec_cpu, rec_gpu = cpu.fit(*args, epochs=4), gpu_.fit(*args, epochs=4)
    for rc, rg in zip(rec_cpu, rec_gpu):
        assert rg["train_loss"] == pytest.approx(rc["train_loss"], rel=1e-9)
        assert rg["train_accuracy"] == rc["train_accuracy"]
        assert (rg["n_cosine"], rg["n_random"]) == (rc["n_cosine"], rc["n_random"])
    for a, b in zip(_host_layers(cpu.model), _host_layers(gpu_.model)):
        np.testing.assert_array_equal(a[0], b[0])       # indptr
        np.testing.assert_array_equal(a[1], b[1])       # indices
        np.testing.assert_allclose(b[2], a[2], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(b[3], a[3], rtol=1e-8, atol=1e-10)


@gpu
@pytest.mark.parametrize("growth", ["random", "ctre_sim"])
def test_gpu_training_close_to_cpu_float32(data, growth):
    """float32: trajectories drift by rounding; a prune tie may flip, so the topologies are
    compared as overlap, the losses with a float32 tolerance (bounds not yet tuned on a GPU)."""
    X, y = data
    cpu, gpu_ = _trainer(growth), _trainer(growth).to_device("cuda")
    args = (_fm(X[:500]), y[:500], _fm(X[500:]), y[500:])
    rec_cpu, rec_gpu = cpu.fit(*args, epochs=4), gpu_.fit(*args, epochs=4)
    for rc, rg in zip(rec_cpu, rec_gpu):
        assert rg["train_loss"] == pytest.approx(rc["train_loss"], rel=5e-3)
        assert abs(rg["val_accuracy"] - rc["val_accuracy"]) <= 0.03
    for a, b in zip(_host_layers(cpu.model), _host_layers(gpu_.model)):
        rows_a = np.repeat(np.arange(a[0].shape[0] - 1), np.diff(a[0]))
        rows_b = np.repeat(np.arange(b[0].shape[0] - 1), np.diff(b[0]))
        n_in = int(max(a[1].max(), b[1].max())) + 1
        keys_a, keys_b = rows_a * n_in + a[1], rows_b * n_in + b[1]
        assert np.intersect1d(keys_a, keys_b).shape[0] >= 0.97 * keys_a.shape[0]


@gpu
def test_gpu_fit_keeps_the_state_on_the_device(data):
    cp = _cupy()
    X, y = data
    cached = []          # during fit: the device copies of the training and validation data

    def look(est, record):
        cached.append([type(a) for entry in est._trainer._device_data.values()
                       for a in entry[2:]])

    clf = CTREClassifier(hidden_layer_sizes=(32, 32), epsilon=4, max_epochs=3, device="cuda",
                         learning_rate=0.05, random_state=0).fit(X, y, callbacks=[look])
    assert len(cached) == 3 and all(types == [cp.ndarray] * 4 for types in cached)
    assert clf._trainer._device_data == {}       # released after fit
    trainer = clf._trainer
    for layer in trainer.model.layers:
        for arr in (layer.W.data, layer.W.indices, layer.W.indptr, layer.b, layer.grad_W):
            assert isinstance(arr, cp.ndarray)
    for v in trainer.optimizer.velocity_W + trainer.optimizer.velocity_b:
        assert isinstance(v, cp.ndarray)
    assert clf.score(X, y) > 0.7
    assert all(isinstance(c.data, np.ndarray) for c in clf.coefs_)


@gpu
def test_gpu_batch_does_not_synchronize(data):
    cp = _cupy()
    import cupyx

    if not hasattr(cupyx, "allow_synchronize"):
        pytest.skip("this CuPy has no cupyx.allow_synchronize")
    X, y = data
    trainer = _trainer("ctre_sim").to_device("cuda")
    Xd, yd = cp.asarray(np.ascontiguousarray(X.T)), cp.asarray(y)
    idx = cp.arange(32)
    for allow in (True, False):        # the first batch builds the cached transposes
        with cupyx.allow_synchronize(allow):
            trainer.model.forward(trainer._batch(Xd, idx), training=True)
            trainer.model.backward(yd[idx])
            trainer.optimizer.step(trainer.model)


@gpu
def test_gpu_checkpoint_loads_on_the_cpu(data, tmp_path):
    X, y = data
    clf = CTREClassifier(hidden_layer_sizes=(32,), epsilon=4, max_epochs=3, device="cuda",
                         checkpoint_dir=tmp_path, random_state=0).fit(X, y)
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as npz:
        assert all(isinstance(npz[k], np.ndarray) for k in npz.files)
    back = CTREClassifier.load(tmp_path / "checkpoint.npz", device="cpu")
    assert isinstance(back._trainer.model.layers[0].W.data, np.ndarray)
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), rtol=1e-4,
                               atol=1e-6)


@gpu
def test_gpu_resume_matches_the_uninterrupted_run(data, tmp_path):
    X, y = data
    kw = dict(hidden_layer_sizes=(32,), epsilon=4, device="cuda", random_state=0)
    full = CTREClassifier(max_epochs=4, **kw).fit(X, y)
    CTREClassifier(max_epochs=2, checkpoint_dir=tmp_path, **kw).fit(X, y)
    resumed = CTREClassifier(max_epochs=4, checkpoint_dir=tmp_path, **kw).fit(X, y, resume=True)
    for a, b in zip(_host_layers(full._trainer.model), _host_layers(resumed._trainer.model)):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


@gpu
def test_gpu_dropout_trains(data):
    X, y = data
    trainer = _trainer("random", dropout=0.2).to_device("cuda")
    records = trainer.fit(_fm(X), y, epochs=3)
    assert np.isfinite(records[-1]["train_loss"])
    assert records[-1]["train_loss"] < records[0]["train_loss"]


@gpu
def test_cli_train_on_the_gpu(tmp_path, capsys):
    from ctre_sparse.cli import main

    code = main(["train", "--epochs", "2", "--hidden", "32", "--epsilon", "5", "--device",
                 "cuda", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    assert (tmp_path / "model.npz").exists()
    assert "test accuracy" in capsys.readouterr().out


@no_gpu
def test_cli_train_device_cuda_without_gpu_says_why(tmp_path, capsys):
    from ctre_sparse.cli import main

    code = main(["train", "--epochs", "1", "--hidden", "8", "--device", "cuda",
                 "--out", str(tmp_path), "--quiet"])
    assert code != 0
    assert backend_status()["cuda"] in capsys.readouterr().err
