"""The ``ctre-sparse`` command: ``info`` and the dispatcher (``train``: test_cli_train.py)."""

import json

import pytest

from ctre_sparse import cli
from ctre_sparse.backends import BACKENDS, backend_status

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


def test_bench_runs_a_script_of_the_checkout(capsys, monkeypatch, tmp_path):
    """``ctre-sparse bench NAME ARGS`` = ``python benchmarks/bench_NAME.py ARGS`` in a checkout."""
    from ctre_sparse.cli import bench

    root = tmp_path / "checkout"
    (root / "ctre_sparse").mkdir(parents=True)
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "bench_echo.py").write_text(
        "import sys\nprint('args', sys.argv[1:])\nsys.exit(3 if '--fail' in sys.argv else 0)\n")
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "site" / "ctre_sparse" / "cli" / "b.py"))
    monkeypatch.chdir(root / "benchmarks")
    assert cli.main(["bench", "echo", "--quick", "x"]) == 0
    assert "args ['--quick', 'x']" in capsys.readouterr().out
    assert cli.main(["bench", "echo", "--", "--fail"]) == 3
    assert cli.main(["bench", "nothing"]) == 1
    err = capsys.readouterr().err
    assert "no benchmark 'nothing'" in err and "there are: echo" in err
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "echo"]) == 1
    assert "source checkout" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "info" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert "ctre_sparse" in capsys.readouterr().out


def test_missing_subcommand_module_is_skipped(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("info", "no_such_subcommand", "train"))
    parser = cli.build_parser()
    assert cli.main(["info", "--json"]) == 0
    assert "no_such_subcommand" not in parser.format_help()
