"""benchmarks/accuracy_ablations.py: the balanced topology, and each ablation end to end at
2 epochs (no accuracy is asserted here)."""

import json

import numpy as np
import pytest

from benchmarks import accuracy_ablations as ab
from ctre_sparse.nn import mlp
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


@pytest.mark.parametrize("name", ["balanced_init", "centered_cosine", "zeta_decay"])
def test_each_ablation_runs_through_the_study(name, tmp_path, monkeypatch):
    for owner, attr in ((mlp, "erdos_renyi"), (growth.CosineGrowth, "_cosine"),
                        (Trainer, "_update_topology")):
        monkeypatch.setattr(owner, attr, getattr(owner, attr))  # undone after the test
    out = tmp_path / "runs.jsonl"
    ab.main([name, "--datasets", "digits", "--methods", "ctre_seq", "--seeds", "0",
             "--epochs", "2", "--params", '{"preset": "default"}', "--name", f"ablation_{name}",
             "--out", str(out)])
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["config"] == f"ablation_{name}" and len(record["curves"]["test"]) == 2
