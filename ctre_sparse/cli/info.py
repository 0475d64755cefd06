"""``ctre-sparse info``: versions, backends, CPU features, threads, index dtypes, tuning, GPU."""

from __future__ import annotations

import json
import sys

__all__ = ["register", "collect_info", "format_info"]

_INDEX_POLICY = ("int32 by default; int64 when nnz or a dimension exceeds 2**31 - 1 "
                 "(ctre_sparse.get_index_dtype)")


def collect_info():
    """Everything ``info`` reports, as a JSON-able dict."""
    from .. import tuning
    from ..backends import backend_status
    from .. import machine

    status = backend_status()
    return {
        "versions": machine.library_versions(),
        "backends": {name: {"available": reason is None, "reason": reason}
                     for name, reason in status.items()},
        "cpu": {"model": machine.cpu_model(), "usable_cores": machine.usable_cores(),
                "isa": machine.isa_features(), "native_isa": machine.native_isa()},
        "threads": machine.thread_counts(),
        "index_dtypes": _INDEX_POLICY,
        "tuning": tuning.status(),
        "cuda": machine.cuda_info(),
    }


def format_info(info):
    """Human-readable lines for :func:`collect_info`'s result."""
    v = info["versions"]
    lines = [f"ctre_sparse {v['ctre_sparse']}",
             "versions: " + ", ".join(f"{k} {v[k] if v[k] is not None else '(not installed)'}"
                                      for k in v if k != "ctre_sparse"),
             "backends:"]
    for name, b in info["backends"].items():
        lines.append(f"  {name:9} " + ("available" if b["available"]
                                       else f"unavailable: {b['reason']}"))
    cpu = info["cpu"]
    lines.append(f"cpu: {cpu['model']} ({cpu['usable_cores']} usable cores)")
    if cpu["isa"] is None:
        lines.append("  ISA features: unknown (no /proc/cpuinfo)")
    else:
        have = [k for k, ok in cpu["isa"].items() if ok]
        lacks = [k for k, ok in cpu["isa"].items() if not ok]
        lines.append(f"  ISA features: {' '.join(have) or 'none'}"
                     + (f" (absent: {' '.join(lacks)})" if lacks else ""))
    if cpu.get("native_isa"):
        lines.append(f"  native kernels use: {cpu['native_isa']}")
    t = info["threads"]
    lines.append("threads: " + ", ".join(f"{k}={'-' if t[k] is None else t[k]}" for k in t))
    lines.append(f"index dtypes: {info['index_dtypes']}")
    tune = info["tuning"]
    lines.append("tuning (CTRE_SPARSE_TUNING): " + (
        f"OpenMP spin count {tune['openmp_spin_count']}" if tune["openmp_spin_count"]
        else f"spin count not set: {tune['reason']}"))
    c = info["cuda"]
    if c.get("available"):
        lines.append(f"cuda: {c['gpu']} ({c['memory_gib']} GiB), CuPy {c['cupy']}, "
                     f"CUDA runtime {c['cuda_runtime']}, driver {c['cuda_driver']}")
    else:
        lines.append(f"cuda: unavailable: {c.get('reason')}")
    return "\n".join(lines)


def _run(args):
    info = collect_info()
    if args.json:
        json.dump(info, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_info(info))
    return 0


def register(subparsers):
    """Add the ``info`` command to ``subparsers``."""
    parser = subparsers.add_parser(
        "info", help="versions, backends and why any is unavailable, CPU features, threads",
        description="Report the versions, the backends (available or why not), CPU ISA "
                    "features, thread counts, the index dtype policy and the GPU.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=_run)
    return parser
