"""Approximate (sketched) top-k cosine vs the exact scan: time, recall@k, score mass.

For each layer size (n_out, n_in) a random Erdos-Renyi network (epsilon 20, He
init, ReLU) is run on Fashion-MNIST-shaped synthetic data
(:func:`benchmarks.training.make_data`, S samples): the input side A is
the layer's input (the raw 784 features for n_in = 784, else a ReLU hidden
layer), the output side B = ReLU(W @ A), and W is the exclusion pattern, as in
one CTRE growth step. k = zeta * nnz(W). The exact
:func:`ctre_sparse.ops.topk_cosine` and
:func:`ctre_sparse.cosine_sketch.topk_cosine_sketch` for every (dim, oversample) run
interleaved in one process, ``--repeats`` rounds; times are medians. Recall@k =
|sketch set & exact set| / k, mass = sum(sketch scores) / sum(exact scores).

Examples::

    PYTHONPATH=. python benchmarks/bench_topk_sketch.py --sizes 1000x784 --repeats 1
    PYTHONPATH=. python benchmarks/bench_topk_sketch.py --json docs/results/bench_topk_sketch.json
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`
from benchmarks.machine import machine_block  # noqa: E402
from benchmarks.training import make_data  # noqa: E402
from ctre_sparse.backends import select_backend  # noqa: E402
from ctre_sparse.cosine_sketch import topk_cosine_sketch, topk_recall  # noqa: E402
from ctre_sparse.nn.init import erdos_renyi  # noqa: E402
from ctre_sparse.ops import TOPK_BLOCK_BYTES, spmm, topk_cosine  # noqa: E402


def _relu_layer(W, X):
    Y = spmm(W, X)
    np.maximum(Y, 0, out=Y)
    return Y


def layer_activations(n_out, n_in, samples, epsilon, seed):
    """(A, B, W): input-side and output-side activations of one random ReLU layer."""
    X, _ = make_data(samples, seed=seed)
    X = np.ascontiguousarray(X)
    if n_in == X.shape[0]:
        A = X
    else:
        W0 = erdos_renyi(n_in, X.shape[0], epsilon=epsilon, random_state=seed + 1)
        A = _relu_layer(W0, X)
    W = erdos_renyi(n_out, n_in, epsilon=epsilon, random_state=seed + 2)
    return A, _relu_layer(W, A), W


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_size(n_out, n_in, args, log):
    A, B, W = layer_activations(n_out, n_in, args.samples, args.epsilon, args.seed)
    k = int(round(args.zeta * W.nnz))
    configs = [(d, o, int(f * d)) for f in args.rank_fractions for d in args.dims
               for o in args.oversample]
    bb = None if args.block_mib is None else int(args.block_mib * 2**20)
    exact = lambda: topk_cosine(A, B, k, exclude=W,  # noqa: E731
                                block_bytes=TOPK_BLOCK_BYTES if bb is None else bb)
    sketch = {c: (lambda c=c: topk_cosine_sketch(A, B, k, exclude=W, dim=c[0], oversample=c[1],
                                                 rank=c[2], random_state=args.seed,
                                                 block_bytes=bb))
              for c in configs}
    for c in configs:  # warm-up (first LAPACK/JIT calls) on a slice, outside the timing
        topk_cosine_sketch(A[:300], B[:200], 50, dim=c[0], oversample=c[1], rank=c[2],
                           random_state=args.seed)
    topk_cosine(A[:300], B[:200], 50)
    load0 = os.getloadavg()
    t_exact, ref = [], None
    t_sketch = {c: [] for c in configs}
    results = {}
    for rep in range(args.repeats):  # interleaved: exact, then every sketch, per round
        t, ref = _timed(exact)
        t_exact.append(t)
        log(f"  {n_out}x{n_in} round {rep}: exact {t:.3f} s")
        for c in configs:
            t, res = _timed(sketch[c])
            t_sketch[c].append(t)
            results[c] = res
    load1 = os.getloadavg()
    ref_mass = float(np.sum(ref[2], dtype=np.float64))
    rows = []
    for c in configs:
        r, cc, s = results[c]
        med = statistics.median(t_sketch[c])
        rows.append({"dim": c[0], "oversample": c[1], "rank": c[2], "seconds": med,
                     "times": t_sketch[c],
                     "speedup": statistics.median(t_exact) / med,
                     "recall": topk_recall(r, cc, ref[0], ref[1]),
                     "mass": float(np.sum(s, dtype=np.float64)) / ref_mass if ref_mass else 1.0,
                     "kth_score": float(s[-1]) if s.shape[0] else None})
    return {"n_out": n_out, "n_in": n_in, "samples": args.samples, "nnz": W.nnz, "k": k,
            "block_mib": args.block_mib,
            "exact_seconds": statistics.median(t_exact), "exact_times": t_exact,
            "exact_kth_score": float(ref[2][-1]) if ref[2].shape[0] else None,
            "exact_top_score": float(ref[2][0]) if ref[2].shape[0] else None,
            "loadavg_before": list(load0), "loadavg_after": list(load1), "sketch": rows}


def print_table(rec, stream):
    print(f"\n{rec['n_out']} x {rec['n_in']}, S={rec['samples']}, nnz={rec['nnz']}, "
          f"k={rec['k']}, block MiB {rec['block_mib'] or 'default'}: exact "
          f"{rec['exact_seconds']:.3f} s (k-th score "
          f"{rec['exact_kth_score']:.4f}); load {rec['loadavg_before'][0]:.2f} -> "
          f"{rec['loadavg_after'][0]:.2f}", file=stream)
    print(f"{'dim':>5} {'over':>5} {'rank':>5} {'time s':>8} {'speedup':>8} {'recall@k':>9} "
          f"{'mass':>7}", file=stream)
    for r in rec["sketch"]:
        print(f"{r['dim']:>5} {r['oversample']:>5} {r['rank']:>5} {r['seconds']:>8.3f} "
              f"{r['speedup']:>8.2f} {r['recall']:>9.4f} {r['mass']:>7.4f}", file=stream,
              flush=True)


def _ints(text):
    return [int(x) for x in text.split(",") if x]


def _sizes(text):
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=_sizes, default=_sizes("1000x784,1000x1000,4096x4096"),
                   help="comma-separated n_outxn_in (default 1000x784,1000x1000,4096x4096)")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--zeta", type=float, default=0.2)
    p.add_argument("--epsilon", type=float, default=20.0)
    p.add_argument("--dims", type=_ints, default=[32, 64, 128])
    p.add_argument("--oversample", type=_ints, default=[2, 4, 8])
    p.add_argument("--rank-fractions", type=lambda t: [float(x) for x in t.split(",") if x],
                   default=[0.0, 0.25], help="rank = fraction * dim (default 0,0.25)")
    p.add_argument("--block-mib", type=float, default=None,
                   help="block_bytes of both calls, MiB (default: each function's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the records here (merged by size with what is there)")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    backend = select_backend("auto", np.zeros(1, np.float32)).__name__.rsplit(".", 1)[-1]
    records = []
    for n_out, n_in in args.sizes:
        rec = run_size(n_out, n_in, args, log)
        rec["backend"] = backend
        rec["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        records.append(rec)
        print_table(rec, sys.stdout)
        sys.stdout.flush()
    if args.json:
        old = []
        if os.path.exists(args.json):
            with open(args.json) as fh:
                old = json.load(fh).get("records", [])
        new = {(r["n_out"], r["n_in"], r["block_mib"]) for r in records}
        keep = [r for r in old if (r["n_out"], r["n_in"], r.get("block_mib", 32.0)) not in new]
        doc = {"benchmark": "topk_sketch", "machine": machine_block(),
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "records": sorted(keep + records, key=lambda r: r["n_out"] * r["n_in"])}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
