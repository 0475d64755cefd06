"""What the index-structure validation costs spmm: first (uncached) call and steady state.

Every op validates a CSR matrix's structure before a compiled kernel sees it
(:meth:`ctre_sparse.CSRMatrix.validate`): O(nnz) the first time (copy the
index arrays, one checking pass, lock them read-only), O(1) after. This
script times ``spmm`` three ways, interleaved call by call so that machine
load hits all three alike:

* ``unchecked``: ``check=False``, no structure check (the baseline);
* ``cached``: a matrix validated before, the steady state of training;
* ``first``: a fresh ``CSRMatrix`` around the caller's arrays, so the call
  pays the whole validation;

and reports medians and 10th percentiles (less touched by other processes
on a shared machine) and each one's cost over the baseline, plus
``validate()`` alone (a fresh matrix around the caller's arrays each time),
after another spmm (caches cold) and back to back (arrays in cache). The
result is checked against the reference first.

Usage::

    python benchmarks/bench_validation.py [--n 4096] [--density 0.01] [--batch 128]
        [--backends native numba] [--rounds 200] [--index-dtype int32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ctre_sparse import CSRMatrix, available_backends, spmm


def _median_us(times):
    return float(np.median(times) * 1e6)


def measure(backend, n, density, batch, rounds, index_dtype, seed=0):
    """Interleaved timings (microseconds, medians) of the three ways of calling spmm."""
    W = CSRMatrix.random(n, n, density=density, random_state=seed, index_dtype=index_dtype)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, batch)).astype(np.float32)
    out = np.empty((n, batch), np.float32)
    # the caller's own arrays, as a user would build them
    data, indices, indptr = W.data.copy(), W.indices.copy(), W.indptr.copy()
    ref = spmm(W, X, backend="reference")
    np.testing.assert_allclose(spmm(W, X, backend=backend), ref, rtol=1e-4, atol=1e-4)

    def unchecked():
        spmm(W, X, out=out, backend=backend, check=False)

    def cached():
        spmm(W, X, out=out, backend=backend)

    def first():
        spmm(CSRMatrix(data, indices, indptr, W.shape), X, out=out, backend=backend)

    def validate_only():
        CSRMatrix(data, indices, indptr, W.shape).validate()

    variants = {"unchecked": unchecked, "cached": cached, "first": first,
                "validate_only": validate_only}
    for f in variants.values():  # warm-up: JIT, caches, page faults
        for _ in range(3):
            f()
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    # validate() back to back: the index arrays stay in cache (a matrix just built)
    times["validate_hot"] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        validate_only()
        times["validate_hot"].append(time.perf_counter() - t0)
    med = {name: _median_us(t) for name, t in times.items()}
    low = {name: float(np.percentile(t, 10) * 1e6) for name, t in times.items()}
    return {
        "backend": backend, "n": n, "density": density, "batch": batch, "nnz": W.nnz,
        "index_dtype": np.dtype(index_dtype).name, "rounds": rounds,
        "median_us": med, "p10_us": low,
        "cost_vs_unchecked": {name: med[name] / med["unchecked"] - 1.0
                              for name in ("cached", "first")},
        "cost_vs_unchecked_p10": {name: low[name] / low["unchecked"] - 1.0
                                  for name in ("cached", "first")},
        "validate_share_of_spmm": med["validate_only"] / med["unchecked"],
        "validate_share_of_spmm_p10": low["validate_only"] / low["unchecked"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--index-dtype", default="int32", choices=["int32", "int64"])
    parser.add_argument("--backends", nargs="+", default=None,
                        help="default: native and numba where available")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    backends = args.backends or [b for b in ("native", "numba") if b in available_backends()]
    results = []
    print(f"load {os.getloadavg()[0]:.2f}; n={args.n} density={args.density} "
          f"batch={args.batch} {args.index_dtype}, {args.rounds} interleaved rounds")
    for backend in backends:
        res = measure(backend, args.n, args.density, args.batch, args.rounds, args.index_dtype)
        for stat, suffix in (("median", ""), ("p10", "_p10")):
            t, cost = res[f"{stat}_us"], res["cost_vs_unchecked" + suffix]
            print(f"{backend:>8} {stat:>6}: spmm unchecked {t['unchecked']:8.1f} us | cached "
                  f"{t['cached']:8.1f} us ({100 * cost['cached']:+.2f}%) | first call "
                  f"{t['first']:8.1f} us ({100 * cost['first']:+.2f}%) | validate() alone "
                  f"{t['validate_only']:6.1f} us "
                  f"({100 * res['validate_share_of_spmm' + suffix]:.2f}% of spmm), in cache "
                  f"{t['validate_hot']:5.1f} us")
        results.append(res)
    print(f"load {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
