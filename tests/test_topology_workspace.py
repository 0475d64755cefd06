"""TopologyUpdater's activation pass: its own forward buffers, same results as before."""

import pickle

import numpy as np
import pytest

from conftest import CPU_BACKENDS
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater


def _setup(backend, seed=0, sizes=(30, 40, 35, 5), n=700, batch=16):
    rng = np.random.default_rng(seed)
    model = SparseMLP(list(sizes), density=0.3, backend=backend, random_state=seed)
    opt = SGD(0.05, momentum=0.9)
    X = rng.standard_normal((sizes[0], n)).astype(np.float32)
    y = rng.integers(0, sizes[-1], n)
    return model, opt, X, y, batch


def _train_steps(model, opt, X, y, batch, steps=3):
    for s in range(steps):
        cols = slice(s * batch, (s + 1) * batch)
        model.forward(np.ascontiguousarray(X[:, cols]), training=True)
        model.backward(y[cols])
        opt.step(model)


def _plain_activations(self, model, X):
    """The behaviour before the updater had buffers of its own."""
    return model.activations(X)


def _snapshot(model, opt):
    return [(layer.W.indptr.copy(), layer.W.indices.copy(), layer.W.data.copy(), layer.b.copy(),
             opt.velocity_W[i].copy()) for i, layer in enumerate(model.layers)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("growth", ["cosine", "ctre_sim"])
def test_same_topology_as_the_plain_activation_pass(backend, growth, monkeypatch):
    """Bit-identical weights, pattern and momentum after training + updates, both ways.

    500 cosine samples go as 1 chunk here; the plain pass (chunks of 1024) as
    well, so the chunking of 2,500 samples is covered by the next test.
    """
    runs = []
    for plain in (False, True):
        with monkeypatch.context() as m:
            if plain:
                m.setattr(TopologyUpdater, "_activations", _plain_activations)
            model, opt, X, y, batch = _setup(backend)
            upd = TopologyUpdater(0.3, growth, cosine_samples=500, backend=backend)
            rng = np.random.default_rng(7)
            for _ in range(3):
                _train_steps(model, opt, X, y, batch)
                upd.update(model, X, optimizer=opt, rng=rng)
            runs.append(_snapshot(model, opt))
    for a, b in zip(*runs):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_equal_chunks_give_the_same_activations(backend, monkeypatch):
    """2,500 samples: 3 chunks of 834/833 here, 1024 + 1024 + 452 before; same bits."""
    model, opt, X, y, batch = _setup(backend, n=2600)
    upd = TopologyUpdater(0.3, "cosine", cosine_samples=2500, backend=backend)
    Xs = np.ascontiguousarray(X[:, :2500])
    ours = upd._activations(model, Xs)
    plain = model.activations(Xs)
    assert len(ours) == len(plain)
    for a, b in zip(ours, plain):
        np.testing.assert_array_equal(a, b)


def test_training_buffers_left_alone_and_activation_buffers_kept():
    model, opt, X, y, batch = _setup("reference")
    _train_steps(model, opt, X, y, batch)
    before = dict(model.buffers.arrays)
    upd = TopologyUpdater(0.3, "cosine", cosine_samples=300, backend="reference")
    upd.update(model, X, optimizer=opt, rng=np.random.default_rng(1))
    assert model.buffers.arrays.keys() == before.keys()
    assert all(model.buffers.arrays[key] is arr for key, arr in before.items())  # not reallocated
    cached = upd._act_buffers[1].arrays
    assert cached and all(arr.shape[1] == 300 for arr in cached.values())
    ids = {key: id(arr) for key, arr in cached.items()}
    upd.update(model, X, optimizer=opt, rng=np.random.default_rng(2))
    assert {key: id(arr) for key, arr in upd._act_buffers[1].arrays.items()} == ids  # reused


def test_buffers_not_shared_between_models():
    """One updater on two models of different sizes: each result as with a fresh updater."""
    shared = TopologyUpdater(0.3, "cosine", cosine_samples=200, backend="reference")
    results = []
    for sizes in ((30, 40, 35, 5), (30, 25, 5)):
        for upd in (shared, TopologyUpdater(0.3, "cosine", cosine_samples=200,
                                            backend="reference")):
            model, opt, X, y, batch = _setup("reference", sizes=sizes)
            _train_steps(model, opt, X, y, batch)
            upd.update(model, X, optimizer=opt, rng=np.random.default_rng(3))
            results.append(_snapshot(model, opt))
    for a, b in ((results[0], results[1]), (results[2], results[3])):
        for la, lb in zip(a, b):
            for u, v in zip(la, lb):
                np.testing.assert_array_equal(u, v)


def test_pickle_drops_the_buffers():
    model, opt, X, y, batch = _setup("reference")
    upd = TopologyUpdater(0.3, "ctre_sim", cosine_samples=100, backend="reference")
    upd.update(model, X, optimizer=opt, rng=np.random.default_rng(0))
    assert upd._act_buffers is not None
    copy = pickle.loads(pickle.dumps(upd))
    assert copy._act_buffers is None and upd._act_buffers is not None
    assert copy.state_dict() == upd.state_dict()
    copy.update(model, X, optimizer=opt, rng=np.random.default_rng(1))  # still works

