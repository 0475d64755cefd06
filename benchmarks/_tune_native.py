"""Quick tuning timer for the native kernels (not the benchmark suite).

Times spmm / spmm_t / sddmm of the native backend beside scipy.sparse,
PyTorch CSR and dense numpy sgemm, interleaved in one run, and prints median
times and ratios. Results are checked against the reference before timing.

    PYTHONPATH=. python benchmarks/_tune_native.py [--n 4096] [--density 0.01]
        [--batch 128] [--repeat 15] [--isa avx512] [--scaling]
"""

import argparse
import time

import numpy as np
import scipy.sparse as sp

from ctre_sparse.backends import native  # first: it sets up libgomp (see native.OMP_SPIN_COUNT)
from ctre_sparse.sparse import CSRMatrix

_native = native._native


def _median_time(fn, repeat, inner):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return float(np.median(ts))


def _operands(n, density, batch, seed=0):
    W = CSRMatrix.random(n, n, density, random_state=seed, dtype=np.float32, values="normal")
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((n, batch)).astype(np.float32)
    G = rng.standard_normal((n, batch)).astype(np.float32)
    return W, X, G


def _native_fns(W, X, G):
    Y, dX, dW = np.empty_like(G), np.empty_like(X), np.empty(W.nnz, np.float32)
    t = W.transpose_arrays()
    S = W.to_scipy()
    np.testing.assert_allclose(*(native.spmm(W.indptr, W.indices, W.data, X, Y) or (Y, S @ X)),
                               rtol=1e-3, atol=1e-3)
    return {
        "spmm": lambda: native.spmm(W.indptr, W.indices, W.data, X, Y),
        "spmm_t": lambda: native.spmm_t(*t, W.data, G, dX),
        "sddmm": lambda: native.sddmm(W.indptr, W.indices, G, X, dW),
    }


def target_point(args):
    W, X, G = _operands(args.n, args.density, args.batch)
    fns = _native_fns(W, X, G)
    S = W.to_scipy()
    fns["scipy"] = lambda: S @ X
    try:
        import torch

        torch.set_num_threads(2)
        Wt = torch.sparse_csr_tensor(torch.from_numpy(W.indptr.astype(np.int64)),
                                     torch.from_numpy(W.indices.astype(np.int64)),
                                     torch.from_numpy(W.data), size=W.shape)
        Xt = torch.from_numpy(X)
        fns["torch"] = lambda: Wt @ Xt
    except ImportError:
        pass
    D = W.toarray()
    fns["sgemm"] = lambda: D @ X
    times = {k: [] for k in fns}
    for _ in range(args.repeat):  # interleaved rounds: each round sees the same machine load
        for k, fn in fns.items():
            times[k].append(_median_time(fn, 1, 5 if k != "sgemm" else 1))
            if k in ("torch", "sgemm"):
                # OpenBLAS / torch worker threads spin (up to ~0.1 s) after a call and
                # would steal the cores from whatever is timed next: let them go idle
                time.sleep(0.2)
    med = {k: float(np.median(v)) for k, v in times.items()}
    flops = 2.0 * W.nnz * args.batch
    print(f"n={args.n} density={args.density} batch={args.batch} nnz={W.nnz} isa={_native.isa()} "
          f"threads={_native.get_num_threads()}")
    for k, v in med.items():
        gf = (2.0 * args.n * args.n * args.batch if k == "sgemm" else flops) / v / 1e9
        print(f"  {k:8s} {v * 1e3:8.3f} ms  {gf:7.1f} GFLOP/s")
    sg = 2.0 * args.n * args.n * args.batch / med["sgemm"]
    print(f"  spmm/scipy speedup  {med['scipy'] / med['spmm']:.2f}  (>= 3)")
    if "torch" in med:
        print(f"  spmm/torch speedup  {med['torch'] / med['spmm']:.2f}  (>= 1.5)")
    print(f"  sddmm/spmm time     {med['sddmm'] / med['spmm']:.2f}  (<= 1.5)")
    print(f"  spmm_t/spmm time    {med['spmm_t'] / med['spmm']:.2f}  (<= 1.3)")
    print(f"  spmm GFLOP/s / sgemm GFLOP/s  {flops / med['spmm'] / sg:.2f}  (>= 0.25)")


def scaling(args):
    nnz_row = args.density * args.n
    rows = []
    for n in (1024, 2048, 4096, 8192, 16384):
        W, X, G = _operands(n, nnz_row / n, args.batch)
        fns = _native_fns(W, X, G)
        per = {k: _median_time(f, args.repeat, 3) / W.nnz * 1e9 for k, f in fns.items()}
        rows.append(per)
        print(f"  n={n:6d} nnz={W.nnz:8d} " +
              " ".join(f"{k}={v:6.2f} ns/nnz" for k, v in per.items()))
    for k in rows[0]:
        vals = [r[k] for r in rows]
        print(f"  {k}: max/min per-nonzero time {max(vals) / min(vals):.2f} (<= 1.3)")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--density", type=float, default=0.01)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--isa", default=None)
    p.add_argument("--scaling", action="store_true")
    args = p.parse_args()
    if args.isa:
        _native.set_isa(args.isa)
    if args.scaling:
        scaling(args)
    else:
        target_point(args)


if __name__ == "__main__":
    main()
