"""Accuracy effect of bfloat16 activations: the same training with and without their rounding.

A bfloat16 storage of the activations (``benchmarks/bench_locality.py``:
half the bytes per gathered row) changes the numbers the kernels read: each
activation rounded to 8 bits of mantissa (nearest even), products summed in
float32. This check emulates exactly that arithmetic in the float32 code: the
layers' ``spmm`` (forward, ``W @ X``) and ``sddmm`` (weight gradient, at
``X``'s rows) get ``X`` rounded to bfloat16 and widened back; the gradients
``G`` stay float32. ``CTREClassifier(growth="ctre_sim")`` on USPS (80/20,
standardized), once plain and once rounded, per seed; test accuracies to JSON.

Example::

    PYTHONPATH=. python benchmarks/check_bf16_training.py --json out.json
"""

import argparse
import json
import os
import sys
import time
import types

import numpy as np

from ctre_sparse import CTREClassifier, ops
from ctre_sparse.datasets import load_npz, standardize
from ctre_sparse.nn import layers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from index_activations import usps_path  # noqa: E402


def round_bf16(X):
    """``X`` (float32) rounded to the nearest bfloat16 (ties to even), as float32."""
    u = np.ascontiguousarray(X).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return r.view(np.float32)


def bf16_ops():
    """A stand-in for the ``ops`` module of the layers: activations rounded where gathered."""
    shim = types.SimpleNamespace(**{k: getattr(ops, k) for k in dir(ops) if not k.startswith("__")})
    shim.spmm = lambda W, X, **kw: ops.spmm(W, round_bf16(X), **kw)
    shim.sddmm = lambda W, G, X, **kw: ops.sddmm(W, G, round_bf16(X), **kw)
    return shim


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=usps_path())
    p.add_argument("--hidden", default="1024,1024")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    ds = load_npz(args.data, test_size=0.2, random_state=0)
    Xtr, Xte, _, _ = standardize(ds.X_train, ds.X_test)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    runs, plain_ops = [], layers.ops
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant in ("float32", "bfloat16 activations"):
            layers.ops = plain_ops if variant == "float32" else bf16_ops()
            try:
                clf = CTREClassifier(hidden_layer_sizes=hidden, epsilon=10, growth="ctre_sim",
                                     learning_rate=0.05, max_epochs=args.epochs,
                                     random_state=seed)
                t0 = time.perf_counter()
                clf.fit(Xtr, ds.y_train)
                acc = float(clf.score(Xte, ds.y_test))
            finally:
                layers.ops = plain_ops
            run = {"seed": seed, "variant": variant, "test_accuracy": acc,
                   "seconds": time.perf_counter() - t0, "load_1min": os.getloadavg()[0]}
            runs.append(run)
            print(json.dumps(run), flush=True)
    mean = {v: float(np.mean([r["test_accuracy"] for r in runs if r["variant"] == v]))
            for v in ("float32", "bfloat16 activations")}
    out = {"data": "usps 80/20", "hidden": list(hidden), "epochs": args.epochs,
           "growth": "ctre_sim", "runs": runs, "mean_test_accuracy": mean}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(mean))


if __name__ == "__main__":
    main()
