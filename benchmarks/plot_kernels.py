"""Plot GFLOP/s against density from a kernel benchmark JSON file.

    PYTHONPATH=. python benchmarks/plot_kernels.py docs/results/bench_kernels_cpu.json \
        -o docs/figures/kernels_gflops.png
"""

import argparse
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`

from benchmarks.harness import read_json  # noqa: E402
from benchmarks.plot import plot_kernels  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="records written by `benchmarks/bench_kernels.py --json`")
    parser.add_argument("-o", "--output", default="docs/figures/kernels_gflops.png")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    path = plot_kernels(read_json(args.json), args.output, batch=args.batch, dtype=args.dtype)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
