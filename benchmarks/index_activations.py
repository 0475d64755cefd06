"""Real hidden activations for the index-mode recall study (USPS, a few CTRE epochs).

Trains ``256-W-W-10`` (``--width``, epsilon 10, ReLU, ``ctre_sim`` growth with
exact cosine) on the USPS training part (``/work/shared/data/usps/usps.npz``
or ``--data``) for ``--epochs`` epochs, then writes the activations of
``--samples`` training samples of every layer and the layers' patterns to one
``.npz`` (``acts/0`` = the standardized input, ``acts/1`` ... the hidden
outputs, ``W/i/indptr`` ... the weights' patterns), which
``benchmarks/bench_topk_index.py`` reads.

Example::

    PYTHONPATH=. python benchmarks/index_activations.py --width 8192 --out /tmp/acts8192.npz
"""

import argparse
import logging
import os
import time

import numpy as np

from ctre_sparse.datasets import load_npz, standardize
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater
from ctre_sparse.training import Trainer


def usps_path():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "shared", "data", "usps", "usps.npz")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=usps_path())
    p.add_argument("--width", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=2, help="number of hidden layers")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ds = load_npz(args.data, test_size=0.2, random_state=args.seed)
    Xtr, Xte, _, _ = standardize(ds.X_train, ds.X_test)
    Xtr_fm = np.ascontiguousarray(Xtr.T)
    sizes = [Xtr.shape[1]] + [args.width] * args.hidden + [int(ds.y_train.max()) + 1]
    model = SparseMLP(sizes, "relu", epsilon=10, init="he", random_state=args.seed)
    updater = TopologyUpdater(0.2, "ctre_sim", cosine_samples=1000, cosine_mode="exact")
    trainer = Trainer(model, SGD(0.01, momentum=0.9, nesterov=True, weight_decay=1e-4), updater,
                      batch_size=100, random_state=args.seed)
    t0 = time.perf_counter()
    trainer.fit(Xtr_fm, ds.y_train, np.ascontiguousarray(Xte.T), ds.y_test, epochs=args.epochs)
    rng = np.random.default_rng(args.seed + 1)
    idx = np.sort(rng.choice(Xtr_fm.shape[1], size=min(args.samples, Xtr_fm.shape[1]),
                             replace=False))
    acts = model.activations(np.ascontiguousarray(Xtr_fm[:, idx]))
    out = {f"acts/{i}": a for i, a in enumerate(acts)}
    for i, layer in enumerate(model.layers):
        out[f"W/{i}/indptr"] = layer.W.indptr
        out[f"W/{i}/indices"] = layer.W.indices
        out[f"W/{i}/shape"] = np.array(layer.W.shape)
    out["val_accuracy"] = np.array([r["val_accuracy"] for r in trainer.history])
    np.savez(args.out, **out)
    logging.info("sizes %s, %d epochs in %.0f s, val acc %s -> %s", sizes, args.epochs,
                 time.perf_counter() - t0, out["val_accuracy"].round(4).tolist(), args.out)


if __name__ == "__main__":
    main()
