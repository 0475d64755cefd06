"""Markdown tables (machine, targets, the target case, fixed nnz/row, whole grid) from the JSON.

    PYTHONPATH=. python benchmarks/report_kernels.py docs/results/bench_kernels_cpu.json \
        --update docs/benchmarks.md
    PYTHONPATH=. python benchmarks/report_kernels.py --gpu docs/results/bench_kernels_gpu.json \
        --update docs/benchmarks.md     # the GPU section (its own markers)
"""

import argparse
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`

from benchmarks.harness import read_json  # noqa: E402
from benchmarks.report import (GPU_END, GPU_START, gpu_markdown_report,  # noqa: E402
                               markdown_report, update_markdown)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="records written by `benchmarks/bench_kernels.py --json`")
    parser.add_argument("--update", metavar="MD",
                        help="replace the text between the results markers of this file "
                             "(default: print to stdout)")
    parser.add_argument("--gpu", action="store_true",
                        help="records of `--device cuda`: GPU targets (n=16384, batch 128-1024) "
                             "between the gpu-results markers")
    args = parser.parse_args(argv)
    records = read_json(args.json)
    text = gpu_markdown_report(records) if args.gpu else markdown_report(records)
    if args.update:
        if args.gpu:
            update_markdown(args.update, text, GPU_START, GPU_END)
        else:
            update_markdown(args.update, text)
        print(f"updated {args.update}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
