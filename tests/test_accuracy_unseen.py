"""benchmarks/accuracy_unseen.py end to end at 2 epochs (no accuracy is asserted here)."""

import json

from benchmarks import accuracy_unseen


def test_one_record_per_data_set_and_method(tmp_path, capsys):
    out = tmp_path / "unseen.jsonl"
    accuracy_unseen.main(["--methods", "static", "dense_mlp", "--seeds", "0", "1",
                          "--epochs", "2", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["dataset"], r["method"]) for r in records] == [
        (d, m) for d in ("breast_cancer", "wine", "synthetic") for m in ("static", "dense_mlp")]
    for r in records:
        assert len(r["test"]) == 2 and all(0.0 <= a <= 1.0 for a in r["test"])
        assert abs(r["mean"] - sum(r["test"]) / 2) < 1e-12
    assert capsys.readouterr().out.count("\n") == len(records)
