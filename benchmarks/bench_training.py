"""Training benchmark: one CTRE epoch of 784-1000-1000-1000-10 beside PyTorch dense+mask.

Same as ``ctre-sparse bench training``; see docs/benchmarks.md ("Training"). Examples::

    PYTHONPATH=. python benchmarks/bench_training.py --quick
    PYTHONPATH=. python benchmarks/bench_training.py --json docs/bench_training_cpu.json
"""

import sys

from ctre_sparse.bench.training import main

if __name__ == "__main__":
    sys.exit(main())
