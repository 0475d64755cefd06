"""Timing and bookkeeping for benchmarks that cannot lie.

The rules (STYLE item 15): check the result against the reference before
timing; warm up so JIT compilation stays out of the clock; synchronize the
device before reading the clock; use fixed seeds; report GFLOP/s beside the
time, and ratios only to peers measured in the same run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Timing", "ResultMismatchError", "time_call", "gflops", "as_numpy", "relative_error",
           "check_result", "CHECK_RTOL", "PEERS", "add_ratios", "write_json", "read_json",
           "command_main"]

#: Largest accepted ``max|actual - expected| / max|expected|`` per value dtype.
CHECK_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}

#: Peer names that get a ``speedup_vs_<peer>`` field on every record.
PEERS = ("scipy", "torch", "dense", "cusparse")


class ResultMismatchError(AssertionError):
    """A benchmarked implementation returned a result different from the reference."""


@dataclass(frozen=True)
class Timing:
    """Timing of one benchmarked call: median of ``n_repeats`` timed calls."""

    median_s: float
    min_s: float
    max_s: float
    n_repeats: int
    n_warmup: int


def time_call(fn, *, warmup=1, min_time=0.2, max_repeat=20, min_repeat=3, sync=None,
              clock=time.perf_counter):
    """Time ``fn()``: warm-up calls, then repeats until ``min_time`` or ``max_repeat``.

    Timed calls stop once at least ``min_repeat`` were made and their total
    reaches ``min_time`` seconds, or when ``max_repeat`` were made.

    Parameters
    ----------
    fn : callable
        Called without arguments.
    warmup : int, default 1
        Untimed calls first (JIT compilation, caches, lazy allocation).
    min_time : float, default 0.2
        Seconds of timed calls to aim for.
    max_repeat : int, default 20
    min_repeat : int, default 3
        Clamped to ``max_repeat``.
    sync : callable, optional
        Called after every call, before the clock is read (device synchronize).
    clock : callable, default time.perf_counter

    Returns
    -------
    Timing

    Examples
    --------
    >>> t = time_call(lambda: sum(range(100)), max_repeat=5, min_time=0.0)
    >>> t.n_repeats, t.median_s >= 0
    (3, True)
    """
    if max_repeat < 1 or warmup < 0:
        raise ValueError(f"need max_repeat >= 1 and warmup >= 0, got {max_repeat}, {warmup}")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
        sync()
    min_repeat = min(max(1, min_repeat), max_repeat)
    times = []
    while len(times) < max_repeat and (len(times) < min_repeat or sum(times) < min_time):
        sync()
        t0 = clock()
        fn()
        sync()
        times.append(clock() - t0)
    return Timing(statistics.median(times), min(times), max(times), len(times), warmup)


def gflops(nnz, batch, seconds):
    """Useful GFLOP/s of a sparse product: ``2 * nnz * batch / seconds / 1e9``.

    Examples
    --------
    >>> gflops(1_000_000, 100, 0.1)
    2.0
    """
    if seconds is None or not seconds > 0:
        return None
    return 2.0 * float(nnz) * float(batch) / float(seconds) / 1e9


def as_numpy(a):
    """A NumPy array of ``a`` (NumPy, CuPy or torch)."""
    if hasattr(a, "get"):  # CuPy
        return a.get()
    if hasattr(a, "numpy"):  # torch
        return a.numpy()
    return np.asarray(a)


def relative_error(actual, expected):
    """``max|actual - expected| / max(max|expected|, tiny)``; inf on shape mismatch or NaN."""
    actual, expected = as_numpy(actual), as_numpy(expected)
    if actual.shape != expected.shape:
        return math.inf
    if expected.size == 0:
        return 0.0
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    if not np.all(np.isfinite(diff)):
        return math.inf
    scale = max(float(np.max(np.abs(expected))), np.finfo(np.float64).tiny)
    return float(np.max(diff)) / scale


def check_result(actual, expected, dtype, *, what="result"):
    """Raise :class:`ResultMismatchError` unless ``actual`` matches ``expected``.

    The error is measured relative to the largest expected magnitude and
    compared with :data:`CHECK_RTOL` of ``dtype``. Returns the error.
    """
    err = relative_error(actual, expected)
    rtol = CHECK_RTOL[np.dtype(dtype)]
    if not err <= rtol:
        got = tuple(getattr(actual, "shape", ()))
        raise ResultMismatchError(f"{what} differs from the reference: relative error {err:.3g} "
                                  f"> {rtol:g} (shapes {got} vs {tuple(expected.shape)})")
    return err


# -------------------------------------------------------------------- ratios
def _ok(rec):
    return rec.get("status") == "ok" and rec.get("median_s")


def add_ratios(records, case_keys=("series", "op", "n_out", "n_in", "nnz", "batch", "dtype",
                                   "device")):
    """Fill the ratio fields of every record, from records of the same case.

    Adds ``speedup_vs_<peer>`` (peer time / this time) for each name in
    :data:`PEERS`, ``fraction_of_dense`` (this record's useful GFLOP/s over
    the dense peer's actual GFLOP/s, ``2 * n_out * n_in * batch / t``), and
    ``time_vs_spmm`` (this time / the same backend's spmm time on the same
    matrix and batch). A field is None when its counterpart was not measured.
    Records are changed in place and returned.
    """
    cases = {}
    for rec in records:
        cases.setdefault(tuple(rec.get(k) for k in case_keys), []).append(rec)
    spmm = {}
    for rec in records:
        if rec.get("op") == "spmm" and _ok(rec):
            key = tuple(rec.get(k) for k in case_keys if k != "op") + (rec["backend"],)
            spmm[key] = rec["median_s"]
    for group in cases.values():
        by_backend = {r["backend"]: r for r in group if _ok(r)}
        for rec in group:
            mine = rec["median_s"] if _ok(rec) else None
            for peer in PEERS:
                other = by_backend.get(peer)
                rec[f"speedup_vs_{peer}"] = (other["median_s"] / mine) if (other and mine) else None
            dense = by_backend.get("dense")
            rec["fraction_of_dense"] = (rec["gflops"] / dense["dense_gflops"]
                                        if dense and mine and dense.get("dense_gflops") else None)
            key = tuple(rec.get(k) for k in case_keys if k != "op") + (rec["backend"],)
            ref = spmm.get(key)
            rec["time_vs_spmm"] = mine / ref if (mine and ref) else None
    return records


# ---------------------------------------------------------------------- JSON
def _clean(value):
    """Make a value strict-JSON safe: NaN/Inf to None, numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(records, path):
    """Write ``records`` (a list of dicts) to ``path`` as strict JSON (a list).

    The file is written to a temporary name and renamed, so an interrupted
    run never leaves half a file.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_clean(list(records)), fh, indent=1, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)
    logger.info("wrote %d records to %s", len(records), path)
    return path


def read_json(path):
    """Read a list of benchmark records written by :func:`write_json`."""
    with open(path, encoding="utf-8") as fh:
        records = json.load(fh)
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a JSON list of records, got {type(records).__name__}")
    return records


def command_main(doc, add_arguments, run_from_args, argv=None):
    """A benchmark command: parse ``argv`` with ``add_arguments``, run ``run_from_args``.

    Returns its exit code; an expected failure (``ValueError``,
    ``FileNotFoundError``, ``RuntimeError``) becomes one line
    ``PROG: error: ...`` on stderr and exit code 1.
    """
    import argparse

    parser = add_arguments(argparse.ArgumentParser(description=doc.split("\n")[0]))
    try:
        return run_from_args(parser.parse_args(argv))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
