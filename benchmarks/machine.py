"""The machine block of a benchmark record: where and on what code a number was measured."""

from __future__ import annotations

import logging
import os
import platform

from ctre_sparse.machine import (cpu_model, cuda_info, isa_features, library_versions, native_isa,
                                 usable_cores)

logger = logging.getLogger(__name__)

__all__ = ["machine_block", "code_version", "short_commit", "loadavg", "usable_cores", "cuda_info"]


def loadavg():
    """The 1, 5 and 15 minute load averages (rounded), or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_block(threads=None, device="cpu"):
    """A compact, JSON-able description of this machine for benchmark records.

    Parameters
    ----------
    threads : int, optional
        Threads the benchmark ran with.
    device : {"cpu", "cuda"}
        Adds the GPU description for "cuda".
    """
    features = isa_features() or {}
    block = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "threads": threads,
        "isa": sorted(k for k, v in features.items() if v),
        "native_isa": native_isa(),
        "platform": platform.platform(terse=True),
        "loadavg": loadavg(),
        "versions": {k: v for k, v in library_versions().items() if v is not None},
    }
    if device == "cuda":
        block["gpu"] = cuda_info()
    return block


def code_version():
    """``{"commit", "dirty"}`` of the git checkout the package runs from (None outside one).

    ``dirty`` lists the modified tracked files under ``ctre_sparse/``, ``csrc/``
    and ``benchmarks/``: the timed code is the commit plus those changes.
    """
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                 "ctre_sparse", "csrc", "benchmarks"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("no git version: %s", exc)
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": sorted(line[3:] for line in status.splitlines())}


def short_commit():
    """The checkout's commit, abbreviated to 7 characters (None outside a git checkout).

    Accuracy runs record it per run, since the library may change between runs.
    """
    commit = code_version()["commit"]
    return None if commit is None else commit[:7]
