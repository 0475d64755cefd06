"""Markdown tables from kernel benchmark records (for docs/benchmarks.md).

Everything here is computed from the JSON records; nothing is typed in by
hand. :func:`update_markdown` replaces the text between the markers
``<!-- results:start -->`` and ``<!-- results:end -->`` of a file.
"""

from __future__ import annotations

import logging
import re

from .kernels import key_figures

logger = logging.getLogger(__name__)

__all__ = ["markdown_report", "gpu_markdown_report", "update_markdown", "START", "END",
           "GPU_START", "GPU_END"]

START, END = "<!-- results:start -->", "<!-- results:end -->"
GPU_START, GPU_END = "<!-- gpu-results:start -->", "<!-- gpu-results:end -->"
#: The GPU issue's targets: (op, ratio field of the record, goal, what the ratio is against).
#: cupyx exposes no SDDMM, so sddmm is compared with the dense peer, which on the GPU is the
#: full cuBLAS product ``G @ X.T`` followed by a gather at the pattern.
GPU_TARGETS = (
    ("spmm", "speedup_vs_cusparse", 2.0, "cuSPARSE SpMM (cupyx `csr @ dense`, default algorithm)"),
    ("spmm_t", "speedup_vs_cusparse", None, "cuSPARSE SpMM on the transpose (no goal)"),
    ("sddmm", "speedup_vs_dense", 1.5, "dense cuBLAS product, then a gather at the pattern"),
)
_OURS = ("native", "numba", "cuda", "reference")


def _f(value, spec):
    return "–" if value is None else format(value, spec)


def _ok(records, **where):
    return [r for r in records if r.get("status") == "ok"
            and all(r.get(k) == v for k, v in where.items())]


def _competitors(records):
    seen = []
    for r in records:
        if r["backend"] not in seen:
            seen.append(r["backend"])
    return seen


def machine_section(records):
    """Where the records were measured."""
    m = records[0].get("machine") or {}
    v = m.get("versions", {})
    libs = ", ".join(f"{k} {v[k]}" for k in ("numpy", "scipy", "numba", "torch") if k in v)
    return "\n".join([
        f"- CPU: {m.get('cpu')}, {m.get('cores')} usable cores, {m.get('threads')} threads "
        f"for every backend and peer; ISA flags: {' '.join(m.get('isa', [])) or '?'}; native "
        f"kernels' code path: {m.get('native_isa') or 'native backend not built'}",
        f"- {m.get('platform')}; Python {v.get('python')}; {libs}; ctre_sparse "
        f"{v.get('ctre_sparse')}",
        f"- run started {m.get('started_utc')}; load average (1, 5, 15 min) at start "
        f"{m.get('loadavg')}, at end {m.get('loadavg_end')}",
        f"- grid cases left out to bound the run time (n, batch): "
        f"{m.get('left_out_n_batch') or 'none'}",
        f"- dtype {records[0].get('dtype')}, seed {records[0].get('seed')}, "
        f"{len(records)} records ({sum(r['status'] == 'ok' for r in records)} ok, "
        f"{sum(r['status'].startswith('skipped') for r in records)} skipped, "
        f"{sum(r['status'].startswith('failed') for r in records)} failed the reference check)"])


def targets_table(records, n=4096, density=0.01, batch=128):
    """The issue's targets: measured value and verdict."""
    figs = key_figures(records, n=n, density=density, batch=batch)
    if figs is None:
        return "No spmm record of our backends at the target case."
    lines = [f"Fastest of our backends on spmm at n={n}, density {density:g}, batch {batch}: "
             f"**{figs['best']}** ({figs['spmm_gflops']:.1f} GFLOP/s).", "",
             "| target | measured | verdict |", "| --- | ---: | --- |"]
    for label, value, target, met in figs["figures"]:
        verdict = "not measured" if met is None else ("met" if met else "**missed**")
        lines.append(f"| {label} {target} | {_f(value, '.3f')} | {verdict} |")
    return "\n".join(lines)


def case_table(records, n=4096, density=0.01, batch=128):
    """Every competitor and op at one case."""
    lines = ["| op | backend | median ms | min ms | GFLOP/s | vs scipy | vs torch | of dense "
             "| t/spmm |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in [r for r in records if r["series"] == "grid" and r["n_out"] == n
              and r["density"] == density and r["batch"] == batch]:
        if r["status"] != "ok":
            lines.append(f"| {r['op']} | {r['backend']} | {r['status'][:50]} |||||||")
            continue
        lines.append(f"| {r['op']} | {r['backend']} | {r['median_s'] * 1e3:.3f} | "
                     f"{r['min_s'] * 1e3:.3f} | "
                     f"{r['gflops']:.2f} | {_f(r['speedup_vs_scipy'], '.2f')} | "
                     f"{_f(r['speedup_vs_torch'], '.2f')} | {_f(r['fraction_of_dense'], '.1%')} | "
                     f"{_f(r['time_vs_spmm'], '.2f')} |")
    return "\n".join(lines)


def fixed_nnz_table(records):
    """Time per nonzero (ns, whole batch) across n at fixed nnz per row, and its spread."""
    rows = [r for r in records if r["series"] == "fixed_nnz_per_row"]
    if not rows:
        return "No fixed-nnz-per-row series in these records."
    sizes = sorted({r["n_out"] for r in rows})
    k = rows[0]["nnz_per_row"]
    lines = [f"{k:g} nonzeros per row, batch {rows[0]['batch']}; ns per nonzero "
             "(median time / nnz), and max/min across n:", "",
             "| op | backend | " + " | ".join(f"n={n}" for n in sizes) + " | max/min |",
             "| --- | --- | " + " | ".join("---:" for _ in sizes) + " | ---: |"]
    for op in ("spmm", "spmm_t", "sddmm"):
        for b in _competitors(rows):
            vals = {r["n_out"]: r["ns_per_nnz"] for r in _ok(rows, op=op, backend=b)}
            if not vals:
                continue
            spread = max(vals.values()) / min(vals.values()) if len(vals) > 1 else None
            lines.append(f"| {op} | {b} | " + " | ".join(_f(vals.get(n), ".2f") for n in sizes)
                         + f" | {_f(spread, '.2f')} |")
    return "\n".join(lines)


def grid_tables(records):
    """GFLOP/s of every competitor over the whole grid, one table per op."""
    grid = [r for r in records if r["series"] == "grid"]
    names = _competitors(grid)
    out = []
    for op in ("spmm", "spmm_t", "sddmm"):
        rows = [r for r in grid if r["op"] == op]
        if not rows:
            continue
        out += [f"**{op}** (GFLOP/s; `skip`: not run, `FAIL`: wrong result)", "",
                "| n | density | batch | nnz | " + " | ".join(names) + " |",
                "| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in names) + " |"]
        keys = sorted({(r["n_out"], r["density"], r["batch"], r["nnz"]) for r in rows})
        for n, d, b, nnz in keys:
            cells = []
            for name in names:
                match = [r for r in rows if (r["n_out"], r["density"], r["batch"]) == (n, d, b)
                         and r["backend"] == name]
                st = match[0]["status"] if match else "skipped"
                cells.append(_f(match[0]["gflops"], ".2f") if st == "ok"
                             else ("FAIL" if st.startswith("failed") else "skip"))
            out.append(f"| {n} | {d:g} | {b} | {nnz} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def markdown_report(records, n=4096, density=0.01, batch=128):
    """All the result sections as one markdown string."""
    skipped = sorted({(r["backend"], r["status"]) for r in records
                      if r["status"].startswith("skipped")})
    notes = "\n".join(f"- `{b}`: {s}" for b, s in skipped[:10]) or "- none"
    return "\n\n".join([
        "### Machine\n\n" + machine_section(records),
        f"### Targets (n={n}, density {density:g}, batch {batch})\n\n"
        + targets_table(records, n, density, batch),
        f"### Every competitor at n={n}, density {density:g}, batch {batch}\n\n"
        + case_table(records, n, density, batch),
        "### Time per nonzero at fixed nonzeros per row\n\n" + fixed_nnz_table(records),
        "### The whole grid\n\n" + grid_tables(records),
        "### Skipped\n\n" + notes])


def gpu_line(records):
    """The GPU the records were measured on (from the machine block), one line."""
    g = (records[0].get("machine") or {}).get("gpu") or {}
    if not g.get("available"):
        return f"- GPU: none ({g.get('reason', 'no GPU description in the records')})"
    return (f"- GPU: {g.get('gpu')} ({g.get('memory_gib')} GiB), {g.get('devices')} device(s); "
            f"CuPy {g.get('cupy')}, CUDA runtime {g.get('cuda_runtime')}, driver "
            f"{g.get('cuda_driver')}")


def gpu_targets_table(records, n=16384, density=0.01, batches=(128, 256, 512, 1024)):
    """The GPU issue's targets: our ``cuda`` backend against cuSPARSE / the dense baseline."""
    lines = ["| op | batch | ours GFLOP/s | against | speedup | goal | of dense cuBLAS | verdict |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for op, key, goal, against in GPU_TARGETS:
        for b in batches:
            rows = _ok(records, series="grid", op=op, backend="cuda", n_out=n,
                       density=density, batch=b)
            if not rows:
                lines.append(f"| {op} | {b} | – | {against} | – | {_f(goal, 'g')} | – | "
                             "not measured |")
                continue
            r = rows[0]
            value = r.get(key)
            if goal is None or value is None:
                verdict = "–" if goal is None else "not measured"
            else:
                verdict = "met" if value >= goal else "**missed**"
            lines.append(f"| {op} | {b} | {r['gflops']:.1f} | {against} | {_f(value, '.2f')} | "
                         f"{_f(goal, 'g')} | {_f(r.get('fraction_of_dense'), '.1%')} | "
                         f"{verdict} |")
    return "\n".join(lines)


def gpu_markdown_report(records, n=16384, density=0.01, batches=(128, 256, 512, 1024)):
    """The GPU result sections (machine, targets, whole grid) as one markdown string."""
    return "\n\n".join([
        "### Machine\n\n" + gpu_line(records) + "\n" + machine_section(records),
        f"### Targets (n={n}, density {density:g}, batch {', '.join(map(str, batches))})\n\n"
        + gpu_targets_table(records, n, density, batches),
        "### The whole grid\n\n" + grid_tables(records)])


def update_markdown(path, text, start=START, end=END):
    """Replace what lies between the markers ``start`` and ``end`` in file ``path``.

    The defaults are the kernel-results markers :data:`START` and :data:`END`.
    """
    with open(path, encoding="utf-8") as fh:
        doc = fh.read()
    if start not in doc or end not in doc:
        raise ValueError(f"{path} must contain the markers {start} and {end}")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    doc = pattern.sub(lambda _: f"{start}\n{text}\n{end}", doc, count=1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(doc)
    logger.info("updated %s", path)
    return path
