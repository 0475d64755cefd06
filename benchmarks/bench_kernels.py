"""Kernel benchmark: spmm, spmm_t, sddmm of our backends beside scipy, torch and dense BLAS.

See benchmarks/README.md. Examples::

    PYTHONPATH=. python benchmarks/bench_kernels.py --quick
    PYTHONPATH=. python benchmarks/bench_kernels.py --json docs/results/bench_kernels_cpu.json
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`

from benchmarks.kernels import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
