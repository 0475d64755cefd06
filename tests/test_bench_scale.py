"""benchmarks/bench_scale.py and `ctre-sparse bench scale`: a tiny width, end to end.

No speed is asserted: that the child process measures one epoch and one topology
update, records what the docs table needs, and that the command line reaches it.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import child_python
from ctre_sparse.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_scale.py")


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "scale.json"
    subprocess.run([sys.executable, SCRIPT, "--widths", "48", "--samples", "300", "--features",
                    "20", "--batch", "32", "--threads", "1", "--json", str(out)],
                   check=True, capture_output=True, timeout=300, **child_python(benchmarks=True))
    records = json.loads(out.read_text())
    assert len(records) == 1
    return out, records[0]


def test_one_width_is_measured_and_recorded(record):
    _, r = record
    assert r["status"] == "ok" and r["width"] == 48 and r["threads"] == 1
    assert r["layer_sizes"] == [20, 48, 48, 48, 10] and r["samples"] == 300
    assert r["connections"] == sum(r["nnz_layers"]) > 0
    assert r["epoch_seconds"] == pytest.approx(r["train_seconds"] + r["topology_seconds"])
    assert 0 < r["topology_fraction"] < 1
    assert r["ns_per_nnz_sample"] == pytest.approx(
        r["train_seconds"] / (r["connections"] * r["samples"]) * 1e9)
    assert r["peak_rss_bytes"] > r["start_rss_bytes"] > 0
    assert r["dense_weight_bytes"] == 4 * (20 * 48 + 48 * 48 * 2 + 48 * 10)
    top = r["topology"]
    assert top["n_pruned"] == top["n_cosine"] + top["n_random"] > 0
    assert top["cosine_modes"] == ["exact"] * 4
    assert {"activation pass", "prune", "insert"} <= set(r["topology_steps"])
    assert {"spmm", "spmm_t", "sddmm", "SGD update"} <= set(r["train_profile"])



def test_the_command_line_reaches_the_script(record, capsys):
    path, r = record
    assert main(["bench", "scale", "--", "--table", "--json", str(path)]) == 0
    table = capsys.readouterr().out
    assert "| width | threads |" in table and f"| 48 | 1 | {r['connections']:,} |" in table
