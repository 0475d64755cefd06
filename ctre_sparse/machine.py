"""What this machine has: CPU model, ISA features, usable cores, threads, library versions, GPU.

``ctre-sparse info`` reports it; the benchmarks (``benchmarks/``) put it in
every record, so that every number written to disk says where it came from.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import sys

logger = logging.getLogger(__name__)

__all__ = ["KERNEL_ISA_FLAGS", "cpu_model", "cpu_flags", "isa_features", "usable_cores",
           "library_versions", "thread_counts", "native_isa", "cuda_info"]

#: CPU flags (as spelled in /proc/cpuinfo) that matter to the kernels.
KERNEL_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq",
                    "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "amx_tile")


def _cpuinfo_lines(path="/proc/cpuinfo"):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def cpu_model(path="/proc/cpuinfo"):
    """The CPU model name, from ``path`` (/proc/cpuinfo) where it exists, else :mod:`platform`."""
    for line in _cpuinfo_lines(path):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(path="/proc/cpuinfo"):
    """The set of CPU feature flags of the first CPU in ``path`` (empty where it is missing)."""
    for line in _cpuinfo_lines(path):
        if line.startswith("flags") or line.startswith("Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def isa_features(path="/proc/cpuinfo"):
    """``{flag: bool}`` for the flags in :data:`KERNEL_ISA_FLAGS` (from ``path``), or None."""
    flags = cpu_flags(path)
    if not flags:
        return None
    return {name: name in flags for name in KERNEL_ISA_FLAGS}


def usable_cores():
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _version(module_name):
    try:
        return getattr(importlib.import_module(module_name), "__version__", "unknown")
    except Exception as exc:  # a missing or broken optional library is just reported
        logger.debug("cannot import %s: %s", module_name, exc)
        return None


def library_versions(optional=("torch", "cupy", "matplotlib")):
    """Versions of Python, the core libraries and the ``optional`` ones (None: not importable)."""
    from ._version import __version__

    versions = {"ctre_sparse": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "numba") + tuple(optional):
        versions[name] = _version(name)
    return versions


def thread_counts():
    """Thread counts: native (if built), numba, torch (if imported), OMP_NUM_THREADS."""
    counts = {"native": None, "numba": None, "torch": None,
              "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    from .backends import backend_status, get_backend

    if backend_status()["native"] is None:
        native = get_backend("native")
        if hasattr(native, "get_num_threads"):
            counts["native"] = int(native.get_num_threads())
    try:
        import numba

        counts["numba"] = int(numba.get_num_threads())
    except Exception as exc:  # numba is a dependency, but report rather than crash
        logger.debug("numba thread count unavailable: %s", exc)
    if "torch" in sys.modules:
        counts["torch"] = int(sys.modules["torch"].get_num_threads())
    return counts


def native_isa():
    """The code path the native kernels use here (e.g. "avx512"), or None if not built."""
    from .backends import backend_status, get_backend

    if backend_status()["native"] is not None:
        return None
    native = get_backend("native")
    return str(native.isa()) if hasattr(native, "isa") else None


def cuda_info():
    """GPU name, CuPy and CUDA versions, or ``{"available": False, "reason": ...}``."""
    try:
        import cupy
    except Exception as exc:
        return {"available": False, "reason": f"CuPy not importable ({type(exc).__name__}: {exc})"}
    try:
        n_dev = cupy.cuda.runtime.getDeviceCount()
        if n_dev == 0:
            return {"available": False, "reason": "CuPy found no CUDA device",
                    "cupy": cupy.__version__}
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        return {"available": True, "gpu": name, "devices": int(n_dev), "cupy": cupy.__version__,
                "cuda_runtime": int(cupy.cuda.runtime.runtimeGetVersion()),
                "cuda_driver": int(cupy.cuda.runtime.driverGetVersion()),
                "memory_gib": round(props["totalGlobalMem"] / 2**30, 1)}
    except Exception as exc:  # driver missing, no device, ...
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}",
                "cupy": getattr(cupy, "__version__", None)}
