"""``ctre-sparse bench NAME [ARGS...]``: run ``benchmarks/bench_NAME.py`` of a source checkout.

The benchmarks are not part of the installed package: they compare against peers that are
no dependency of it (PyTorch, FAISS, MPI launchers), write their records into ``docs/`` and
state the commit they ran at, all of which needs the checkout. This command only finds one
(the checkout an editable install points at, else the current folder or one above it that
holds ``benchmarks/`` beside ``ctre_sparse/``) and runs the script there with the remaining
arguments, exactly as ``python benchmarks/bench_NAME.py ARGS...`` would.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

__all__ = ["register", "find_benchmarks", "run"]


def _is_checkout(folder):
    return (folder / "benchmarks").is_dir() and (folder / "ctre_sparse").is_dir()


def find_benchmarks(start=None):
    """The ``benchmarks/`` folder of a source checkout, or None.

    Looks beside the imported package first (an editable install), then in
    ``start`` (default: the current folder) and the folders above it.
    """
    candidates = [Path(__file__).resolve().parents[2]]
    here = Path.cwd() if start is None else Path(start)
    candidates += [here.resolve(), *here.resolve().parents]
    for folder in candidates:
        if _is_checkout(folder):
            return folder / "benchmarks"
    return None


def _names(folder):
    return sorted(p.stem[len("bench_"):] for p in folder.glob("bench_*.py"))


def run(args):
    """Run ``bench_<args.name>.py`` with ``args.rest``; return its exit code."""
    folder = find_benchmarks()
    if folder is None:
        raise ValueError("benchmarks run from a source checkout of ctre_sparse (they are not "
                         "installed with the package): clone the repository and run "
                         "`ctre-sparse bench NAME` (or python benchmarks/bench_NAME.py) there")
    script = folder / f"bench_{args.name}.py"
    if not script.is_file():
        raise ValueError(f"no benchmark {args.name!r} in {folder}; there are: "
                         f"{', '.join(_names(folder))}")
    rest = list(args.rest)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    saved = sys.argv
    sys.argv = [str(script)] + rest
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:   # the script's own exit (argparse --help, errors)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def register(subparsers):
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench", help="run a benchmark of the source checkout (benchmarks/bench_NAME.py)",
        description="Run benchmarks/bench_NAME.py of the source checkout with the arguments "
                    "that follow, e.g. `ctre-sparse bench scale --help`, `ctre-sparse bench "
                    "kernels --quick`. Benchmarks are not installed with the package.")
    p.add_argument("name", metavar="NAME",
                   help="the benchmark: kernels, training, scale, distributed, gather, ...")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="arguments of the benchmark script")
    p.set_defaults(func=run)
    return p
