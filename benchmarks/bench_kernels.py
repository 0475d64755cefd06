"""Kernel benchmark: spmm, spmm_t, sddmm of our backends beside scipy, torch and dense BLAS.

Same as ``ctre-sparse bench kernels``; see benchmarks/README.md. Examples::

    PYTHONPATH=. python benchmarks/bench_kernels.py --quick
    PYTHONPATH=. python benchmarks/bench_kernels.py --json docs/bench_kernels_cpu.json
"""

import sys

from ctre_sparse.bench.kernels import main

if __name__ == "__main__":
    sys.exit(main())
