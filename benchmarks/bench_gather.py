"""Random-row gather bandwidth (the sparse kernels' bound at wide layers), and the kernels against it.

Each of the three sparse kernels reads, per nonzero, one row of ``batch``
float32 values of a dense operand chosen by the nonzero's column (spmm: a row
of X; spmm_t: a row of G through the cached transpose; sddmm: a row of X,
the G row staying put for the output row's nonzeros). Once that operand no
longer fits in cache, the speed of these random row reads is what bounds
them. This benchmark measures it:

- **gather**: ``out[r] = sum of X[idx[p]]`` over 20 random rows per output
  row (numba, ``prange`` over output rows, one add per value, so the reads
  alone cost), each row prefetched ``d`` gathers ahead; the best over ``d``
  in {0, 8, 16}: the random-row gather bound for a table of ``n`` rows;
- **stream**: the same with ``idx`` sorted (consecutive rows): the
  streaming bound of the same table, for reference;
- **kernels**: ``ops.spmm``, ``ops.spmm_t``, ``ops.sddmm`` (``--backend``)
  on a square ``n x n`` layer with 20 nonzeros per row (an Erdős–Rényi
  layer at epsilon 10), batch ``--batch``.

Every figure is GB/s of gathered rows, ``nnz * batch * 4 / time``; the
kernels are also given as a fraction of the gather bound at the same ``n``
and threads, and as ns per (nonzero x sample). Times are the minimum over
``--repeats`` calls (after a warm-up): on a shared machine the minimum is the
least disturbed call; the median is in the JSON too. The kernels' results
are checked against the reference backend before timing.

Example::

    PYTHONPATH=. python benchmarks/bench_gather.py --sizes 1000,16384,100000 --threads 1,2
"""

import argparse
import json
import os
import statistics
import sys
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

PER_ROW = 20
PREFETCH_DISTANCES = (0, 8, 16)


@intrinsic
def _prefetch(typingctx, arr, i):
    """``__builtin_prefetch(&arr[i], read, keep in all levels)``."""
    sig = types.void(arr, i)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


@njit(parallel=True, fastmath=True, cache=True)
def gather_sum(X, idx, per_row, out, dist):  # pragma: no cover - compiled
    """``out[r] = sum(X[idx[r * per_row + q]] for q < per_row)``, rows prefetched ``dist`` ahead.

    Four gathered rows per pass over the accumulator row, so that its loads
    and stores (L1) cost a quarter of the gathered values' (``per_row`` a
    multiple of 4).
    """
    batch = X.shape[1]
    flat = X.reshape(-1)
    n = idx.shape[0]
    for r in prange(out.shape[0]):
        acc = out[r]
        for j in range(batch):
            acc[j] = 0.0
        for p in range(r * per_row, (r + 1) * per_row, 4):
            if dist > 0 and p + dist + 3 < n:
                for u in range(4):
                    ahead = idx[p + dist + u] * batch
                    for line in range(0, batch, 16):
                        _prefetch(flat, ahead + line)
            x0, x1, x2, x3 = X[idx[p]], X[idx[p + 1]], X[idx[p + 2]], X[idx[p + 3]]
            for j in range(batch):
                acc[j] += (x0[j] + x1[j]) + (x2[j] + x3[j])


def _time(fn, repeats, budget=2.0):
    fn()
    ts = []
    t_end = time.perf_counter() + budget
    while len(ts) < repeats or (time.perf_counter() < t_end and len(ts) < 5 * repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        if len(ts) >= repeats and time.perf_counter() > t_end:
            break
    return min(ts), statistics.median(ts)


def _layer(n, rng):
    from ctre_sparse.sparse import CSRMatrix

    W = CSRMatrix.random(n, n, nnz=PER_ROW * n, random_state=rng)
    W.transpose_arrays()  # built once per topology in training
    return W


def _check(W, X, G):
    from ctre_sparse import ops

    ref = {"spmm": ops.spmm(W, X, backend="reference"),
           "spmm_t": ops.spmm_t(W, G, backend="reference"),
           "sddmm": ops.sddmm(W, G, X, backend="reference")}
    return ref


def measure(n, batch, threads, backend, repeats, rng):
    """Records for one table size and thread count."""
    from ctre_sparse import ops
    from ctre_sparse.backends import get_backend

    numba.set_num_threads(threads)
    if backend == "native":
        get_backend("native")
        from ctre_sparse import _native
        _native.set_num_threads(threads)
    X = rng.standard_normal((n, batch), dtype=np.float32)
    G = rng.standard_normal((n, batch), dtype=np.float32)
    idx = rng.integers(0, n, PER_ROW * n).astype(np.int64)
    out = np.empty((n, batch), np.float32)
    gathered = PER_ROW * n * batch * 4
    recs = []
    for name, ids in (("gather", idx), ("stream", np.sort(idx))):
        best = None
        for dist in PREFETCH_DISTANCES:
            t = _time(lambda ids=ids, d=dist: gather_sum(X, ids, PER_ROW, out, d), repeats, 1.0)
            if best is None or t[0] < best[0][0]:
                best = (t, dist)
        recs.append({"what": name, "seconds_min": best[0][0], "seconds_median": best[0][1],
                     "prefetch_distance": best[1]})
    W = _layer(n, rng)
    ref = _check(W, X, G)
    calls = {"spmm": lambda: ops.spmm(W, X, out=out, backend=backend, check_finite=False),
             "spmm_t": lambda: ops.spmm_t(W, G, out=out, backend=backend, check_finite=False),
             "sddmm": lambda: ops.sddmm(W, G, X, backend=backend)}
    for name, fn in calls.items():
        got = fn()
        err = float(np.abs(got - ref[name]).max() / max(np.abs(ref[name]).max(), 1e-30))
        if err > 1e-4:
            raise SystemExit(f"{name} at n={n}: relative error {err:.2e} against the reference")
        tmin, tmed = _time(fn, repeats)
        recs.append({"what": name, "seconds_min": tmin, "seconds_median": tmed,
                     "check_error": err})
    bound = recs[0]["seconds_min"]
    for r in recs:
        r.update(n=n, batch=batch, threads=threads, backend=backend, nnz=PER_ROW * n,
                 table_bytes=n * batch * 4, gb_per_s=gathered / r["seconds_min"] / 1e9,
                 ns_per_nnz_sample=r["seconds_min"] / (PER_ROW * n * batch) * 1e9,
                 fraction_of_gather=bound / r["seconds_min"])
    return recs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1000, 16384, 100_000, 1_000_000])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--backend", default="native")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the records here")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    recs = []
    load0 = os.getloadavg()
    for threads in args.threads:
        for n in args.sizes:
            for r in measure(n, args.batch, threads, args.backend, args.repeats, rng):
                recs.append(r)
                print(f"n {n:>9,} batch {args.batch} threads {threads} {r['what']:7s} "
                      f"{r['gb_per_s']:7.2f} GB/s  {r['ns_per_nnz_sample']:.4f} ns/(nnz x sample)"
                      f"  {100 * r['fraction_of_gather']:5.1f}% of gather", flush=True)
    meta = {"load_start": list(load0), "load_end": list(os.getloadavg()),
            "cpu_count": os.cpu_count(), "per_row": PER_ROW,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "records": recs}, f, indent=1)
    print(f"load average {meta['load_start']} -> {meta['load_end']}", file=sys.stderr)


if __name__ == "__main__":
    main()
