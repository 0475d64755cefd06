"""benchmarks/accuracy_ablations.py: the balanced topology, and each ablation end to end at
2 epochs (no accuracy is asserted here)."""

import json

import numpy as np
import pytest

from benchmarks import accuracy_ablations as ab
from ctre_sparse import ops
from ctre_sparse.nn import mlp
from ctre_sparse.nn.optim import SGD
from ctre_sparse.topology import TopologyUpdater
from ctre_sparse.topology import growth
from ctre_sparse.training import Trainer


@pytest.mark.parametrize("n_out, n_in, nnz", [(1000, 64, 1064), (1000, 1000, 2000),
                                              (10, 1000, 1010), (50, 40, 400)])
def test_balanced_keys_are_distinct_with_near_equal_degrees(n_out, n_in, nnz):
    keys = ab.balanced_keys(np.random.default_rng(0), n_out, n_in, nnz)
    assert keys.size == nnz and np.all(np.diff(keys) > 0)
    for counts, n in ((np.bincount(keys // n_in, minlength=n_out), n_out),
                      (np.bincount(keys % n_in, minlength=n_in), n_in)):
        assert set(np.unique(counts)) <= {nnz // n, -(-nnz // n)}


def test_balanced_layer_keeps_the_count_and_the_weight_bounds():
    W = ab.balanced_erdos_renyi(1000, 64, epsilon=1, random_state=0, init="he_sparse")
    fan_in = np.diff(W.indptr)
    assert W.nnz == 1064 and fan_in.min() >= 1
    assert np.all(np.abs(W.data) <= np.sqrt(6.0 / fan_in[W.row_indices()]))
    assert ab.balanced_erdos_renyi(8, 8, epsilon=20, random_state=0).nnz == 64  # dense: ER


#: Everything an ablation may patch: restored by :func:`_restore_after` after each test.
PATCHED = ((mlp, "erdos_renyi"), (growth.CosineGrowth, "_cosine"), (Trainer, "_update_topology"),
           (growth, "_random_pick"), (ops, "prune_magnitude"), (TopologyUpdater, "update"),
           (TopologyUpdater, "_update_layer"), (mlp, "cross_entropy_grad"), (SGD, "step"),
           (Trainer, "_train_batches"), (ops, "insert"))


@pytest.fixture(autouse=True)
def _restore_after(monkeypatch):
    for owner, attr in PATCHED:
        monkeypatch.setattr(owner, attr, getattr(owner, attr))  # undone after the test


@pytest.mark.parametrize("name", ["balanced_init", "centered_cosine", "zeta_decay",
                                  "topology_end", "dead_end_aware", "label_smoothing",
                                  "layer_lr", "weight_average", "clip_spikes",
                                  "grace_period", "update_interval"])
def test_each_ablation_runs_through_the_study(name, tmp_path):
    out = tmp_path / "runs.jsonl"
    ab.main([name, "--datasets", "digits", "--methods", "ctre_seq", "--seeds", "0",
             "--epochs", "2", "--params", '{"preset": "default"}', "--name", f"ablation_{name}",
             "--out", str(out)])
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["config"] == f"ablation_{name}" and len(record["curves"]["test"]) == 2


def test_dead_end_aware_prunes_dead_ends_first_and_grows_between_live_neurons():
    """Layer 1 of [3, 4, 4, 2]: sources 0-1 have inputs, targets 0-2 have outputs."""
    from ctre_sparse.sparse import CSRMatrix

    ab.patch_dead_end_aware()
    src, tgt = np.array([1, 1, 0, 0], bool), np.array([1, 1, 1, 0], bool)
    ab._LIVE.update(masks=[None, (src, tgt)], layer=1)
    dense = np.array([[5., 0, 4, 0], [0, 3, 0, 0], [2, 0, 0, 0], [6, 0, 0, 0]])
    W = CSRMatrix.from_dense(dense)
    res = ops.prune_magnitude(W, 0.6)  # 3 of 5 go: dead ends (0,2), (3,0) before |2| at (2,0)
    assert sorted(zip(res.removed_rows.tolist(), res.removed_cols.tolist())) == [
        (0, 2), (2, 0), (3, 0)]
    np.testing.assert_array_equal(W.data, CSRMatrix.from_dense(dense).data)  # untouched
    np.testing.assert_array_equal(res.matrix.toarray(), np.where(
        np.isin(dense, [5, 3]), dense, 0))
    ctx = growth.GrowthContext(1, res.matrix, res.removed_rows, res.removed_cols)
    rows, cols, _ = growth._random_pick(ctx, 4, np.random.default_rng(0))
    assert set(zip(rows.tolist(), cols.tolist())) == {(0, 1), (1, 0), (2, 0), (2, 1)}


def test_label_smoothing_gradient_is_that_of_the_smoothed_targets():
    ab.patch_label_smoothing(0.1)
    P = np.random.default_rng(0).dirichlet(np.ones(4), size=5).T   # (4 classes, batch 5)
    y = np.array([0, 3, 1, 1, 2])
    target = 0.9 * np.eye(4)[:, y] + 0.1 / 4
    np.testing.assert_allclose(mlp.cross_entropy_grad(P, y), (P - target) / 5)
    np.testing.assert_allclose(mlp.cross_entropy_grad(P, y, n_total=10), (P - target) / 10)


def _small_run(sgd=None, growth_rule="random"):
    """A [6, 30, 3] network on 40 random samples, its trainer, and the data."""
    X = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32)
    y = np.arange(40) % 3
    model = mlp.SparseMLP([6, 30, 3], epsilon=2, random_state=0)
    trainer = Trainer(model, sgd or SGD(0.05), TopologyUpdater(zeta=0.3, growth=growth_rule),
                      batch_size=10, random_state=0)
    return trainer, X, y


def test_topology_end_stops_the_updates_after_three_quarters_of_the_run():
    ab.patch_topology_end(8)
    trainer, X, y = _small_run()
    pruned = [trainer.run_epoch(X, y)["n_pruned"] for _ in range(8)]
    assert pruned[0] == 0 and all(n > 0 for n in pruned[1:6]) and pruned[6:] == [0, 0]


def test_layer_lr_steps_each_layer_at_its_own_fan_in_rate():
    ab.patch_layer_lr()
    trainer, X, y = _small_run(SGD(0.05, momentum=0.0, weight_decay=0.0))
    model = trainer.model
    model.forward(np.ascontiguousarray(X[:, :10]), training=True)
    model.backward(y[:10])
    grads = [layer.grad_W.copy() for layer in model.layers]
    before = [layer.W.data.copy() for layer in model.layers]
    trainer.optimizer.start_epoch(0)
    trainer.optimizer.step(model)
    k = sum(layer.W.nnz for layer in model.layers) / (30 + 3)
    for layer, g, w in zip(model.layers, grads, before):
        scale = ab._layer_rule(layer.W.nnz / layer.W.n_out) / ab._layer_rule(k)
        np.testing.assert_allclose(w - layer.W.data, 0.05 * scale * g, rtol=1e-4, atol=1e-7)
    assert ab._layer_rule(1010 / 10) < ab._layer_rule(2000 / 1000) / 5


def test_weight_average_installs_the_average_and_carries_it_over_updates(monkeypatch):
    raw = []

    def recording_step(self, model, plain=SGD.step):
        plain(self, model)
        raw.append([layer.W.data.copy() for layer in model.layers])
    monkeypatch.setattr(SGD, "step", recording_step)
    ab.patch_weight_average()
    trainer, X, y = _small_run()
    trainer.run_epoch(X, y)
    d = 1.0 - 1.0 / 4  # 4 batches per epoch
    expected = raw[0]
    for w in raw[1:]:
        expected = [d * a + (1.0 - d) * b for a, b in zip(expected, w)]
    for layer, a, r in zip(trainer.model.layers, expected, raw[-1]):
        np.testing.assert_allclose(layer.W.data, a, rtol=1e-5, atol=1e-7)
        assert np.abs(a - r).max() > 1e-4  # the average, not the last step's weights
    before = [(growth.pattern_keys(layer.W), layer.W.data.copy()) for layer in trainer.model.layers]
    trainer._update_topology(X, y)  # on the raw weights; the averages follow the update
    for (keys, average), layer, r, (avg, _) in zip(before, trainer.model.layers, raw[-1],
                                                   ab._AVERAGE["avg"]):
        new_keys = growth.pattern_keys(layer.W)
        pos = np.minimum(np.searchsorted(keys, new_keys), keys.size - 1)
        # survivors: same place, raw value untouched (a pruned one grown again is new)
        kept = (keys[pos] == new_keys) & (r[pos] == layer.W.data)
        assert 0 < kept.sum() < new_keys.size
        assert kept.sum() >= new_keys.size - int(np.ceil(0.3 * new_keys.size))  # zeta 0.3
        np.testing.assert_allclose(avg[kept], average[pos[kept]], rtol=1e-6)
        np.testing.assert_array_equal(avg[~kept], layer.W.data[~kept])  # grown: own value


def test_clip_spikes_scales_an_outlier_step_to_the_bound(monkeypatch):
    steps = []

    def recording_step(self, model, plain=SGD.step):
        steps.append([layer.grad_W.copy() for layer in model.layers])
    monkeypatch.setattr(SGD, "step", recording_step)
    monkeypatch.setattr(ab, "CLIP_WINDOW", 3)
    monkeypatch.setattr(ab, "CLIP_MIN_STEPS", 3)
    ab.patch_clip_spikes()
    trainer, X, y = _small_run()
    opt, model = trainer.optimizer, trainer.model

    def step_with(scale):
        for layer in model.layers:
            layer.grad_W[:] = scale
            layer.grad_b[:] = scale
        opt.step(model)
        return np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in steps[-1]))
    norm_of_one = step_with(1.0)   # the biases' gradients (also 1) count in the norm
    for scale in (1.0, 1.0):
        step_with(scale)
    assert step_with(3.0) == pytest.approx(3 * norm_of_one, rel=1e-6)       # under 5x median
    # an outlier: scaled down to 5 x the median of the last three norms (1, 1, 3 x one's)
    assert step_with(100.0) == pytest.approx(ab.CLIP_FACTOR * norm_of_one, rel=1e-5)


def test_grace_period_keeps_the_grown_connections_through_the_next_update():
    """Magnitude pruning (no activity scale that could be 0): every connection grown by an
    update is present after the next one, which prunes as many connections as before."""
    ab.patch_grace_period()
    trainer, X, y = _small_run()
    trainer.updater.prune = "magnitude"
    keys = []
    for _ in range(4):
        record = trainer.run_epoch(X, y)
        keys.append([growth.pattern_keys(layer.W) for layer in trainer.model.layers])
        if record["epoch"] > 1:
            assert record["n_pruned"] > 0
    for e in (1, 2):
        for before, after, later in zip(keys[e - 1], keys[e], keys[e + 1]):
            born = np.setdiff1d(after, before)
            assert born.size > 0 and np.isin(born, later).all()


def test_update_interval_updates_every_ceil_100_over_the_batches_epochs(monkeypatch):
    """4 batches an epoch, 8 steps: an update every 2 epochs; CTRE-seq's switch still counts
    epochs."""
    monkeypatch.setattr(ab, "UPDATE_STEPS", 8)   # every 2 epochs at 4 batches
    ab.patch_update_interval()
    trainer, X, y = _small_run(growth_rule="ctre_seq")
    seen = []
    monkeypatch.setattr(trainer.updater, "observe", seen.append)
    records = [trainer.run_epoch(X, y) for _ in range(7)]
    pruned = [r["n_pruned"] for r in records]
    assert pruned[0] == 0 and all(n > 0 for n in pruned[2::2]) and pruned[1::2] == [0, 0, 0]
    # every epoch after the first passes on the last one's accuracy, updated or skipped
    assert seen == [r["train_accuracy"] for r in records[:-1]]
