"""OutlierClip: against a plain re-statement of the rule, ordinary steps untouched, its state
through SGD and files, hostile states, and the estimator's grad_clip parameter."""

from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest

from ctre_sparse import CTREClassifier
from ctre_sparse.nn import clip as clip_module
from ctre_sparse.nn.clip import OutlierClip
from ctre_sparse.nn.optim import SGD


def _layers(rng, sizes=((7, 3), (4, 2)), dtype=np.float32):
    return [SimpleNamespace(grad_W=np.zeros(w, dtype), grad_b=np.zeros(b, dtype))
            for w, b in sizes]


def _fill(layers, rng, scale):
    for layer in layers:
        for g in (layer.grad_W, layer.grad_b):
            g[:] = rng.standard_normal(g.shape) * scale


def _reference(steps, factor, window, min_steps):
    """The rule written out: norms of the unclipped steps, clip from step ``min_steps`` on."""
    history, out = deque(maxlen=window), []
    for grads in steps:
        norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
        scale = 1.0
        if len(history) >= min_steps and norm > factor * np.median(history):
            scale = factor * np.median(history) / norm
        out.append([g * g.dtype.type(scale) for g in grads])
        history.append(norm)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("device_path", [False, True])
def test_matches_the_rule_written_out(dtype, device_path, monkeypatch):
    if device_path:  # the branch a GPU takes: no value is read back to the host
        monkeypatch.setattr(clip_module, "host_scalar", lambda v: v)
    rng = np.random.default_rng(0)
    layers = _layers(rng, dtype=dtype)
    clip = OutlierClip(factor=3.0, window=5, min_steps=4)
    scales = [1, 1.2, 0.9, 1, 50, 1, 0.1, 0.1, 20, 1, 1, 30, 0.8]  # spikes at 4, 8, 11
    steps, got = [], []
    for s in scales:
        _fill(layers, rng, s)
        steps.append([g.copy() for layer in layers for g in (layer.grad_W, layer.grad_b)])
        clip(layers)
        got.append([g.copy() for layer in layers for g in (layer.grad_W, layer.grad_b)])
    want = _reference(steps, 3.0, 5, 4)
    clipped = 0
    for i, (g_steps, w_steps, raw) in enumerate(zip(got, want, steps)):
        for g, w, r in zip(g_steps, w_steps, raw):
            np.testing.assert_allclose(g, w, rtol=1e-6)
        clipped += not all(np.array_equal(g, r) for g, r in zip(g_steps, raw))
    assert clipped == 3   # the three spikes, and only they
    assert clip.n_steps == len(scales)


def test_ordinary_steps_are_untouched_bit_for_bit():
    rng = np.random.default_rng(1)
    layers = _layers(rng)
    clip = OutlierClip(factor=5.0, window=10, min_steps=2)
    for _ in range(30):
        _fill(layers, rng, 1.0)
        before = [g.copy() for layer in layers for g in (layer.grad_W, layer.grad_b)]
        clip(layers)
        for g, b in zip((g for layer in layers for g in (layer.grad_W, layer.grad_b)), before):
            assert np.array_equal(g, b)


def test_nothing_is_clipped_before_min_steps():
    rng = np.random.default_rng(2)
    layers = _layers(rng)
    clip = OutlierClip(factor=1.0, window=4, min_steps=4)
    for s in (1, 100, 10_000):
        _fill(layers, rng, s)
        before = layers[0].grad_W.copy()
        clip(layers)
        assert np.array_equal(layers[0].grad_W, before)


@pytest.mark.parametrize("kwargs, match", [({"factor": 0.5}, "factor must be >= 1"),
                                           ({"factor": float("nan")}, "factor must be >= 1"),
                                           ({"window": 0}, "window >= 1"),
                                           ({"window": 5, "min_steps": 6}, "min_steps <= window"),
                                           ({"min_steps": 0}, "min_steps")])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OutlierClip(**kwargs)


def _trained_clip(steps=12):
    rng = np.random.default_rng(3)
    layers = _layers(rng)
    clip = OutlierClip(factor=2.0, window=8, min_steps=3)
    for _ in range(steps):
        _fill(layers, rng, 1.0)
        clip(layers)
    return clip, layers, rng


def test_state_round_trip_continues_identically():
    clip, layers, rng = _trained_clip()
    twin = OutlierClip.from_state(clip.state_dict())
    twin_layers = _layers(rng)
    for s in (1, 9, 1, 1, 40):
        _fill(layers, rng, s)
        for a, b in zip(twin_layers, layers):
            a.grad_W[:], a.grad_b[:] = b.grad_W, b.grad_b
        clip(layers)
        twin(twin_layers)
        for a, b in zip(twin_layers, layers):
            assert np.array_equal(a.grad_W, b.grad_W) and np.array_equal(a.grad_b, b.grad_b)
    assert OutlierClip.from_state(OutlierClip().state_dict()).norms is None


@pytest.mark.parametrize("edit, match", [
    (lambda d: "not a dict", "must be a dict"),
    (lambda d: {k: v for k, v in d.items() if k != "window"}, "must be a dict"),
    (lambda d: {**d, "window": "8"}, "ints"),
    (lambda d: {**d, "n_steps": True}, "ints"),
    (lambda d: {**d, "factor": None}, "must be a number"),
    (lambda d: {**d, "factor": 0.1}, "factor must be >= 1"),
    (lambda d: {**d, "n_steps": -1}, "does not fit"),
    (lambda d: {**d, "norms": None}, "does not fit"),
    (lambda d: {**d, "norms": np.ones(3)}, "8 finite values"),
    (lambda d: {**d, "norms": np.full(8, np.nan)}, "8 finite values"),
    (lambda d: {**d, "norms": -np.ones(8)}, "8 finite values"),
])
def test_hostile_states_are_refused(edit, match):
    state = _trained_clip()[0].state_dict()
    with pytest.raises(ValueError, match=match):
        OutlierClip.from_state(edit(state))


def test_sgd_saves_restores_and_applies_its_clip():
    clip = _trained_clip()[0]
    opt = SGD(0.1, clip=clip)
    d = opt.state_dict()
    assert d["clip"]["n_steps"] == 12
    fresh = SGD(0.1)
    fresh.load_state_dict(d)
    assert fresh.clip.n_steps == 12 and np.array_equal(fresh.clip.norms, clip.norms)
    del d["clip"]  # a state written before clipping existed trained, and resumes, without it
    fresh.load_state_dict(d)
    assert fresh.clip is None
    with pytest.raises(ValueError, match="OutlierClip or None"):
        SGD(0.1, clip=5.0)


def _data(n=300):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 6)).astype(np.float32), np.arange(n) % 3


def test_the_presets_and_an_explicit_value_reach_the_optimizer():
    X, y = _data()
    clips = {}
    for kw in ({}, {"preset": "paper"}, {"grad_clip": 0}, {"grad_clip": 2.5}):
        est = CTREClassifier((16,), epsilon=2, max_epochs=2, random_state=0, **kw).fit(X, y)
        clips[str(kw)] = est._trainer.optimizer.clip
    assert clips["{}"].factor == 5.0 and clips["{}"].n_steps == 6   # 3 batches x 2 epochs
    assert clips["{'preset': 'paper'}"] is None and clips["{'grad_clip': 0}"] is None
    assert clips["{'grad_clip': 2.5}"].factor == 2.5


@pytest.mark.parametrize("value", [0.5, -1, float("nan"), float("inf"), "5", True])
def test_bad_grad_clip_is_refused_at_fit(value):
    X, y = _data()
    with pytest.raises(ValueError, match="grad_clip"):
        CTREClassifier((8,), max_epochs=1, grad_clip=value).fit(X, y)


def test_partial_fit_may_change_grad_clip():
    X, y = _data()
    est = CTREClassifier((16,), epsilon=2, random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    norms = est._trainer.optimizer.clip.norms.copy()
    est.set_params(grad_clip=3.0).partial_fit(X, y)
    clip = est._trainer.optimizer.clip
    assert clip.factor == 3.0 and clip.n_steps == 6 and np.array_equal(clip.norms[:3], norms[:3])
    est.set_params(grad_clip=0).partial_fit(X, y)
    assert est._trainer.optimizer.clip is None


def test_a_saved_model_keeps_its_clip_and_older_files_load_without(tmp_path):
    from ctre_sparse._estimator_state import with_legacy_defaults

    X, y = _data()
    est = CTREClassifier((16,), epsilon=2, max_epochs=2, random_state=0).fit(X, y)
    est.save(tmp_path / "m.npz")
    back = CTREClassifier.load(tmp_path / "m.npz")
    assert back._trainer.optimizer.clip.n_steps == 6
    np.testing.assert_array_equal(back._trainer.optimizer.clip.norms,
                                  est._trainer.optimizer.clip.norms)
    assert with_legacy_defaults({"preset": "default"})["grad_clip"] == 0.0
    assert with_legacy_defaults({"preset": "default", "grad_clip": None})["grad_clip"] is None


def test_a_non_finite_step_leaves_a_loadable_state():
    clip, layers, rng = _trained_clip()
    layers[0].grad_W[0] = np.inf
    before = [g.copy() for layer in layers for g in (layer.grad_W, layer.grad_b)]
    clip(layers)    # left as it is (the trainer reports the divergence), recorded as 0
    for g, b in zip((g for layer in layers for g in (layer.grad_W, layer.grad_b)), before):
        assert np.array_equal(g, b)
    twin = OutlierClip.from_state(clip.state_dict())
    assert twin.n_steps == 13 and np.all(np.isfinite(twin.norms))


def test_norms_restored_on_another_array_module_are_moved_not_reset(monkeypatch):
    """A state loaded on the host and trained on another device keeps its history."""
    clip, layers, _ = _trained_clip()
    saved = clip.norms.copy()
    moved = []

    def fake_to_module(arr, xp):
        moved.append(arr)
        return np.array(arr)
    monkeypatch.setattr(clip_module, "to_module", fake_to_module)
    real = clip_module.array_module
    monkeypatch.setattr(clip_module, "array_module",
                        lambda a: object() if a is clip.norms else real(a))
    clip(layers)
    assert len(moved) == 1 and np.array_equal(moved[0], saved)
    assert np.count_nonzero(clip.norms) == clip.window
