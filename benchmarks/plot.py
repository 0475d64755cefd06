"""Figures from kernel benchmark records (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

__all__ = ["plot_kernels"]

_STYLE = {"native": ("C0", "o", "-"), "numba": ("C1", "s", "-"), "cuda": ("C4", "D", "-"),
          "reference": ("C7", "x", ":"), "scipy": ("C2", "^", "--"), "torch": ("C3", "v", "--"),
          "dense": ("k", "*", ":"), "cusparse": ("C5", "P", "--")}


def plot_kernels(records, path, *, batch=128, dtype="float32", series="grid"):
    """GFLOP/s against density: one panel per (n, op), one line per backend or peer.

    Parameters
    ----------
    records : list of dict
        As written by ``python benchmarks/bench_kernels.py --json``.
    path : str
        PNG file to write (folders are created).
    batch : int, default 128
        Only records with this batch size are drawn.
    dtype : str, default "float32"
    series : str, default "grid"

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        If no successful record matches ``batch``, ``dtype`` and ``series``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if r.get("status") == "ok" and r.get("batch") == batch
            and r.get("dtype") == dtype and r.get("series") == series and r.get("gflops")]
    if not rows:
        raise ValueError(f"no successful {series} records with batch={batch} and dtype={dtype} "
                         "to plot")
    ops = [op for op in ("spmm", "spmm_t", "sddmm") if any(r["op"] == op for r in rows)]
    sizes = sorted({r["n_out"] for r in rows})
    fig, axes = plt.subplots(len(sizes), len(ops), figsize=(4.2 * len(ops), 3.2 * len(sizes)),
                             squeeze=False, sharey=True)
    for i, n in enumerate(sizes):
        for j, op in enumerate(ops):
            _panel(axes[i][j], [r for r in rows if r["n_out"] == n and r["op"] == op])
            axes[i][j].set_title(f"{op}, n={n}, batch={batch}", fontsize=10)
            if i == len(sizes) - 1:
                axes[i][j].set_xlabel("density")
            if j == 0:
                axes[i][j].set_ylabel("GFLOP/s (2·nnz·batch/t)")
    _legend_and_footer(fig, rows[0].get("machine") or {}, dtype)
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


def _panel(ax, rows):
    order = list(_STYLE)
    for backend in sorted({r["backend"] for r in rows},
                          key=lambda b: (order.index(b) if b in order else len(order), b)):
        pts = sorted((r["density"], r["gflops"]) for r in rows if r["backend"] == backend)
        color, marker, style = _STYLE.get(backend, ("C9", ".", "-"))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker=marker,
                linestyle=style, label=backend)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)


def _legend_and_footer(fig, machine, dtype):
    handles = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
               ncol=len(handles), frameon=False)
    fig.text(0.5, 0.005, f"{machine.get('cpu', '?')}, {machine.get('threads', '?')} threads, "
             f"{dtype}; dense = BLAS on the dense equivalent (its useful GFLOP/s)",
             ha="center", fontsize=8)
