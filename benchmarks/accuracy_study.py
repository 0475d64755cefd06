"""Accuracy at extreme sparsity: the study behind CTREClassifier's default (docs/accuracy.md).

Trains 3 x 1000 ReLU MLPs (``CTREClassifier``) on scikit-learn's digits, USPS and
MADELON (and, when named, the check sets ``usps_small`` and ``classes26``: 1,000-1,600
samples, 300 epochs, the scale of the issue's held-out sets), one run per (data set,
method, epsilon, seed, configuration), and appends one JSON line per run to ``--out``:
the per-epoch validation and test accuracy, the training loss and learning rate, and the
summary (test accuracy at the best-validation epoch and at the end, the epoch where the
test accuracy first reaches 90 % of its final value). A run already in ``--out`` (same
key) is skipped, so an interrupted sweep continues where it stopped.

Protocol (every data set): a fixed stratified test split (``random_state=0``);
the estimator holds out its own stratified 10 % validation split of the rest (per
seed); features standardized with the statistics of the training + validation
part (``--scaling minmax``: to [0, 1], the CTRE authors' choice for image and speech
data; ``none``: raw). The dense baseline is scikit-learn's
``MLPClassifier`` with the same widths, the same validation rows (the estimator's
split for the same seed), SGD with Nesterov momentum 0.9, L2 1e-4, batch 100, and
the configuration's learning rate and schedule (set per epoch), one
``partial_fit`` per epoch.

Configurations are named sets of estimator parameters (``CONFIGS``); ``--config``
picks some, ``--params JSON`` adds one of your own.

Examples
--------
    PYTHONPATH=. python benchmarks/accuracy_study.py --threads 1 --datasets usps \\
        --methods random cosine --config paper default --seeds 0 1 2
    PYTHONPATH=. python benchmarks/accuracy_study.py --table --out docs/results/accuracy_study.jsonl
    PYTHONPATH=. python benchmarks/accuracy_study.py --plot docs/figures/accuracy_default.png \\
        --config default --epsilons 1
    PYTHONPATH=. python benchmarks/accuracy_study.py --pivot --current --config default \\
        --dense-config paper --datasets usps_small classes26 --epsilons 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository root: `benchmarks`
from benchmarks.threads import limit_threads_from_argv  # noqa: E402  (standard library only)

limit_threads_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402  (after the thread limits)

from benchmarks.machine import short_commit  # noqa: E402

HIDDEN = (1000, 1000, 1000)
SPARSE_METHODS = ("cosine", "ctre_seq", "ctre_sim", "rigl", "random", "static")
#: Ablations (not library strategies): see ablation_growth().
ABLATIONS = ("cosine_no_readd", "cosine_delay10")
METHODS = SPARSE_METHODS + ABLATIONS + ("dense_mlp",)
DATASETS = ("digits", "usps", "madelon")
#: Checks at the issue's own scale, run after the study and never screened on: 1,000-1,600
#: samples and 300 epochs, like its held-out image and speech sets. "usps_small": a
#: stratified 1,440 of USPS's rows; "classes26": a synthetic 26-class set of 1,560 x 617
#: whose features are all linear mixtures of 40 informative ones (correlated, none noise).
CHECK_SETS = ("usps_small", "classes26")
ALL_SETS = DATASETS + CHECK_SETS
EPOCHS = {"digits": 100, "usps": 100, "madelon": 200, "usps_small": 300, "classes26": 300}
#: (features, classes) per data set: the network's sizes, which the default preset's
#: learning rate follows (a run's key holds the resolved rate).
SHAPES = {"digits": (64, 10), "usps": (256, 10), "madelon": (500, 2), "usps_small": (256, 10),
          "classes26": (617, 26)}
#: Training samples whose activations feed cosine (and gradient) growth. USPS
#: has 7,920 training rows: all of them would make each topology update ~8x
#: dearer (three exact 1000 x 1000 top-k scans over 7,920-long vectors) for
#: little change in the picks; 2,000 is more than the two small sets have.
COSINE_SAMPLES = 2000

#: Named configurations: CTREClassifier parameters on top of the common ones.
CONFIGS = {
    "paper": {"preset": "paper"},
    "default": {"preset": "default"},
    # the default before its learning rate followed the fan-in: 0.3 at every epsilon
    "default_lr0.3": {"preset": "default", "learning_rate": 0.3},
    # the dense baseline at a learning rate it trains well with (and the default's schedule)
    "default_lr0.1": {"preset": "default", "learning_rate": 0.1},
    # step 1: the scale of the initial and the regrown weights (constant lr 0.01)
    "init_sparse": {"preset": "paper", "init": "he_sparse"},
    "init_sparse_grow_sparse": {"preset": "paper", "init": "he_sparse", "grow_init": "he_sparse"},
    "init_sparse_grow_zeros": {"preset": "paper", "init": "he_sparse", "grow_init": "zeros"},
    "init_sparse_grow_kept": {"preset": "paper", "init": "he_sparse", "grow_init": "kept"},
    "init_sparse_grow_threshold": {"preset": "paper", "init": "he_sparse",
                                   "grow_init": "threshold"},
    # step 2: the learning rate and its schedule (warm-up 5 epochs, cosine decay)
    "init_sparse_cos_lr0.01": {"preset": "paper", "init": "he_sparse", "lr_schedule": "cosine",
                               "warmup_epochs": 5},
    "init_sparse_cos_lr0.03": {"preset": "paper", "init": "he_sparse", "lr_schedule": "cosine",
                               "warmup_epochs": 5, "learning_rate": 0.03},
    "init_sparse_cos_lr0.1": {"preset": "paper", "init": "he_sparse", "lr_schedule": "cosine",
                              "warmup_epochs": 5, "learning_rate": 0.1},
    "init_sparse_cos_lr0.3": {"preset": "paper", "init": "he_sparse", "lr_schedule": "cosine",
                              "warmup_epochs": 5, "learning_rate": 0.3},
    # step 3: the regrown weights again, at the better learning rate
    **{f"lr0.1_grow_{g}": {"preset": "paper", "init": "he_sparse", "lr_schedule": "cosine",
                           "warmup_epochs": 5, "learning_rate": 0.1, "grow_init": g}
       for g in ("threshold", "he_sparse", "zeros")},
    # step 4: the learning rate with the threshold rule
    **{f"lr{lr}_grow_threshold": {"preset": "paper", "init": "he_sparse", "lr_schedule": "cosine",
                                  "warmup_epochs": 5, "learning_rate": lr,
                                  "grow_init": "threshold"}
       for lr in (0.2, 0.3)},
    "lr0.3_grow_zeros": {"preset": "paper", "init": "he_sparse", "lr_schedule": "cosine",
                         "warmup_epochs": 5, "learning_rate": 0.3, "grow_init": "zeros"},
}


# ----------------------------------------------------------------------- data
def _usps(data_dir):
    d = np.load(Path(data_dir) / "usps" / "usps.npz")
    return d["X"].astype(np.float64) / 255.0, d["y"].astype(np.int64)


def load(name, data_dir, scaling="standard"):
    """``(X_trval, y_trval, X_test, y_test)`` of data set ``name``, float32, sample-major."""
    from sklearn.model_selection import train_test_split

    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        parts = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    elif name == "usps":
        X, y = _usps(data_dir)
        parts = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    elif name == "usps_small":
        X, y = _usps(data_dir)
        X, _, y, _ = train_test_split(X, y, train_size=1440, stratify=y, random_state=0)
        parts = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    elif name == "classes26":
        from sklearn.datasets import make_classification

        X, y = make_classification(1560, 617, n_informative=40, n_redundant=577, n_classes=26,
                                   n_clusters_per_class=1, class_sep=2.0, random_state=0)
        parts = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    elif name == "madelon":
        from ctre_sparse.datasets import load_madelon

        ds = load_madelon(Path(data_dir) / "madelon")
        parts = (np.asarray(ds.X_train, np.float64), np.asarray(ds.X_test, np.float64),
                 (np.asarray(ds.y_train) > 0).astype(np.int64),
                 (np.asarray(ds.y_test) > 0).astype(np.int64))
    else:
        raise ValueError(f"unknown data set {name!r}; expected one of {ALL_SETS}")
    X_tr, X_te, y_tr, y_te = parts
    if scaling == "standard":
        mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
        std[std == 0] = 1.0
        X_tr, X_te = (X_tr - mean) / std, (X_te - mean) / std
    elif scaling == "minmax":  # the CTRE authors' scaling of every data set but MADELON
        lo, span = X_tr.min(axis=0), X_tr.max(axis=0) - X_tr.min(axis=0)
        span[span == 0] = 1.0
        X_tr, X_te = (X_tr - lo) / span, (X_te - lo) / span
    elif scaling != "none":
        raise ValueError(f"scaling must be 'standard', 'minmax' or 'none', got {scaling!r}")
    return (X_tr.astype(np.float32), np.asarray(y_tr), X_te.astype(np.float32),
            np.asarray(y_te))


# ----------------------------------------------------------------------- runs
def summarize(curves):
    """Best-validation epoch (first maximum), test accuracy there and at the end, speed."""
    val = np.asarray(curves["val"], dtype=float)
    test = np.asarray(curves["test"], dtype=float)
    if val.shape[0] == 0:  # diverged in the first epoch
        return {"best_val_epoch": 0, "best_val_acc": 0.0, "test_at_best_val": 0.0,
                "final_test": 0.0, "max_test": 0.0, "epochs_to_90pct_final": 0}
    best = int(np.argmax(val))
    final = float(test[-1])
    reach = np.flatnonzero(test >= 0.9 * final)
    return {"best_val_epoch": best + 1, "best_val_acc": float(val[best]),
            "test_at_best_val": float(test[best]), "final_test": final,
            "max_test": float(test.max()), "epochs_to_90pct_final": int(reach[0]) + 1}


def ablation_growth(method):
    """The growth strategy of an ablation ``method``.

    ``cosine_delay10``: random growth for the first 10 topology updates, cosine
    growth after (the first cosine scores come from an untrained network).

    ``cosine_no_readd``: CTRE-sim's rule without its randomness. CTRE-sim
    takes the cosine top-n and replaces every pick that re-adds a connection
    pruned in the same update by a random one; this takes the top-n cosine
    pairs among the connections absent *before* the update (the next-best
    pairs instead of random ones). If it trains like pure cosine growth,
    CTRE-sim's lag comes from its random replacements; if like CTRE-sim,
    from forbidding re-adds.
    """
    from ctre_sparse import ops
    from ctre_sparse.topology import CosineGrowth, RandomGrowth

    class CosineNoReadd(CosineGrowth):
        def choose(self, ctx, n, rng):
            zeros = np.zeros(ctx.removed_rows.shape[0], dtype=ctx.W.dtype)
            before = ops.insert(ctx.W, ctx.removed_rows, ctx.removed_cols, zeros).matrix
            rows, cols, _ = ops.topk_cosine(ctx.A_in, ctx.A_out, n, exclude=before,
                                            block_bytes=ctx.block_bytes, backend=ctx.backend)
            return rows.astype(np.int64), cols.astype(np.int64), int(rows.shape[0])

    class CosineDelayed(CosineGrowth):
        def __init__(self, delay):
            self.delay, self.updates = delay, 0

        def choose(self, ctx, n, rng):
            if ctx.layer_index == 0:
                self.updates += 1
            if self.updates <= self.delay:
                return RandomGrowth().choose(ctx, n, rng)
            return super().choose(ctx, n, rng)

    if method == "cosine_delay10":
        return CosineDelayed(10)
    if method != "cosine_no_readd":
        raise ValueError(f"unknown ablation {method!r}")
    return CosineNoReadd()


def estimator(method, epsilon, seed, epochs, params):
    from ctre_sparse import CTREClassifier

    class StudyClassifier(CTREClassifier):
        """CTREClassifier whose growth strategy may be an ablation of this script."""

        def _build(self, n_features, n_classes, entropy):
            split_seed = super()._build(n_features, n_classes, entropy)
            if method in ABLATIONS:
                self._trainer.updater.growth = ablation_growth(method)
            return split_seed

    kw = {"hidden_layer_sizes": HIDDEN, "epsilon": epsilon,
          "growth": "cosine" if method in ABLATIONS else method, "max_epochs": epochs,
          "random_state": seed, "cosine_samples": COSINE_SAMPLES, "patience": 40,
          "standardize": False}  # the inputs are scaled here, by --scaling
    kw.update(params)
    return StudyClassifier(**kw) if method in ABLATIONS else CTREClassifier(**kw)


def run_sparse(method, epsilon, seed, epochs, params, data):
    X, y, X_te, y_te = data
    est = estimator(method, epsilon, seed, epochs, params)
    curves = {k: [] for k in ("val", "test", "train_loss", "lr", "n_cosine", "n_random",
                              "seconds")}

    def record(est, rec):
        curves["val"].append(rec["val_accuracy"])
        curves["test"].append(float(est.score(X_te, y_te)))
        curves["train_loss"].append(rec["train_loss"])
        curves["lr"].append(rec["learning_rate"])
        curves["n_cosine"].append(rec["n_cosine"])
        curves["n_random"].append(rec["n_random"])
        curves["seconds"].append(rec["seconds"])

    from ctre_sparse.training import TrainingDivergedError

    t0 = time.perf_counter()
    diverged = None
    try:
        est.fit(X, y, callbacks=[record])
    except TrainingDivergedError as exc:  # recorded: the curves stop at the last good epoch
        diverged = len(curves["val"]) + 1
        print(f"  diverged: {exc}", flush=True)
    out = {**summarize(curves), "wall_seconds": time.perf_counter() - t0,
           "n_connections": est.n_connections_, "diverged_at": diverged, "curves": curves}
    if method == "ctre_seq":
        cos = curves["n_cosine"]
        out["switch_epoch"] = next((i + 1 for i in range(1, len(cos))
                                    if cos[i] == 0 and curves["n_random"][i] > 0), None)
    return out


def validation_rows(y, seed):
    """The rows CTREClassifier(random_state=seed) holds out for validation."""
    from ctre_sparse import CTREClassifier
    from ctre_sparse._random import run_seeds, seed_entropy

    est = CTREClassifier(random_state=seed)
    est.classes_ = np.unique(y)
    split_seed = run_seeds(seed_entropy(seed))[0]
    return est._split_validation(np.searchsorted(est.classes_, y), split_seed)


def sizes_of(dataset):
    """The layer sizes of the study's network on ``dataset``."""
    n_features, n_classes = SHAPES[dataset]
    return [n_features, *HIDDEN, n_classes]


def dense_schedule(params, epochs, dataset):
    """The learning rate per epoch of a configuration (its schedule, as the estimator's at
    epsilon 1 where the rate follows the network)."""
    from ctre_sparse._params import resolved

    cfg = resolved(estimator("static", 1.0, 0, epochs, params), sizes_of(dataset))
    schedule = cfg["schedule"]
    return [cfg["learning_rate"] if schedule is None else schedule(e) for e in range(epochs)]


def run_dense(seed, epochs, params, data, dataset):
    """scikit-learn MLPClassifier, same widths, the configuration's learning rates."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    X, y, X_te, y_te = data
    val = validation_rows(y, seed)
    train = np.setdiff1d(np.arange(y.shape[0]), val)
    lrs = dense_schedule(params, epochs, dataset)
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, solver="sgd", learning_rate_init=lrs[0],
                        momentum=0.9, nesterovs_momentum=True, alpha=1e-4, batch_size=100,
                        max_iter=epochs, early_stopping=False, random_state=seed)
    classes = np.unique(y)
    curves = {"val": [], "test": [], "train_loss": [], "lr": [], "seconds": []}
    t0 = time.perf_counter()
    diverged = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(epochs):
            te = time.perf_counter()
            if epoch:  # MLPClassifier keeps its first rate; its SGD optimizer reads this one
                clf._optimizer.learning_rate = lrs[epoch]
            try:
                clf.partial_fit(X[train], y[train], classes=classes)
            except ValueError as exc:  # "Solver produced non-finite parameter weights"
                diverged = epoch + 1
                print(f"  diverged: {exc}", flush=True)
                break
            curves["seconds"].append(time.perf_counter() - te)
            curves["lr"].append(lrs[epoch])
            curves["train_loss"].append(float(clf.loss_))
            curves["val"].append(float(clf.score(X[val], y[val])))
            curves["test"].append(float(clf.score(X_te, y_te)))
    return {**summarize(curves), "wall_seconds": time.perf_counter() - t0,
            "n_connections": [int(w.size) for w in clf.coefs_], "diverged_at": diverged,
            "curves": curves}


def init_signal(data, seed=0, n=1000):
    """Activation RMS per hidden layer and logit spread at initialisation, per ``init``."""
    from ctre_sparse.nn import SparseMLP

    X, y = data[0][:n], data[1]
    sizes = [X.shape[1], *HIDDEN, int(np.unique(y).shape[0])]
    out = {}
    for init in ("he", "he_sparse"):
        model = SparseMLP(sizes, epsilon=1.0, init=init, random_state=seed)
        acts = model.activations(np.ascontiguousarray(X.T))
        logits = np.log(np.maximum(acts[-1].astype(np.float64), 1e-300))
        out[init] = {"act_rms": [float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
                                 for a in acts[1:-1]],
                     "logit_std_over_samples": float(np.std(logits, axis=1).mean())}
    return out


# ---------------------------------------------------------------- the sweep
def append_line(path, text):
    """Append one line with a single O_APPEND write (safe with a parallel sweep process)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def resolved_params(params, epochs, method, dataset, epsilon):
    """The preset-dependent values a configuration trains with (part of a run's key)."""
    from ctre_sparse._params import resolved

    growth = "static" if method == "dense_mlp" else method
    eps = 1.0 if method == "dense_mlp" else float(epsilon)
    cfg = resolved(estimator(growth, eps, 0, epochs, params), sizes_of(dataset))
    schedule = cfg.pop("schedule")
    cfg["schedule"] = None if schedule is None else repr(schedule)
    return cfg


def recorded_resolution(r):
    """A run's recorded preset values; runs from before ``weight_decay``, ``dropout``,
    ``grad_clip`` and ``prune`` followed the preset trained with the estimator's fixed 1e-4,
    0.0, no clipping and magnitude pruning (or the values their params gave)."""
    rec = r.get("resolved")
    for name, before in (("weight_decay", 1e-4), ("dropout", 0.0), ("grad_clip", 0.0),
                         ("prune", "magnitude")):
        if rec is not None and name not in rec:
            value = r["params"].get(name, before)
            rec = {**rec, name: value if isinstance(value, str) else float(value)}
    return rec


def run_key(r):
    return (r["dataset"], r["method"], float(r["epsilon"]), int(r["seed"]), int(r["epochs"]),
            r["config"], json.dumps(r["params"], sort_keys=True), r.get("scaling", "standard"),
            json.dumps(r.get("resolved"), sort_keys=True))


def read_results(path):
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def configs(args):
    out = [(name, CONFIGS[name]) for name in args.config]
    if args.params:
        out.append((args.name or "custom", json.loads(args.params)))
    return out


def sweep(args):
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {run_key(r) for r in read_results(out)}
    commit = short_commit()
    for dataset in args.datasets:
        data = load(dataset, args.data_dir, args.scaling)
        epochs = args.epochs or EPOCHS[dataset]
        for seed in args.seeds:
            for name, params in configs(args):
                for epsilon in args.epsilons:
                    for method in args.methods:
                        if method == "dense_mlp" and epsilon != args.epsilons[0]:
                            continue  # one dense run per configuration and seed
                        eps = 0.0 if method == "dense_mlp" else float(epsilon)
                        rec = {"dataset": dataset, "method": method, "epsilon": eps,
                               "seed": seed, "epochs": epochs, "config": name,
                               "params": params, "scaling": args.scaling,
                               "resolved": resolved_params(params, epochs, method, dataset,
                                                           eps)}
                        if run_key(rec) in done:
                            continue
                        print(f"run {dataset} {method} eps={eps:g} seed={seed} {name} ...",
                              flush=True)
                        res = (run_dense(seed, epochs, params, data, dataset)
                               if method == "dense_mlp"
                               else run_sparse(method, eps, seed, epochs, params, data))
                        rec.update(res, git_commit=commit, finished_utc=time.strftime(
                            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                        append_line(out, json.dumps(rec))
                        print(f"  test@best-val {res['test_at_best_val']:.4f} (epoch "
                              f"{res['best_val_epoch']}), final {res['final_test']:.4f}, "
                              f"90% at epoch {res['epochs_to_90pct_final']}, "
                              f"{res['wall_seconds']:.0f}s", flush=True)


# ------------------------------------------------------------------ reporting
def _ms(values, scale=100.0, fmt="{:.1f}"):
    v = np.asarray(values, dtype=float) * scale
    if v.size == 0:
        return "-"
    sd = f" ± {fmt.format(v.std(ddof=1))}" if v.size > 1 else ""
    return f"{fmt.format(v.mean())}{sd}"


def select(rows, args):
    keep, dense_seen = [], set()
    for r in rows:
        if args.datasets and r["dataset"] not in args.datasets:
            continue
        if r["seed"] not in args.seeds:
            continue
        if args.methods and r["method"] not in args.methods:
            continue
        if r["epochs"] != (args.epochs or EPOCHS[r["dataset"]]):
            continue  # runs of another length are another table (--epochs picks them)
        if r["method"] == "dense_mlp":
            if args.dense_config and r["config"] not in args.dense_config:
                continue
            key = (r["dataset"], r["config"], r["seed"], r["epochs"])
            if key in dense_seen:
                continue  # a dense run repeated on a later commit (it repeats exactly)
            dense_seen.add(key)
        elif args.config and r["config"] not in args.config:
            continue
        if args.epsilons and r["method"] != "dense_mlp" and r["epsilon"] not in args.epsilons:
            continue
        if r.get("scaling", "standard") != args.scaling:
            continue
        if args.commits and r["method"] != "dense_mlp" and r.get("git_commit") not in args.commits:
            continue  # the dense runs involve no ctre_sparse code but the validation rows
        if args.current and recorded_resolution(r) != resolved_params(
                r["params"], r["epochs"], r["method"], r["dataset"], r["epsilon"]):
            continue  # trained with what a preset resolved to before it changed
        keep.append(r)
    return keep


def groups(rows):
    """Runs by (data set, configuration, method, epsilon, epochs, learning rate)."""
    out = {}
    for r in rows:
        lr = (r.get("resolved") or {}).get("learning_rate")
        key = (r["dataset"], r["config"], r["method"], r["epsilon"], r["epochs"], lr)
        out.setdefault(key, []).append(r)
    return out


def table(rows):
    lines = ["| data set | config | method | eps | epochs | lr | seeds | test @ best val (%) "
             "| final test (%) | best-val epoch | epoch reaching 90 % of final | diverged |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = {m: i for i, m in enumerate(METHODS)}
    for key in sorted(groups(rows), key=lambda k: (k[0], k[1], k[3], order.get(k[2], 99))):
        rs = groups(rows)[key]
        ds, cfg, method, eps, epochs, lr = key
        lines.append(f"| {ds} | {cfg} | {method} | {eps:g} | {epochs} | {lr} | {len(rs)} "
                     f"| {_ms([r['test_at_best_val'] for r in rs])} "
                     f"| {_ms([r['final_test'] for r in rs])} "
                     f"| {_ms([r['best_val_epoch'] for r in rs], 1.0, '{:.0f}')} "
                     f"| {_ms([r['epochs_to_90pct_final'] for r in rs], 1.0, '{:.0f}')} "
                     f"| {sum(r.get('diverged_at') is not None for r in rs)} |")
    return "\n".join(lines)


CHANCE = {"digits": 0.1, "usps": 0.1, "madelon": 0.5, "usps_small": 0.1, "classes26": 1 / 26}


def pivot(rows, key="test_at_best_val"):
    """Markdown: one row per method, one column per (data set, epsilon); mean ± sd (seeds)."""
    cols = sorted({(r["dataset"], r["epsilon"]) for r in rows if r["method"] != "dense_mlp"},
                  key=lambda c: (ALL_SETS.index(c[0]), c[1]))
    head = "| method | " + " | ".join(f"{d} eps {e:g}" for d, e in cols) + " |"
    lines = [head, "|" + " --- |" * (len(cols) + 1)]
    for method in METHODS:
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        cells = []
        for d, e in cols:
            sel = [r[key] for r in rs if r["dataset"] == d and
                   (method == "dense_mlp" or r["epsilon"] == e)]
            cells.append(f"{_ms(sel)} (n={len(sel)})" if sel else "-")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def screen(rows):
    """Markdown per data set: one row per configuration, one column per method;
    "test at best validation (final)", mean over the seeds present (their count in brackets)."""
    out = []
    for ds in ALL_SETS:
        rs = [r for r in rows if r["dataset"] == ds and r["method"] != "dense_mlp"]
        if not rs:
            continue
        methods = [m for m in METHODS if any(r["method"] == m for r in rs)]
        out += [f"{ds}:", "", "| configuration | " + " | ".join(methods) + " |",
                "|" + " --- |" * (len(methods) + 1)]
        for cfg in dict.fromkeys(r["config"] for r in rs):
            cells = []
            for m in methods:
                sel = [r for r in rs if r["config"] == cfg and r["method"] == m]
                if not sel:
                    cells.append("-")
                    continue
                best = 100 * np.mean([r["test_at_best_val"] for r in sel])
                final = 100 * np.mean([r["final_test"] for r in sel])
                div = sum(r.get("diverged_at") is not None for r in sel)
                cells.append(f"{best:.1f} ({final:.1f})" + (f" [n={len(sel)}]" if len(sel) > 1
                                                            else "") + (" div" if div else ""))
            out.append(f"| {cfg} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def targets(rows):
    """The issue's checks at epsilon 1, from the records (one line each)."""
    out = []
    by = groups([r for r in rows if r["epsilon"] in (0.0, 1.0)])

    def get(ds, method, k="test_at_best_val"):
        for (d, _, m, _, _, _), rs in by.items():
            if d == ds and m == method:
                return {r["seed"]: r[k] for r in rs}
        return {}

    for ds in ALL_SETS:
        dense = get(ds, "dense_mlp")
        if not dense:
            continue
        dm = np.mean(list(dense.values()))
        for method in ("cosine", "ctre_seq", "ctre_sim", "rigl", "random", "static"):
            acc = get(ds, method)
            if not acc:
                continue
            m = np.mean(list(acc.values()))
            final = get(ds, method, "final_test")
            reach = get(ds, method, "epochs_to_90pct_final")
            epochs = next(r["epochs"] for r in rows if r["dataset"] == ds)
            out.append(f"{ds} {method}: {100 * m:.1f} vs dense {100 * dm:.1f} "
                       f"(gap {100 * (dm - m):+.1f}), {100 * (m - CHANCE[ds]):.1f} above chance, "
                       f"final {100 * np.mean(list(final.values())):.1f}, 90 % of final by epoch "
                       f"{max(reach.values())} of {epochs} (worst seed)")
        sets = get(ds, "random")
        for ctre in ("ctre_seq", "ctre_sim"):
            c = get(ds, ctre)
            common = sorted(set(c) & set(sets))
            if common:
                diffs = [100 * (c[s] - sets[s]) for s in common]
                out.append(f"{ds} {ctre} - SET per seed {common}: "
                           f"{', '.join(f'{d:+.1f}' for d in diffs)} (mean {np.mean(diffs):+.1f})")
    return "\n".join(out)


def plot(rows, path, ylim=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in ALL_SETS if any(r["dataset"] == d for r in rows)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2),
                             squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for key, rs in sorted(groups([r for r in rows if r["dataset"] == ds]).items(),
                              key=lambda kv: METHODS.index(kv[0][2])):
            n = max(len(r["curves"]["test"]) for r in rs)  # a diverged run's curve stops
            c = np.full((len(rs), n), np.nan)
            for i, r in enumerate(rs):
                c[i, :len(r["curves"]["test"])] = np.asarray(r["curves"]["test"]) * 100
            x = np.arange(1, n + 1)
            label = f"{key[2]}" + ("" if key[2] == "dense_mlp" else f", eps {key[3]:g}")
            ax.plot(x, np.nanmean(c, axis=0), label=f"{label} (n={len(rs)})", lw=1.2)
            ax.fill_between(x, np.nanmin(c, axis=0), np.nanmax(c, axis=0), alpha=0.12)
        ax.set_title(f"{ds}: test accuracy (mean, band min..max)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


# --------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("CTRE_SPARSE_DATA", "../shared/data"),
                   help="folder with usps/usps.npz and madelon/")
    p.add_argument("--datasets", nargs="+", choices=ALL_SETS,
                   help="default: the study's three (the checks %s only when named)"
                        % ", ".join(CHECK_SETS))
    p.add_argument("--methods", nargs="+", choices=METHODS)
    p.add_argument("--epsilons", nargs="+", type=float)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="default: 100 (digits, USPS), 200 (MADELON); "
                   "with --table/--pivot/--screen/--plot: only runs of this length (default: "
                   "each data set's default)")
    p.add_argument("--config", nargs="+", choices=sorted(CONFIGS), default=[])
    p.add_argument("--params", help="JSON dict of CTREClassifier parameters (a custom config)")
    p.add_argument("--name", help="name of the --params configuration")
    p.add_argument("--dense-config", nargs="+", choices=sorted(CONFIGS),
                   help="with --table/--pivot/--plot: the dense runs of these configurations "
                        "(default: all)")
    p.add_argument("--scaling", choices=("standard", "minmax", "none"), default="standard",
                   help="input scaling with the training part's statistics (default: "
                        "%(default)s; 'minmax' is the CTRE authors' choice for image and "
                        "speech data)")
    p.add_argument("--threads", type=int, help="limit OpenMP/BLAS/numba threads")
    p.add_argument("--out", default="docs/results/accuracy_study.jsonl")
    p.add_argument("--table", action="store_true", help="print the table of --out and exit")
    p.add_argument("--current", action="store_true",
                   help="with --table/--pivot/--screen/--plot: only runs whose preset values are "
                        "what the presets resolve to now")
    p.add_argument("--commits", nargs="+",
                   help="with --table/--pivot/--screen/--plot: only sparse runs of these commits")
    p.add_argument("--screen", action="store_true",
                   help="print configuration x method tables per data set (the study steps)")
    p.add_argument("--pivot", action="store_true",
                   help="print method x (data set, epsilon) tables (test accuracy at the best "
                        "validation epoch, then at the end) and the issue's checks at epsilon 1")
    p.add_argument("--plot", metavar="PNG", help="draw the test-accuracy curves of --out")
    p.add_argument("--ylim", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="with --plot: the accuracy axis' range, in %% (default: all of it)")
    p.add_argument("--signal", action="store_true",
                   help="print the activation RMS at initialisation ('he' vs 'he_sparse') per "
                        "data set as JSON and exit")
    args = p.parse_args(argv)
    if args.params and not args.name:
        p.error("--params needs --name")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.table or args.plot or args.pivot or args.screen:
        rows = select(read_results(args.out), args)
        if args.screen:
            print(screen(rows))
        if args.table:
            print(table(rows))
        if args.pivot:
            print(pivot(rows), pivot(rows, "final_test"), targets(rows), sep="\n\n")
        if args.plot:
            plot(rows, args.plot, args.ylim)
        return 0
    args.datasets = args.datasets or list(DATASETS)
    if args.signal:
        print(json.dumps({ds: init_signal(load(ds, args.data_dir, args.scaling))
                          for ds in args.datasets}, indent=1))
        return 0
    args.methods = args.methods or list(SPARSE_METHODS)
    args.epsilons = args.epsilons or [1.0]
    if not args.config and not args.params:
        args.config = ["default"]
    sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
