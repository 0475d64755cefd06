"""The default preset on data sets the accuracy study never used (docs/accuracy.md).

scikit-learn's embedded breast-cancer (569 x 30, 2 classes) and wine (178 x 13, 3 classes)
sets and a synthetic 5-class problem (1,500 x 100, 20 informative features, two clusters per
class), each with a fixed stratified 30 % test split; ``CTREClassifier`` at its defaults
(3 x 1000, epsilon 1, preset "default") but for ``growth`` and ``max_epochs=100``, against
scikit-learn's ``MLPClassifier`` with the same widths (SGD, Nesterov 0.9, lr 0.01, batch 100,
100 epochs, standardized inputs). One JSON line per (data set, method): test accuracy per seed.

Example
-------
    PYTHONPATH=. python benchmarks/accuracy_unseen.py --threads 1 \\
        --out docs/results/accuracy_unseen.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`
from benchmarks.threads import limit_threads_from_argv  # noqa: E402  (standard library only)

limit_threads_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402  (after the thread limits)

from benchmarks.machine import short_commit  # noqa: E402

METHODS = ("ctre_seq", "ctre_sim", "random", "static", "rigl", "dense_mlp")
HIDDEN = (1000, 1000, 1000)


def datasets():
    """name -> (X, y): the three sets, built from scikit-learn (no download)."""
    from sklearn.datasets import load_breast_cancer, load_wine, make_classification

    return {"breast_cancer": load_breast_cancer(return_X_y=True),
            "wine": load_wine(return_X_y=True),
            "synthetic": make_classification(1500, 100, n_informative=20, n_classes=5,
                                             n_clusters_per_class=2, random_state=0)}


def score(method, seed, Xtr, ytr, Xte, yte, epochs):
    """Test accuracy of one run."""
    if method == "dense_mlp":
        from sklearn.neural_network import MLPClassifier
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(Xtr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # max_iter reached: the epochs are the budget
            mlp = MLPClassifier(HIDDEN, solver="sgd", momentum=0.9, nesterovs_momentum=True,
                                learning_rate_init=0.01, max_iter=epochs, batch_size=100,
                                random_state=seed).fit(scaler.transform(Xtr), ytr)
        return float(mlp.score(scaler.transform(Xte), yte))
    from ctre_sparse import CTREClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # wine: a validation split under 20 rows
        clf = CTREClassifier(HIDDEN, growth=method, max_epochs=epochs, random_state=seed)
        return float(clf.fit(Xtr, ytr).score(Xte, yte))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="threads of every pool")
    p.add_argument("--out", default=None, help="append JSON lines here")
    args = p.parse_args(argv)
    from sklearn.model_selection import train_test_split

    commit = short_commit()
    for name, (X, y) in datasets().items():
        Xtr, Xte, ytr, yte = train_test_split(X.astype(np.float32), y, test_size=0.3,
                                              stratify=y, random_state=0)
        for method in args.methods:
            start = time.perf_counter()
            accs = [score(method, s, Xtr, ytr, Xte, yte, args.epochs) for s in args.seeds]
            rec = {"dataset": name, "method": method, "seeds": args.seeds, "test": accs,
                   "mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)),
                   "epochs": args.epochs, "seconds": round(time.perf_counter() - start, 1),
                   "git_commit": commit}
            print(json.dumps(rec), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
