"""Accuracy check: cosine growth with the index mode against exact, same data, seeds, epochs.

Trains ``CTREClassifier(growth=--growth)`` on USPS (stratified 80/20 split,
standardized with training statistics) once with ``cosine_mode="exact"`` and
once with ``cosine_mode="index"`` (every layer, the input layer included),
for each seed, and writes test accuracies and per-run times to a JSON file.

Example::

    PYTHONPATH=. python benchmarks/check_index_training.py --json out.json
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from ctre_sparse import CTREClassifier
from ctre_sparse.datasets import load_npz, standardize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from index_activations import usps_path  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=usps_path())
    p.add_argument("--hidden", default="1024,1024")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--growth", default="cosine")
    p.add_argument("--cosine-samples", type=int, default=1000)
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    ds = load_npz(args.data, test_size=0.2, random_state=0)
    Xtr, Xte, _, _ = standardize(ds.X_train, ds.X_test)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for mode in ("exact", "index"):
            clf = CTREClassifier(hidden_layer_sizes=hidden, epsilon=10, growth=args.growth,
                                 learning_rate=0.05, max_epochs=args.epochs,
                                 cosine_samples=args.cosine_samples, cosine_mode=mode,
                                 random_state=seed)
            t0 = time.perf_counter()
            clf.fit(Xtr, ds.y_train)
            run = {"seed": seed, "mode": mode, "test_accuracy": float(clf.score(Xte, ds.y_test)),
                   "seconds": time.perf_counter() - t0,
                   "topology_seconds": sum(r["topology_seconds"] for r in clf.history_),
                   "modes_seen": sorted({m for r in clf.history_ for m in (r["cosine_modes"] or [])
                                         if m}),
                   "load_1min": os.getloadavg()[0]}
            runs.append(run)
            print(json.dumps(run), flush=True)
    acc = {m: [r["test_accuracy"] for r in runs if r["mode"] == m] for m in ("exact", "index")}
    out = {"data": "usps 80/20", "hidden": list(hidden), "epochs": args.epochs,
           "growth": args.growth, "cosine_samples": args.cosine_samples, "runs": runs,
           "mean_test_accuracy": {m: float(np.mean(v)) for m, v in acc.items()},
           "mean_difference_index_minus_exact": float(np.mean(acc["index"]) - np.mean(acc["exact"]))}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out["mean_test_accuracy"]), out["mean_difference_index_minus_exact"])


if __name__ == "__main__":
    main()
