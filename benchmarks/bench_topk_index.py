"""Index-mode top-k cosine vs the exact scan on real activations: time and recall@k.

Reads the activations written by ``benchmarks/index_activations.py`` (a
USPS network trained a few epochs), takes one hidden-to-hidden layer (A =
its input, B = its output, its pattern excluded, k = zeta * nnz: one CTRE
growth step), and runs :func:`ctre_sparse.ops.topk_cosine` and
:func:`ctre_sparse.cosine_index.topk_cosine_index` for every
``(nlist, nprobe)`` of the grid, interleaved, ``--repeats`` rounds after a
warm-up; times are medians, the ratios are exact / index of the same
round. Recall@k = |index set & exact set| / k; mass = sum of the index's
scores / sum of the exact top-k's scores.

Example::

    PYTHONPATH=. python benchmarks/bench_topk_index.py /tmp/acts8192.npz --json out.json
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from ctre_sparse.cosine_sketch import topk_recall
from ctre_sparse.cosine_index import topk_cosine_index
from ctre_sparse.ops import topk_cosine
from ctre_sparse.sparse import CSRMatrix


def load_layer(path, layer, samples):
    """(A, B, W-pattern) of ``layer`` from an activations file, first ``samples`` samples."""
    z = np.load(path)
    A = np.ascontiguousarray(z[f"acts/{layer}"][:, :samples])
    B = np.ascontiguousarray(z[f"acts/{layer + 1}"][:, :samples])
    indices, indptr = z[f"W/{layer}/indices"], z[f"W/{layer}/indptr"]
    W = CSRMatrix(np.ones(indices.shape[0], A.dtype), indices, indptr,
                  tuple(int(x) for x in z[f"W/{layer}/shape"]))
    return A, B, W


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(args, log):
    A, B, W = load_layer(args.acts, args.layer, args.samples)
    k = int(round(args.zeta * W.nnz))
    grid = [(nl, npb) for nl in args.nlist for npb in args.nprobe if npb <= nl]
    index = {g: (lambda g=g: topk_cosine_index(A, B, k, exclude=W, nlist=g[0], nprobe=g[1],
                                                dim=args.dim, oversample=args.oversample,
                                                random_state=args.seed)) for g in grid}
    topk_cosine(A[:300], B[:200], 50)                       # warm-up outside the timing
    topk_cosine_index(A[:300], B[:200], 50, nlist=8, nprobe=2, random_state=0)
    loads, t_exact, t_index, ratios, ref, found = [], [], {g: [] for g in grid}, \
        {g: [] for g in grid}, None, {}
    for r in range(args.repeats):
        loads.append(os.getloadavg()[0])
        t, ref = _timed(lambda: topk_cosine(A, B, k, exclude=W))
        t_exact.append(t)
        for g in grid:
            ti, found[g] = _timed(index[g])
            t_index[g].append(ti)
            ratios[g].append(t / ti)
        log(f"round {r + 1}: exact {t:.3f} s, load {loads[-1]:.2f}")
    loads.append(os.getloadavg()[0])
    rows = []
    for g in grid:
        rr, cc, ss = found[g]
        rows.append({"nlist": g[0], "nprobe": g[1], "seconds": statistics.median(t_index[g]),
                     "seconds_all": t_index[g], "speedup": statistics.median(ratios[g]),
                     "recall": topk_recall(rr, cc, ref[0], ref[1]),
                     "mass": float(ss.astype(np.float64).sum() / ref[2].astype(np.float64).sum())})
    return {"acts": os.path.basename(args.acts), "layer": args.layer,
            "shape": [int(B.shape[0]), int(A.shape[0])], "samples": int(A.shape[1]),
            "nnz": int(W.nnz), "k": k, "dim": args.dim, "oversample": args.oversample,
            "exact_seconds": statistics.median(t_exact), "exact_seconds_all": t_exact,
            "load_1min": loads, "cpu_count": os.cpu_count(), "rows": rows}


def _ints(text):
    return [int(x) for x in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("acts")
    p.add_argument("--layer", type=int, default=1)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--zeta", type=float, default=0.2)
    p.add_argument("--nlist", type=_ints, default=[64, 128, 256])
    p.add_argument("--nprobe", type=_ints, default=[4, 8, 16, 32])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--oversample", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="append the record to this JSON list file")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rec = run(args, log)
    for row in rec["rows"]:
        print(f"{rec['shape'][0]}x{rec['shape'][1]} S={rec['samples']} nlist {row['nlist']:5d} "
              f"nprobe {row['nprobe']:3d}: {row['seconds']:.3f} s ({row['speedup']:.2f}x), "
              f"recall {row['recall']:.3f}, mass {row['mass']:.4f}", flush=True)
    if args.json:
        old = json.load(open(args.json)) if os.path.exists(args.json) else []
        with open(args.json, "w") as f:
            json.dump(old + [rec], f, indent=1)


if __name__ == "__main__":
    main()
