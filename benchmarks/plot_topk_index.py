"""Figure of ``bench_topk_index.py`` results: recall@k and speedup over exact against nprobe.

Example::

    PYTHONPATH=. python benchmarks/plot_topk_index.py results.json docs/figures/x.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    records = json.load(open(argv[0]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, rec in enumerate(records):
        name = f"run {i + 1}: {rec['shape'][0]}x{rec['shape'][1]}"
        for nlist in sorted({r["nlist"] for r in rec["rows"]}):
            rows = sorted((r for r in rec["rows"] if r["nlist"] == nlist),
                          key=lambda r: r["nprobe"])
            label = f"{name}, nlist {nlist}"
            axes[0].plot([r["nprobe"] for r in rows], [r["recall"] for r in rows], "o-",
                         label=label)
            axes[1].plot([r["nprobe"] for r in rows], [r["speedup"] for r in rows], "o-",
                         label=label)
    axes[0].axhline(0.9, color="grey", lw=0.8, ls="--")
    axes[1].axhline(10, color="grey", lw=0.8, ls="--")
    for ax, what in zip(axes, ("recall@k against exact", "speedup over exact (same round)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("nprobe (lists scanned per output neuron)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    loads = [x for rec in records for x in rec["load_1min"]]
    fig.suptitle(f"index-mode top-k cosine on USPS activations (S = {records[0]['samples']}, "
                 f"load {min(loads):.0f}-{max(loads):.0f} on {records[0]['cpu_count']} cores)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(argv[1], dpi=110)


if __name__ == "__main__":
    main()
