"""The ``ctre-sparse`` command: ``info``, ``bench kernels`` and the dispatcher."""

import json

import pytest

from ctre_sparse import cli
from ctre_sparse.backends import BACKENDS, backend_status

TINY_BENCH = ["bench", "kernels", "--sizes", "64", "--densities", "0.05", "--batches", "8",
              "--fixed-nnz-per-row", "0", "--repeat", "1", "--min-time", "0", "--pause", "0",
              "--threads", "1"]


def test_info_text(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ctre_sparse ")
    for name, reason in backend_status().items():
        line = [ln for ln in out.splitlines() if ln.strip().startswith(name + " ")]
        assert line, name
        assert ("available" == line[0].split()[1]) == (reason is None)
    assert "index dtypes: int32" in out
    assert "threads:" in out and "cuda:" in out


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["backends"]) == set(BACKENDS)
    assert info["backends"]["reference"] == {"available": True, "reason": None}
    for b in info["backends"].values():
        assert b["available"] == (b["reason"] is None)
    assert {"numpy", "scipy", "numba", "python"} <= set(info["versions"])
    assert "numba" in info["threads"] and "OMP_NUM_THREADS" in info["threads"]
    assert info["cuda"]["available"] in (True, False)
    if not info["cuda"]["available"]:
        assert info["cuda"]["reason"]


def test_bench_kernels_tiny_run_writes_json(tmp_path, capsys):
    path = tmp_path / "k.json"
    rc = cli.main(TINY_BENCH + ["--backends", "reference,scipy,dense", "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    records = json.loads(path.read_text())
    assert len(records) == 3 * 3  # 1 case x 3 ops x 3 competitors
    assert {r["op"] for r in records} == {"spmm", "spmm_t", "sddmm"}
    assert all(r["status"] == "ok" and r["gflops"] > 0 for r in records)
    assert "GFLOP/s" in out and "[3/3]" in out


def test_bench_kernels_ops_subset(tmp_path, capsys):
    path = tmp_path / "k.json"
    assert cli.main(TINY_BENCH + ["--ops", "sddmm", "--backends", "scipy",
                                  "--json", str(path)]) == 0
    assert [r["op"] for r in json.loads(path.read_text())] == ["sddmm"]


def test_bench_kernels_bad_options(capsys):
    assert cli.main(TINY_BENCH + ["--ops", "gemm", "--backends", "scipy"]) == 1
    assert "ops must be among" in capsys.readouterr().err
    assert cli.main(TINY_BENCH + ["--repeat", "0"]) == 1
    with pytest.raises(SystemExit):
        cli.main(TINY_BENCH + ["--sizes", "big"])


def test_bench_without_benchmark_prints_help(capsys):
    assert cli.main(["bench"]) == 2
    assert "kernels" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "info" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert "ctre_sparse" in capsys.readouterr().out


def test_missing_subcommand_module_is_skipped(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("info", "no_such_subcommand", "bench"))
    parser = cli.build_parser()
    assert cli.main(["info", "--json"]) == 0
    assert "no_such_subcommand" not in parser.format_help()
