"""Does cosine growth notice the sketch? Test accuracy with exact vs sketched top-k.

Trains ``CTREClassifier(growth="cosine")`` on the embedded digits (64-256-256-10,
epsilon 10, lr 0.05, 40 epochs) with seeds 0-2, once with the exact
``ops.topk_cosine`` and once per sketch setting, the sketch swapped in for the
growth step by patching ``ctre_sparse.ops.topk_cosine`` in this process only
(the library is not wired to it yet). At every update the exact answer is
also computed to log the sketch's recall@k. The layers are small: this checks
accuracy, not speed. Example::

    PYTHONPATH=. python benchmarks/check_sketch_training.py --json docs/approx_training_check.json
"""

import argparse
import json
import sys
import time

import numpy as np

import ctre_sparse.ops as ops
from ctre_sparse import CTREClassifier
from ctre_sparse.cosine_sketch import topk_cosine_sketch, topk_recall
from ctre_sparse.bench.machine import machine_block
from ctre_sparse.datasets import load_digits, standardize

EXACT = ops.topk_cosine
VARIANTS = [("exact", None, None), ("sketch dim 32 oversample 2", 32, 2),
            ("sketch dim 128 oversample 4", 128, 4)]


def sketched(dim, oversample, recalls, seed):
    """A stand-in for ops.topk_cosine that returns the sketch's answer and logs its recall."""
    rng = np.random.default_rng(seed)

    def topk(A, B, k, exclude=None, block_bytes=None, backend="auto"):
        out = topk_cosine_sketch(A, B, k, exclude=exclude, dim=dim, oversample=oversample,
                                 random_state=rng, backend=backend)
        ref = EXACT(A, B, k, exclude=exclude, backend=backend)
        recalls.append(topk_recall(out[0], out[1], ref[0], ref[1]))
        return out
    return topk


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--json")
    args = p.parse_args(argv)
    data = load_digits(random_state=0)
    X_train, X_test, _, _ = standardize(data.X_train, data.X_test)
    records = []
    try:
        for name, dim, oversample in VARIANTS:
            for seed in range(args.seeds):
                recalls = []
                ops.topk_cosine = EXACT if dim is None else sketched(dim, oversample, recalls,
                                                                     seed + 123)
                t0 = time.perf_counter()
                clf = CTREClassifier(hidden_layer_sizes=(256, 256), epsilon=10,
                                     learning_rate=0.05, growth="cosine",
                                     max_epochs=args.epochs, random_state=seed)
                clf.fit(X_train, data.y_train)
                rec = {"variant": name, "seed": seed,
                       "test_accuracy": float(clf.score(X_test, data.y_test)),
                       "seconds": time.perf_counter() - t0, "updates": len(recalls),
                       "mean_recall": float(np.mean(recalls)) if recalls else None,
                       "min_recall": float(np.min(recalls)) if recalls else None}
                print(f"{name:>28} seed {seed}: test accuracy {rec['test_accuracy']:.4f}"
                      + (f", recall@k mean {rec['mean_recall']:.3f} min {rec['min_recall']:.3f}"
                         if recalls else ""), flush=True)
                records.append(rec)
    finally:
        ops.topk_cosine = EXACT
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"check": "sketch_training", "machine": machine_block(),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "records": records}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
