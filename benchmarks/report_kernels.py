"""Markdown tables (machine, targets, the target case, fixed nnz/row, whole grid) from the JSON.

    PYTHONPATH=. python benchmarks/report_kernels.py docs/bench_kernels_cpu.json \
        --update docs/benchmarks.md
"""

import argparse
import sys

from ctre_sparse.bench.harness import read_json
from ctre_sparse.bench.report import markdown_report, update_markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="records written by `ctre-sparse bench kernels --json`")
    parser.add_argument("--update", metavar="MD",
                        help="replace the text between the results markers of this file "
                             "(default: print to stdout)")
    args = parser.parse_args(argv)
    text = markdown_report(read_json(args.json))
    if args.update:
        update_markdown(args.update, text)
        print(f"updated {args.update}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
