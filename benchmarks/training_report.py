"""Text and Markdown for the training benchmark's records.

:func:`format_record` is the block printed after each network;
:func:`markdown_results` the results section of ``docs/benchmarks.md``
(written between :data:`START` and :data:`END` by :func:`update_markdown`).
"""

from __future__ import annotations

from . import report
from .training_profile import format_profile

__all__ = ["START", "END", "GPU_START", "GPU_END", "format_record", "markdown_results",
           "steady_topology", "update_markdown"]

START, END = "<!-- training-results:start -->", "<!-- training-results:end -->"
GPU_START, GPU_END = "<!-- gpu-training-results:start -->", "<!-- gpu-training-results:end -->"


def _fmt(value, spec, suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_record(rec):
    """A readable block for one record: our epoch, the peer, the targets."""
    peer = rec["peer"]
    lines = [
        f"network {rec['network']}, epsilon {rec['epsilon']:g} ({rec['nnz_total']:,} "
        f"connections), batch {rec['batch']}, {rec['samples']:,} samples, growth "
        f"{rec['growth']} (zeta {rec['zeta']:g}, cosine over {rec['cosine_samples']:,} "
        f"samples{_approx(rec)}), backend {rec['backend']}, {rec['threads']} threads, "
        f"{rec['dtype']}",
        f"  check vs reference ({rec['check_samples']} samples): ours "
        f"{rec['check_error']:.2g}, peer {_fmt(peer.get('check_error'), '.2g')}",
        f"  ours : {rec['seconds_per_epoch']:.3f} s/epoch = train {rec['train_seconds']:.3f} s "
        f"+ topology {rec['topology_seconds']:.3f} s ({rec['topology_fraction']:.1%}); "
        f"{rec['ns_per_nnz_sample']:.4f} ns per (nonzero x sample), "
        f"{_fmt(rec['train_gflops'], '.1f')} useful GFLOP/s; loss {rec['initial_loss']:.3f} -> "
        f"{rec['train_loss']:.3f}, train acc {rec['train_accuracy']:.3f}; CPU use "
        f"{rec['cpu_utilization']:.0%} of {rec['threads']} thread(s)"]
    if peer["status"] == "ok":
        how = (f"{peer['batches_timed']} of {peer['n_batches']} batches timed, EXTRAPOLATED to "
               "the epoch" if peer["extrapolated"] else "full epoch timed")
        lines.append(f"  torch dense+mask: {peer['seconds_per_epoch']:.3f} s/epoch ({how}, "
                     f"{peer['threads']} threads); loss {peer['train_loss']:.3f}, train acc "
                     f"{peer['train_accuracy']:.3f}")
        lines.append(f"  speedup vs torch: {rec['speedup_vs_torch']:.2f}x (our whole epoch) / "
                     f"{rec['train_speedup_vs_torch']:.2f}x (training only)")
    else:
        lines.append(f"  torch dense+mask: {peer['status']}")
    for name, t in rec["targets"].items():
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(f"  target {name:<20} {_fmt(t['value'], '9.4f')}  {t['target']:<8} {verdict}")
    if "profile" in rec:
        lines.append(f"  profile of one more epoch ({rec['profile']['seconds']:.3f} s with "
                     "timers):")
        lines.append(format_profile(rec["profile"]))
    return "\n".join(lines)


def _approx(rec):
    """``", sketched (dim N, oversample M) in layers >= 4096 x 4096"`` when the record used it."""
    dim = rec.get("cosine_approx_dim")
    if dim is None:
        return ""
    return (f", sketched (dim {dim}, oversample {rec.get('cosine_approx_oversample')}) in "
            "layers >= 4096 x 4096")


def _verdict(met):
    return "not measured" if met is None else ("**met**" if met else "**missed**")


def _machine(rec):
    m = rec["machine"]
    v = m.get("versions", {})
    code = m.get("code") or {}
    dirty = code.get("dirty")
    gpu = [report.gpu_line([rec])] if "gpu" in m else []
    return "\n".join(gpu + [
        f"- CPU: {m.get('cpu')}, {m.get('cores')} usable cores, ISA "
        f"{', '.join(m.get('isa') or []) or '?'}; native kernels: {m.get('native_isa')}",
        f"- threads (ours, torch, BLAS): {m.get('threads')}; load average at start "
        f"{m.get('loadavg')}, at end {m.get('loadavg_end')}; started {m.get('started_utc')}",
        "- versions: " + ", ".join(f"{k} {v[k]}" for k in ("ctre_sparse", "python", "numpy",
                                                            "numba", "torch") if k in v),
        f"- code: commit `{(code.get('commit') or '?')[:12]}`"
        + (f", with uncommitted changes in {', '.join(f'`{d}`' for d in dirty)}" if dirty
           else ", clean") if dirty is not None else "- code: not from a git checkout"])


def steady_topology(epochs):
    """The topology update after the first timed epoch: its mean and share of those epochs.

    The first update of a run also pays for memory touched for the first time
    (page faults), which a long run amortises; the targets use the mean over
    all timed epochs, this is shown beside it. None with a single epoch.
    """
    later = epochs[1:]
    if not later:
        return {"topology_seconds_steady": None, "topology_fraction_steady": None}
    topo = sum(e["topology_seconds"] for e in later) / len(later)
    total = sum(e["seconds"] for e in later) / len(later)
    return {"topology_seconds_steady": topo,
            "topology_fraction_steady": topo / total if total else None}


def _steady(rec):
    steady = steady_topology(rec["per_epoch"])  # also for records written before the field
    topo, share = steady["topology_seconds_steady"], steady["topology_fraction_steady"]
    if topo is None:
        return "- (one epoch timed)"
    first = rec["per_epoch"][0]["topology_seconds"]
    return f"{topo:.3f} ({share:.1%} of those epochs; the first update took {first:.3f})"


def _figures(rec):
    peer = rec["peer"]
    rows = [
        ("seconds per epoch", f"{rec['seconds_per_epoch']:.3f}"),
        ("of which forward + backward + update", f"{rec['train_seconds']:.3f}"),
        ("of which the topology update", f"{rec['topology_seconds']:.3f} "
                              f"({rec['topology_fraction']:.1%} of the epoch)"),
        ("topology update after the first epoch (epochs 2+)", _steady(rec)),
        ("ns per (nonzero x sample)", f"{rec['ns_per_nnz_sample']:.4f}"),
        ("useful GFLOP/s (training)", _fmt(rec["train_gflops"], ".1f")),
        ("loss: first batch -> epoch mean (last epoch)",
         f"{rec['initial_loss']:.3f} -> {rec['train_loss']:.3f} "
         f"(train accuracy {rec['train_accuracy']:.3f})"),
        ("CPU use during our epochs", f"{rec['cpu_utilization']:.0%} of {rec['threads']} "
                                      "thread(s)"),
        ("check vs reference (ours / peer)",
         f"{rec['check_error']:.1e} / {_fmt(peer.get('check_error'), '.1e')}")]
    if peer["status"] == "ok":
        how = (f"{peer['batches_timed']} of {peer['n_batches']} batches timed, extrapolated"
               if peer["extrapolated"] else "full epoch timed")
        rows += [("torch dense+mask, seconds per epoch",
                  f"{peer['seconds_per_epoch']:.3f} ({how}; loss {peer['train_loss']:.3f}, "
                  f"accuracy {peer['train_accuracy']:.3f})"),
                 ("speedup vs torch: whole epoch / training only",
                  f"{rec['speedup_vs_torch']:.2f}x / {rec['train_speedup_vs_torch']:.2f}x")]
    else:
        rows.append(("torch dense+mask", peer["status"]))
    return "| figure | value |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def _targets(rec):
    lines = ["| target | value | goal | verdict |", "| --- | --- | --- | --- |"]
    for name, t in rec["targets"].items():
        lines.append(f"| `{name}` | {_fmt(t['value'], '.4g')} | {t['target']} | "
                     f"{_verdict(t['met'])} |")
    return "\n".join(lines)


def _profile(rec, top=14):
    prof = rec["profile"]
    lines = ["| where | seconds | share | calls |", "| --- | ---: | ---: | ---: |"]
    for label, row in list(prof["ops"].items())[:top]:
        lines.append(f"| {label} | {row['seconds']:.3f} | {row['seconds'] / prof['seconds']:.1%} "
                     f"| {row['calls']} |")
    return (f"One more epoch with timers around each op ({prof['seconds']:.3f} s; exclusive "
            f"wall time per label, the {top} largest):\n\n" + "\n".join(lines))


def markdown_results(records):
    """The results section (Markdown) for a list of training-benchmark records."""
    if not records:
        return "*No records.*"
    parts = ["### Machine\n\n" + _machine(records[0])]
    for rec in records:
        parts.append(f"### {rec['network']}, {rec['samples']:,} samples, {rec['epochs']} "
                     f"epoch(s), growth {rec['growth']}, backend {rec['backend']}\n\n"
                     + _figures(rec) + "\n\n" + _targets(rec))
        if "profile" in rec:
            parts.append(_profile(rec))
    return "\n\n".join(parts)


def update_markdown(path, text, gpu=False):
    """Replace what lies between :data:`START` and :data:`END` in file ``path``
    (:data:`GPU_START` and :data:`GPU_END` for GPU records, ``gpu=True``)."""
    if gpu:
        return report.update_markdown(path, text, start=GPU_START, end=GPU_END)
    return report.update_markdown(path, text, start=START, end=END)
