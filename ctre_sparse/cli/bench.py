"""``ctre-sparse bench``: measurements (``bench kernels``, ``bench training``, ``bench scale``)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _run_kernels(args):
    from ..bench import kernels

    return kernels.run_from_args(args)


def _run_training(args):
    from ..bench import training

    return training.run_from_args(args)


def _run_scale(args):
    """``benchmarks/bench_scale.py`` of the source tree, with the arguments after ``scale``."""
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_scale.py"
    if not script.is_file():
        raise ValueError("bench scale runs from a source checkout (benchmarks/bench_scale.py "
                         "is not installed with the package); run it there: "
                         "python benchmarks/bench_scale.py --help")
    rest = list(args.scale_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    saved = sys.argv
    sys.argv = [str(script)] + rest
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    return 0


def register(subparsers):
    """Add the ``bench`` command and its subcommands to ``subparsers``."""
    from ..bench.kernels import add_arguments

    parser = subparsers.add_parser("bench", help="run benchmarks",
                                   description="Benchmarks; each result is checked against the "
                                               "reference backend before it is timed.")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    kernels = sub.add_parser(
        "kernels", help="spmm / spmm_t / sddmm: our backends beside scipy, torch, dense BLAS",
        description="Time spmm, spmm_t and sddmm on a grid of sizes, densities and batches; "
                    "GFLOP/s = 2 * nnz * batch / median time; ratios to peers of the same run.")
    add_arguments(kernels)
    kernels.set_defaults(func=_run_kernels)
    from ..bench.training import add_arguments as add_training_arguments

    training = sub.add_parser(
        "training", help="one CTRE epoch of 784-1000-1000-1000-10 beside PyTorch dense+mask",
        description="Time one epoch (training and topology update) of the sparse MLP, "
                    "checked against the reference backend, beside the same network trained "
                    "dense-with-masks in PyTorch in the same run.")
    add_training_arguments(training)
    training.set_defaults(func=_run_training)
    scale = sub.add_parser(
        "scale", help="one CTRE epoch at widths 1,000 to 1,000,000 (benchmarks/bench_scale.py)",
        description="Runs benchmarks/bench_scale.py of the source tree with the arguments "
                    "given after 'scale --' (ctre-sparse bench scale -- --help).")
    scale.add_argument("scale_args", nargs=argparse.REMAINDER, help="arguments of bench_scale.py")
    scale.set_defaults(func=_run_scale)
    parser.set_defaults(func=lambda args: _no_benchmark(parser))
    return parser


def _no_benchmark(parser):
    parser.print_help()
    return 2
