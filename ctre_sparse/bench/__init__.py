"""Benchmarks that cannot lie: checked against the reference, warmed up, synchronized.

Modules
-------
harness
    Timing (warm-up, repeats, median, device sync), GFLOP/s, result checks,
    ratios to peers, JSON records.
peers
    Our backends and the peers (scipy, torch, dense BLAS, cuSPARSE) as runners.
kernels
    The spmm / spmm_t / sddmm benchmark (``ctre-sparse bench kernels``).
machine
    CPU model, ISA features, threads and versions (``ctre-sparse info``).
plot
    Figures from the JSON records.
"""

from .harness import (ResultMismatchError, Timing, add_ratios, check_result, gflops, read_json,
                      time_call, write_json)

__all__ = ["ResultMismatchError", "Timing", "add_ratios", "check_result", "gflops", "read_json",
           "time_call", "write_json"]
