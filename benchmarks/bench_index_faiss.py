"""FAISS against the builtin index and the exact scan: index-mode top-k cosine, recall and time.

The library decision of the index mode, measured (docs/cosine_index.md). On
the real activations of ``benchmarks/index_activations.py`` (one layer: A =
its input, B = its output, its pattern excluded, k = zeta * nnz), every
method below returns the k best absent pairs by ``|cos|``; all run
interleaved in one process, ``--repeats`` rounds after a warm-up; times are
medians, ratios exact / method within the same round; recall@k against the
exact scan of the same round.

- ``exact``: :func:`ctre_sparse.ops.topk_cosine`.
- ``ours``: :func:`ctre_sparse.cosine_index.topk_cosine_index` (its default
  ``nlist``/``nprobe`` or those given, and each of ``--ours-nprobe``).
- ``faiss-ivf-sketch``: FAISS ``IndexIVFFlat`` (inner product) over the same
  routing sketch as ours (same ``dim``, same random draws), the same nlist and
  nprobe; each output row asks for its ``budget`` nearest input rows plus its
  degree (FAISS answers a fixed number per query); existing connections
  dropped; the best ``oversample * k`` by sketched score are re-scored
  exactly with :func:`~ctre_sparse.ops.cosine_pairs`, the best k kept.
- ``faiss-ivf-raw``: ``IndexIVFFlat`` over the unit rows themselves (S
  coordinates): the inner products are the cosines, no re-scoring needed.
- ``faiss-hnsw-sketch``: ``IndexHNSWFlat`` (M 32, efSearch ``--ef``) over the
  sketch, then as ``faiss-ivf-sketch``.

Absolute cosine: where a side has negative values, each FAISS index holds the
input rows twice (``a`` and ``-a``, ids ``j`` and ``n_in + j``), as ours does;
twins are merged. FAISS runs on its own OpenMP threads (``faiss.omp_set_num_threads``).

Example::

    PYTHONPATH=. python benchmarks/bench_index_faiss.py /tmp/acts16384.npz --json out.json
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from ctre_sparse.cosine_sketch import best_k, topk_recall
from ctre_sparse.cosine_index import _routing_space, _unit_rows, default_nlist, default_nprobe
from ctre_sparse.cosine_index import topk_cosine_index
from ctre_sparse.ops import cosine_pairs, topk_cosine
from ctre_sparse._random import check_random_state

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_topk_index import load_layer  # noqa: E402


def _faiss():
    try:
        import faiss
    except ImportError:
        sys.exit("this benchmark needs faiss-cpu (pip install faiss-cpu)")
    return faiss


def _candidates(D, I, W, n_in, mirror):
    """FAISS answers (D, I of shape (n_out, kk)) as (scores, keys), the pattern's pairs dropped."""
    n_out, kk = I.shape
    rows = np.repeat(np.arange(n_out, dtype=np.int64), kk)
    cols, scores = I.ravel().astype(np.int64), D.ravel()
    ok = cols >= 0
    if mirror:
        cols = np.where(cols >= n_in, cols - n_in, cols)
    rows, cols, scores = rows[ok], cols[ok], scores[ok]
    keys = rows * n_in + cols
    pattern = W.row_indices().astype(np.int64) * n_in + W.indices.astype(np.int64)
    keep = ~np.isin(keys, pattern)
    keys, scores = keys[keep], scores[keep]
    if mirror:  # a pair found through a and -a: keep its best estimate once
        order = np.lexsort((-scores, keys))
        keys, scores = keys[order], scores[order]
        first = np.ones(keys.shape[0], bool)
        first[1:] = keys[1:] != keys[:-1]
        keys, scores = keys[first], scores[first]
    return scores, keys


def _finish(A, B, scores, keys, k, n_in, rescore):
    """The best k of the candidates, re-scored exactly where the estimates are not exact."""
    if rescore and scores.shape[0] > rescore:
        best = np.argpartition(-scores, rescore - 1)[:rescore]
        keys, scores = keys[best], scores[best]
    order = np.argsort(keys)
    keys = keys[order]
    rows, cols = keys // n_in, keys % n_in
    exact = cosine_pairs(B, A, rows, cols) if rescore else scores[order]
    order = best_k(rows, cols, exact, k, np)
    return rows[order], cols[order], exact[order]


def faiss_search(A, B, W, k, *, kind, nlist, nprobe, dim, oversample, budget, ef, seed):
    """One FAISS-based top-k (see the module docstring); returns (rows, cols, scores)."""
    faiss = _faiss()
    n_in = A.shape[0]
    mirror = bool(A.min() < 0 or B.min() < 0)
    if kind == "ivf-raw":
        Ar, Br = _unit_rows(A, np), _unit_rows(B, np)
        rescore = 0
    else:
        Ar, Br = _routing_space(A, B, dim, check_random_state(seed))
        rescore = oversample * k
    base = np.ascontiguousarray(np.concatenate([Ar, -Ar]) if mirror else Ar, dtype=np.float32)
    d = base.shape[1]
    if kind == "hnsw-sketch":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef
        index.add(base)
    else:
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(base)
        index.add(base)
        index.nprobe = nprobe
    degree = int(np.diff(W.indptr).max(initial=0))
    kk = min(base.shape[0], budget + degree * (2 if mirror else 1))
    D, I = index.search(np.ascontiguousarray(Br, dtype=np.float32), kk)
    scores, keys = _candidates(D, I, W, n_in, mirror)
    return _finish(A, B, scores, keys, k, n_in, rescore)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def methods(args, A, B, W, k):
    """name -> zero-argument callable, in the order they run within a round."""
    n_in = A.shape[0]
    nlist = args.nlist or default_nlist(n_in)
    nprobe = args.nprobe or default_nprobe(nlist)
    common = dict(nlist=nlist, nprobe=nprobe, dim=args.dim, oversample=args.oversample,
                  ef=args.ef, seed=args.seed)
    out = {"exact": lambda: topk_cosine(A, B, k, exclude=W)}
    for npb in sorted({nprobe, *args.ours_nprobe}):
        out[f"ours nprobe {npb}"] = (
            lambda npb=npb: topk_cosine_index(A, B, k, exclude=W, nlist=nlist, nprobe=npb,
                                              dim=args.dim, oversample=args.oversample,
                                              random_state=args.seed))
    for budget in args.budget:
        for kind in args.faiss:
            out[f"faiss-{kind} budget {budget}"] = (
                lambda kind=kind, budget=budget: faiss_search(A, B, W, k, kind=kind,
                                                              budget=budget, **common))
    return out, nlist, nprobe


def run(args, log):
    faiss = _faiss()
    faiss.omp_set_num_threads(args.threads)
    A, B, W = load_layer(args.acts, args.layer, args.samples)
    k = int(round(args.zeta * W.nnz))
    todo, nlist, nprobe = methods(args, A, B, W, k)
    topk_cosine(A[:300], B[:200], 50)                      # warm-up outside the timing
    topk_cosine_index(A[:300], B[:200], 50, nlist=8, nprobe=2, random_state=0)
    times = {name: [] for name in todo}
    recall, loads, ref = {}, [], None
    for r in range(args.repeats):
        loads.append(os.getloadavg()[0])
        for name, fn in todo.items():
            t, res = _timed(fn)
            times[name].append(t)
            if name == "exact":
                ref = res
            recall[name] = topk_recall(res[0], res[1], ref[0], ref[1])
            log(f"round {r + 1} {name}: {t:.3f} s, recall {recall[name]:.3f}")
    loads.append(os.getloadavg()[0])
    rows = []
    for name in todo:
        ratio = [e / t for e, t in zip(times["exact"], times[name])]
        rows.append({"method": name, "seconds": statistics.median(times[name]),
                     "seconds_all": times[name], "speedup": statistics.median(ratio),
                     "recall": recall[name]})
    return {"acts": os.path.basename(args.acts), "layer": args.layer,
            "shape": [int(B.shape[0]), int(A.shape[0])], "samples": int(A.shape[1]),
            "nnz": int(W.nnz), "k": k, "nlist": nlist, "nprobe": nprobe, "dim": args.dim,
            "oversample": args.oversample, "ef": args.ef, "faiss": faiss.__version__,
            "faiss_threads": args.threads, "load_1min": loads, "cpu_count": os.cpu_count(),
            "rows": rows}


def _ints(text):
    return [int(x) for x in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("acts")
    p.add_argument("--layer", type=int, default=1)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--zeta", type=float, default=0.2)
    p.add_argument("--nlist", type=int, help="default: the builtin index's default_nlist")
    p.add_argument("--nprobe", type=int, help="default: the builtin index's default_nprobe")
    p.add_argument("--ours-nprobe", type=_ints, default=[32],
                   help="more nprobe values for the builtin index (its default always runs)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--oversample", type=int, default=4)
    p.add_argument("--budget", type=_ints, default=[32, 128],
                   help="FAISS neighbours asked per output row, on top of its degree")
    p.add_argument("--faiss", type=lambda s: s.split(","),
                   default=["ivf-sketch", "ivf-raw", "hnsw-sketch"])
    p.add_argument("--ef", type=int, default=64, help="HNSW efSearch")
    p.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="append the record to this JSON list file")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rec = run(args, log)
    for row in rec["rows"]:
        print(f"{rec['shape'][0]}x{rec['shape'][1]} {row['method']:32s} {row['seconds']:8.3f} s "
              f"{row['speedup']:6.2f}x  recall {row['recall']:.3f}", flush=True)
    if args.json:
        old = json.load(open(args.json)) if os.path.exists(args.json) else []
        with open(args.json, "w") as f:
            json.dump(old + [rec], f, indent=1)


if __name__ == "__main__":
    main()
