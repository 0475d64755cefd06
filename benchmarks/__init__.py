"""Benchmarks that cannot lie: checked against the reference, warmed up, synchronized.

A package of the repository, not of the installed library (see README.md here).

Modules
-------
harness
    Timing (warm-up, repeats, median, device sync), GFLOP/s, result checks,
    ratios to peers, JSON records.
peers
    Our backends and the peers (scipy, torch, dense BLAS, cuSPARSE) as runners.
kernels
    The spmm / spmm_t / sddmm benchmark (``python benchmarks/bench_kernels.py``).
training
    One CTRE epoch beside PyTorch dense-with-masks (``python benchmarks/bench_training.py``).
machine
    The machine block of every record (CPU, ISA, threads, versions, load, commit).
plot, report
    Figures and markdown tables from the JSON records.
"""

from .harness import (ResultMismatchError, Timing, add_ratios, check_result, gflops, read_json,
                      time_call, write_json)

__all__ = ["ResultMismatchError", "Timing", "add_ratios", "check_result", "gflops", "read_json",
           "time_call", "write_json"]
