"""How many regrown connections survive the next topology update (docs/accuracy.md).

Trains one ``CTREClassifier`` (3 x 1000, epsilon 1, the default preset, the study's
protocol and data via ``benchmarks/accuracy_study.py``) and records, for each topology
update and layer, which connections the growth added, split into its cosine picks and its
random ones (CTRE-sim grows both), and which of them are still present after the next
update. Prints one JSON line: the survival shares over the run, overall and per layer.

Example
-------
    PYTHONPATH=. python benchmarks/regrowth_survival.py --threads 1 --dataset digits \\
        --growth ctre_sim --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`
from benchmarks.threads import limit_threads_from_argv  # noqa: E402  (standard library only)

limit_threads_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402  (after the thread limits)


def record_growth():
    """Patch the updater to log each layer's grown keys by origin.

    Returns the log and a function that undoes the patches.
    """
    from ctre_sparse import ops
    from ctre_sparse.topology import growth, updater

    log = {"layer": None, "pending": {}, "rows": []}
    plain_insert, plain_layer = ops.insert, updater.TopologyUpdater._update_layer
    plain_choose = {cls: cls.choose for cls in (growth.CosineGrowth, growth.CTRESeqGrowth,
                                                growth.CTRESimGrowth, growth.RandomGrowth,
                                                growth.RigLGrowth)}

    def choose_of(cls):
        def choose(self, ctx, n, rng):
            rows, cols, n_informed = plain_choose[cls](self, ctx, n, rng)
            log["n_informed"] = int(n_informed)
            return rows, cols, n_informed
        return choose

    def insert(W, rows, cols, values, **kw):
        keys = np.asarray(rows, np.int64) * W.n_in + np.asarray(cols, np.int64)
        k = log.pop("n_informed", 0)
        log["pending"][log["layer"]] = (keys[:k], keys[k:])
        return plain_insert(W, rows, cols, values, **kw)

    def update_layer(self, i, layer, *args, **kw):
        before = log["pending"].pop(i, None)
        log["layer"] = i
        out = plain_layer(self, i, layer, *args, **kw)
        if before is not None:
            present = growth.pattern_keys(layer.W)
            log["rows"].append((i, *[(k.size, int(np.isin(k, present).sum())) for k in before]))
        return out

    saved = [(ops, "insert", plain_insert),
             (updater.TopologyUpdater, "_update_layer", plain_layer),
             *[(cls, "choose", plain) for cls, plain in plain_choose.items()]]

    def restore():
        for owner, name, value in saved:
            setattr(owner, name, value)

    for cls in plain_choose:
        cls.choose = choose_of(cls)
    ops.insert, updater.TopologyUpdater._update_layer = insert, update_layer
    return log, restore


def shares(rows):
    """Survival share of the informed (cosine / gradient) and random picks, per layer."""
    def share(sel, col):
        n = sum(r[col][0] for r in sel)
        return None if n == 0 else round(sum(r[col][1] for r in sel) / n, 4)
    layers = sorted({r[0] for r in rows})
    return {"informed": share(rows, 1), "random": share(rows, 2),
            "per_layer": {int(i): {"informed": share([r for r in rows if r[0] == i], 1),
                                   "random": share([r for r in rows if r[0] == i], 2)}
                          for i in layers}}


def main(argv=None):
    from benchmarks import accuracy_study

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", choices=accuracy_study.ALL_SETS)
    p.add_argument("--growth", default="ctre_sim")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="default: the study's length for the data set")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--threads", type=int, default=None, help="threads of every pool")
    args = p.parse_args(argv)
    X, y, X_te, y_te = accuracy_study.load(args.dataset, args.data_dir)
    epochs = args.epochs or accuracy_study.EPOCHS[args.dataset]
    est = accuracy_study.estimator(args.growth, 1.0, args.seed, epochs, {"preset": "default"})
    log, restore = record_growth()
    try:
        est.fit(X, y)
    finally:
        restore()
    print(json.dumps({"dataset": args.dataset, "growth": args.growth, "seed": args.seed,
                      "epochs": epochs, "test_accuracy": round(float(est.score(X_te, y_te)), 4),
                      **shares(log["rows"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
