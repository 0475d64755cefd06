"""Training benchmark: one CTRE epoch of 784-1000-1000-1000-10 beside PyTorch dense+mask.

See docs/benchmarks.md ("Training"). Examples::

    PYTHONPATH=. python benchmarks/bench_training.py --quick
    PYTHONPATH=. python benchmarks/bench_training.py --json docs/results/bench_training_cpu.json
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`

from benchmarks.training import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
