"""``ctre-sparse bench``: measurements (``bench kernels``, ``bench training``)."""

from __future__ import annotations

__all__ = ["register"]


def _run_kernels(args):
    from ..bench import kernels

    return kernels.run_from_args(args)


def _run_training(args):
    from ..bench import training

    return training.run_from_args(args)


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
    parser.set_defaults(func=lambda args: _no_benchmark(parser))
    return parser


def _no_benchmark(parser):
    parser.print_help()
    return 2
