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


def test_no_benchmark_subcommand(capsys):
    """The benchmarks live in the repository's benchmarks/, not in the installed command."""
    with pytest.raises(SystemExit):
        cli.main(["bench"])
    assert "invalid choice: 'bench'" in capsys.readouterr().err


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
