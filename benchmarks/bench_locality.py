"""Three ways to bring wide-layer kernels closer to the gather bound, measured against each other.

The sparse kernels of a wide layer are bound by random row gathers
(``benchmarks/bench_gather.py``). This benchmark tries the three directions of
issue 13, each A/B interleaved in one process (minimum of ``--repeats`` calls
per round, rounds interleaved, the ratio of the best times), on square
``n x n`` layers with 20 nonzeros per row (epsilon 10) and on the hidden
layer of a network trained with CTRE on USPS (``--acts``, from
``benchmarks/index_activations.py``), batch ``--batch``:

- ``renumber``: the neurons renumbered by reverse Cuthill-McKee on the layer's
  bipartite graph (rows that share inputs get close numbers, and their
  inputs too), the native kernels on the permuted arrays against the
  original ones;
- ``bf16``: the gathered dense operand stored as bfloat16 (round to nearest
  even), converted to float32 in the kernel, float32 accumulation: a numba
  ``spmm`` reading bfloat16 rows against the same numba ``spmm`` reading
  float32 rows (the native kernels have no bfloat16 path);
- ``fused``: the backward of a hidden layer in one pass over the cached
  transpose, so that each gathered ``G`` row serves both the weight
  gradient (its dot with the column's ``X`` row) and the input gradient
  (added into the column's output row): numba fused against numba
  ``sddmm`` + ``spmm_t``, and against the native ``sddmm`` + ``spmm_t``.

Example::

    PYTHONPATH=. python benchmarks/bench_locality.py --sizes 16384,100000 --threads 1
"""

import argparse
import json
import os
import sys
import time

import numba
import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from scipy.sparse.csgraph import reverse_cuthill_mckee

from ctre_sparse import ops
from ctre_sparse.sparse import CSRMatrix

PER_ROW = 20


@intrinsic
def _bits_to_f32(typingctx, u):
    """Reinterpret a uint32 as float32 (bfloat16 bits << 16 give the float32 value)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


@njit(parallel=True, fastmath={"contract"}, cache=True)
def spmm_f32(indptr, indices, data, X, out):  # pragma: no cover - compiled
    b = X.shape[1]
    for r in prange(out.shape[0]):
        acc = out[r]
        for j in range(b):
            acc[j] = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            w, x = data[p], X[indices[p]]
            for j in range(b):
                acc[j] += w * x[j]


@njit(parallel=True, fastmath={"contract"}, cache=True)
def spmm_bf16(indptr, indices, data, X, out):  # pragma: no cover - compiled
    b = X.shape[1]
    for r in prange(out.shape[0]):
        acc = out[r]
        for j in range(b):
            acc[j] = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            w, x = data[p], X[indices[p]]
            for j in range(b):
                acc[j] += w * _bits_to_f32(np.uint32(x[j]) << np.uint32(16))


@njit(parallel=True, fastmath={"contract", "reassoc"}, cache=True)
def sddmm_nb(indptr, indices, G, X, out):  # pragma: no cover - compiled
    b = X.shape[1]
    for r in prange(G.shape[0]):
        g = G[r]
        for p in range(indptr[r], indptr[r + 1]):
            x = X[indices[p]]
            s = np.float32(0)
            for j in range(b):
                s += g[j] * x[j]
            out[p] = s


@njit(parallel=True, fastmath={"contract"}, cache=True)
def spmm_t_nb(t_indptr, t_indices, t_perm, data, G, out):  # pragma: no cover - compiled
    b = G.shape[1]
    for c in prange(out.shape[0]):
        acc = out[c]
        for j in range(b):
            acc[j] = 0.0
        for q in range(t_indptr[c], t_indptr[c + 1]):
            w, g = data[t_perm[q]], G[t_indices[q]]
            for j in range(b):
                acc[j] += w * g[j]


@njit(parallel=True, fastmath={"contract", "reassoc"}, cache=True)
def fused_backward(t_indptr, t_indices, t_perm, data, G, X, grad, dX):  # pragma: no cover
    """``grad[p] = G[row(p)] . X[col(p)]`` and ``dX = W.T @ G`` in one pass over columns."""
    b = G.shape[1]
    for c in prange(dX.shape[0]):
        acc, x = dX[c], X[c]
        for j in range(b):
            acc[j] = 0.0
        for q in range(t_indptr[c], t_indptr[c + 1]):
            p = t_perm[q]
            w, g = data[p], G[t_indices[q]]
            s = np.float32(0)
            for j in range(b):
                s += g[j] * x[j]
                acc[j] += w * g[j]
            grad[p] = s


def to_bf16(X):
    """float32 -> bfloat16 bits (uint16), rounded to nearest even."""
    u = X.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


def rcm_permuted(W):
    """``(W', rows, cols)``: W with rows and columns in reverse Cuthill-McKee order."""
    S = sp.csr_matrix((W.data, W.indices, W.indptr), shape=W.shape)
    pattern = sp.csr_matrix((np.ones(W.nnz, np.float32), W.indices, W.indptr), shape=W.shape)
    order = reverse_cuthill_mckee(sp.bmat([[None, pattern], [pattern.T, None]], format="csr"),
                                  symmetric_mode=True)
    rows, cols = order[order < W.n_out], order[order >= W.n_out] - W.n_out
    P = S[rows][:, cols]
    P.sort_indices()
    return (CSRMatrix(P.data.astype(W.dtype), P.indices.astype(W.index_dtype),
                      P.indptr.astype(W.index_dtype), W.shape), rows, cols)


def ab(fns, rounds, repeats):
    """Best time of each callable over interleaved rounds (each round: min of ``repeats``)."""
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(repeats):
                t0 = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - t0)
    return best


def renumber_case(name, W, batch, rng, rounds, repeats):
    t0 = time.perf_counter()
    W2, rows, cols = rcm_permuted(W)
    t_perm = time.perf_counter() - t0
    X = rng.standard_normal((W.n_in, batch), dtype=np.float32)
    G = rng.standard_normal((W.n_out, batch), dtype=np.float32)
    X2, G2 = X[cols].copy(), G[rows].copy()
    np.testing.assert_allclose(ops.spmm(W, X)[rows], ops.spmm(W2, X2), rtol=1e-4, atol=1e-4)
    W.transpose_arrays(), W2.transpose_arrays()
    out, outt = np.empty((W.n_out, batch), np.float32), np.empty((W.n_in, batch), np.float32)
    fns = {}
    for tag, (M, XX, GG) in (("original", (W, X, G)), ("renumbered", (W2, X2, G2))):
        fns[("spmm", tag)] = lambda M=M, XX=XX: ops.spmm(M, XX, out=out, check_finite=False)
        fns[("spmm_t", tag)] = lambda M=M, GG=GG: ops.spmm_t(M, GG, out=outt, check_finite=False)
        fns[("sddmm", tag)] = lambda M=M, XX=XX, GG=GG: ops.sddmm(M, GG, XX)
    best = ab(fns, rounds, repeats)
    return [{"experiment": "renumber", "case": name, "op": op, "batch": batch,
             "seconds_original": best[(op, "original")],
             "seconds_new": best[(op, "renumbered")],
             "speedup": best[(op, "original")] / best[(op, "renumbered")],
             "reorder_seconds": t_perm} for op in ("spmm", "spmm_t", "sddmm")]


def bf16_case(name, W, batch, rng, rounds, repeats):
    X = rng.standard_normal((W.n_in, batch), dtype=np.float32)
    Xb = to_bf16(X)
    a, b = np.empty((W.n_out, batch), np.float32), np.empty((W.n_out, batch), np.float32)
    spmm_f32(W.indptr, W.indices, W.data, X, a)
    spmm_bf16(W.indptr, W.indices, W.data, Xb, b)
    err = float(np.abs(a - b).max() / np.abs(a).max())
    best = ab({"f32": lambda: spmm_f32(W.indptr, W.indices, W.data, X, a),
               "bf16": lambda: spmm_bf16(W.indptr, W.indices, W.data, Xb, b)}, rounds, repeats)
    return [{"experiment": "bf16", "case": name, "op": "spmm (numba)", "batch": batch,
             "seconds_original": best["f32"], "seconds_new": best["bf16"],
             "speedup": best["f32"] / best["bf16"], "relative_error": err}]


def fused_case(name, W, batch, rng, rounds, repeats):
    X = rng.standard_normal((W.n_in, batch), dtype=np.float32)
    G = rng.standard_normal((W.n_out, batch), dtype=np.float32)
    ti, tx, tp = W.transpose_arrays()
    g1, g2 = np.empty(W.nnz, np.float32), np.empty(W.nnz, np.float32)
    d1, d2 = np.empty((W.n_in, batch), np.float32), np.empty((W.n_in, batch), np.float32)

    def separate():
        sddmm_nb(W.indptr, W.indices, G, X, g1)
        spmm_t_nb(ti, tx, tp, W.data, G, d1)

    def native():
        ops.sddmm(W, G, X, out=g1, backend="native")
        ops.spmm_t(W, G, out=d1, backend="native", check_finite=False)

    separate()
    fused_backward(ti, tx, tp, W.data, G, X, g2, d2)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d1, d2, rtol=1e-4, atol=1e-4)
    best = ab({"separate": separate, "native": native,
               "fused": lambda: fused_backward(ti, tx, tp, W.data, G, X, g2, d2)},
              rounds, repeats)
    return [{"experiment": "fused", "case": name, "op": "sddmm + spmm_t (numba)", "batch": batch,
             "seconds_original": best["separate"], "seconds_new": best["fused"],
             "speedup": best["separate"] / best["fused"], "seconds_native_separate":
             best["native"], "speedup_vs_native": best["native"] / best["fused"]}]


def layers(args, rng):
    out = [(f"random {n}", CSRMatrix.random(n, n, nnz=PER_ROW * n, random_state=rng))
           for n in args.sizes]
    if args.acts and os.path.exists(args.acts):
        z = np.load(args.acts)
        ind, ptr, shape = z["W/1/indices"], z["W/1/indptr"], tuple(int(x) for x in z["W/1/shape"])
        out.append((f"USPS-trained {shape[0]}", CSRMatrix(
            rng.standard_normal(ind.shape[0]).astype(np.float32), ind, ptr, shape)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1000, 16384, 100_000])
    p.add_argument("--acts", help="activations file of index_activations.py (its layer 1)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--experiments", default="renumber,bf16,fused")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the records here")
    args = p.parse_args(argv)
    numba.set_num_threads(args.threads)
    from ctre_sparse import _native
    _native.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    run = {"renumber": renumber_case, "bf16": bf16_case, "fused": fused_case}
    recs, load0 = [], os.getloadavg()
    for name, W in layers(args, rng):
        for exp in args.experiments.split(","):
            for r in run[exp](name, W, args.batch, rng, args.rounds, args.repeats):
                r.update(threads=args.threads, nnz=W.nnz)
                recs.append(r)
                extra = (f", {r['speedup_vs_native']:.2f}x the native pair"
                         if "speedup_vs_native" in r else "")
                print(f"{r['experiment']:8s} {name:20s} {r['op']:24s} "
                      f"{r['seconds_original'] * 1e3:9.3f} -> {r['seconds_new'] * 1e3:9.3f} ms "
                      f"({r['speedup']:.2f}x{extra})", flush=True)
    meta = {"load_start": list(load0), "load_end": list(os.getloadavg()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"load average {meta['load_start']} -> {meta['load_end']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "records": recs}, f, indent=1)


if __name__ == "__main__":
    main()
