"""Reproduce the CTRE paper's MADELON experiment with ctre_sparse.

Setup (the authors' public code, zahraatashgahi/CTRE, ``run.sbatch`` and ``code/``):
500-1000-1000-1000-2 MLP, ReLU hidden layers, softmax output, Erdős–Rényi
sparsity epsilon=1 per layer, zeta=0.2, SGD lr 0.01 with Nesterov momentum
0.9, L2 1e-4, batch 100; validation split ``train_test_split(test_size=0.1,
random_state=42)`` of the 2000 training samples, StandardScaler fitted on the
2000 training samples (as the authors do, before their split), test = the 600
``madelon_valid`` samples. CTRE-seq switches to random growth once the
validation accuracy has not improved for 40 epochs (the authors'
``early_stop_epoch``). Test accuracy is measured after every epoch, so the
"test accuracy at the best-validation epoch" (first best, strict ``>`` like
the authors) is exact.

Methods: ``ctre_sim``, ``ctre_seq``, ``cosine``, ``random`` (SET), ``static``
(sparse, fixed topology) and ``dense_mlp`` (scikit-learn MLPClassifier of the
same shape, one ``partial_fit`` per epoch).

Every finished run is appended as one JSON line to ``--out``; a run already
there (same method, seed and configuration) is skipped, so an interrupted
sweep continues where it stopped. ``--table`` prints the markdown table of a
results file; ``--plot`` draws the test-accuracy curves; ``--diagnose`` runs
one seed with extra instrumentation (re-added connections, pick
concentration) and prints a JSON report.

Examples
--------
    PYTHONPATH=. python benchmarks/reproduce_madelon.py --threads 1 --epochs 200 --seeds 0 1 2 3 4
    PYTHONPATH=. python benchmarks/reproduce_madelon.py --table --epochs 200 \
        --out docs/results/reproduction_results.jsonl

See docs/reproduction.md for the results and what they show.
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

SPARSE_METHODS = ("ctre_sim", "ctre_seq", "cosine", "random", "static")
METHODS = SPARSE_METHODS + ("dense_mlp",)
HIDDEN = (1000, 1000, 1000)
N_INFORMATIVE = 20  # MADELON: 5 informative + 15 linear combinations of them


# ----------------------------------------------------------------------- data
def load_data(data_dir):
    """Train/validation/test arrays as the authors build them (float32, sample-major)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from ctre_sparse.datasets import load_madelon

    ds = load_madelon(data_dir)
    X_train = np.asarray(ds.X_train, dtype=np.float64)
    X_test = np.asarray(ds.X_test, dtype=np.float64)
    scaler = StandardScaler().fit(X_train)  # the authors: fit on all 2000, then split
    X_train = scaler.transform(X_train).astype(np.float32)
    X_test = scaler.transform(X_test).astype(np.float32)
    y_train = (np.asarray(ds.y_train) > 0).astype(np.int64)  # -1/+1 -> 0/1
    y_test = (np.asarray(ds.y_test) > 0).astype(np.int64)
    X_tr, X_val, y_tr, y_val = train_test_split(X_train, y_train, test_size=0.1,
                                                random_state=42)
    return {"X_tr": X_tr, "y_tr": y_tr, "X_val": X_val, "y_val": y_val,
            "X_test": X_test, "y_test": y_test}


def informative_features(X, y, k=N_INFORMATIVE):
    """Indices of the ``k`` features with the largest |Pearson correlation| with y."""
    Xc = X - X.mean(axis=0)
    yc = y - y.mean()
    corr = np.abs(Xc.T @ yc) / (np.linalg.norm(Xc, axis=0) * np.linalg.norm(yc) + 1e-12)
    return np.argsort(-corr, kind="stable")[:k]


def relevant_features(X, k=N_INFORMATIVE):
    """The ``k`` features most correlated with another feature (label-free).

    MADELON's 20 relevant features are 5 informative ones and 15 linear
    combinations of them, so each has a partner with |corr| ~ 0.7..0.99; the
    480 noise features have max |corr| ~ 0.1 with any other. This gives the
    relevant set exactly (the 0-based indices 28, 48, 64, ..., 493).
    """
    C = np.corrcoef(np.asarray(X, dtype=np.float64).T)
    np.fill_diagonal(C, 0.0)
    return np.sort(np.argsort(-np.abs(C).max(axis=0), kind="stable")[:k])


def fm(X):
    """Sample-major -> feature-major C-contiguous float32."""
    return np.ascontiguousarray(X.T, dtype=np.float32)


# ------------------------------------------------------------------ sparse runs
def keep_readded_updater_class():
    """A TopologyUpdater where a regrown connection pruned in the same step keeps its weight.

    That is the authors' (RigL-based) semantics: only connections absent before
    the update get a new weight and zero momentum; one that is pruned and
    picked again keeps its weight and momentum. ctre_sparse re-draws the
    weight of every regrown connection. An ablation, for ``--readd keep``.
    """
    from ctre_sparse.topology import TopologyUpdater
    from ctre_sparse.topology.growth import pattern_keys

    class KeepReaddedUpdater(TopologyUpdater):
        def _update_layer(self, i, layer, acts, optimizer, rng, **kwargs):
            W = layer.W
            old_keys, old_data = pattern_keys(W), W.data.copy()
            old_v = None if optimizer is None or optimizer.velocity_W is None \
                else optimizer.velocity_W[i].copy()
            stats = super()._update_layer(i, layer, acts, optimizer, rng, **kwargs)
            new = layer.W
            keys = pattern_keys(new)
            pos = np.searchsorted(old_keys, keys)
            pos = np.minimum(pos, old_keys.shape[0] - 1)
            was = old_keys[pos] == keys  # present before the update (kept or re-added)
            new.data[was] = old_data[pos[was]]
            if old_v is not None:
                optimizer.velocity_W[i][was] = old_v[pos[was]]
            return stats

    return KeepReaddedUpdater


def scaled_growth_updater_class(base):
    """``base`` updater whose regrown weights use the layer's actual mean fan-in (ablation).

    New connections get U(+-sqrt(6 / (nnz / n_out))) instead of U(+-sqrt(6 / n_in)):
    the same rescaling as ``--init-scale sparse``, applied to growth (``--grow-scale
    sparse``), so that regrown connections are not always the smallest ones.
    """
    from ctre_sparse.topology.growth import pattern_keys

    class ScaledGrowthUpdater(base):
        def _update_layer(self, i, layer, acts, optimizer, rng, **kwargs):
            old_keys, old_data = pattern_keys(layer.W), layer.W.data.copy()
            stats = super()._update_layer(i, layer, acts, optimizer, rng, **kwargs)
            W = layer.W
            keys = pattern_keys(W)
            pos = np.minimum(np.searchsorted(old_keys, keys), old_keys.shape[0] - 1)
            # absent before this update, or re-added with a freshly drawn weight
            grown = (old_keys[pos] != keys) | (old_data[pos] != W.data)
            W.data[grown] *= np.float32(max(1.0, np.sqrt(W.n_in * W.n_out / max(W.nnz, 1))))
            return stats

    return ScaledGrowthUpdater


def build_trainer(method, seed, args):
    """Model, optimizer, updater and trainer, seeded like CTREClassifier does it."""
    from ctre_sparse import training
    from ctre_sparse.nn.mlp import SparseMLP
    from ctre_sparse.nn.optim import SGD
    from ctre_sparse.topology import TopologyUpdater

    seeds = np.random.SeedSequence(seed).spawn(2)
    model = SparseMLP([500, *HIDDEN, 2], activation="relu", epsilon=args.epsilon, init="he",
                      backend=args.backend, random_state=np.random.default_rng(seeds[0]))
    if args.init_scale == "sparse":
        for layer in model.layers:  # He bound for the actual mean fan-in, not the dense one
            W = layer.W
            W.data *= np.float32(max(1.0, np.sqrt(W.n_in * W.n_out / max(W.nnz, 1))))
    optimizer = SGD(learning_rate=args.lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    cls = keep_readded_updater_class() if args.readd == "keep" else TopologyUpdater
    if args.grow_scale == "sparse":
        cls = scaled_growth_updater_class(cls)
    updater = cls(zeta=args.zeta, growth=method, cosine_samples=2**62,
                  patience=args.patience, backend=args.backend)
    return training.Trainer(model, optimizer, updater, batch_size=100,
                            random_state=np.random.default_rng(seeds[1]))


def hidden_stats(model, X_fm):
    """Per hidden layer: fraction of neurons never active, fraction of zero activations."""
    acts = model.activations(X_fm)[1:-1]
    return {"dead_neurons": [float(np.mean(np.all(a <= 0, axis=1))) for a in acts],
            "zero_activations": [float(np.mean(a <= 0)) for a in acts]}


def signal_stats(model, X_fm, y):
    """Activation RMS per layer, logit-difference spread and gradient RMS per layer."""
    acts = model.activations(X_fm)
    logits = np.log(np.maximum(acts[-1], 1e-30))
    model.forward(X_fm, training=True)
    model.backward(y)
    return {"act_rms": [float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) for a in acts[1:-1]],
            "logit_diff_std": float(np.std(logits[1] - logits[0])),
            "grad_rms": [float(np.sqrt(np.mean(layer.grad_W.astype(np.float64) ** 2)))
                         for layer in model.layers]}


def degree_stats(model):
    """Connectivity of every layer: density, and how many neurons carry connections."""
    out = []
    for layer in model.layers:
        W = layer.W
        rows = np.diff(W.indptr)
        cols = np.bincount(W.indices, minlength=W.n_in)
        out.append({"shape": [int(W.n_out), int(W.n_in)], "nnz": int(W.nnz),
                    "density": float(W.nnz / (W.n_out * W.n_in)),
                    "outputs_with_inputs": int(np.count_nonzero(rows)),
                    "inputs_used": int(np.count_nonzero(cols)),
                    "max_in_degree": int(rows.max()), "max_out_degree": int(cols.max())})
    return out


def input_overlap(model, top, relevant):
    """Share of input-layer connections that start at the ``top`` / ``relevant`` features."""
    cols = np.asarray(model.layers[0].W.indices)
    counts = np.bincount(cols, minlength=model.layer_sizes[0])
    return {"share_top20": float(counts[top].sum() / max(1, cols.size)),
            "share_relevant20": float(counts[relevant].sum() / max(1, cols.size)),
            "chance": len(top) / model.layer_sizes[0],
            "top20_connected": int(np.count_nonzero(counts[top])),
            "relevant20_connected": int(np.count_nonzero(counts[relevant])),
            "input_counts": counts.tolist()}


def run_sparse(method, seed, args, data):
    """Train one sparse run; return its JSON-able result record."""
    trainer = build_trainer(method, seed, args)
    X_tr, X_val, X_te = fm(data["X_tr"]), fm(data["X_val"]), fm(data["X_test"])
    top = informative_features(data["X_tr"], data["y_tr"])
    relevant = relevant_features(data["X_tr"])
    curves = {k: [] for k in ("val", "test", "train_loss", "n_cosine", "n_random", "seconds")}
    t0 = time.perf_counter()
    train_seconds = 0.0
    for _ in range(args.epochs):
        rec = trainer.run_epoch(X_tr, data["y_tr"], X_val, data["y_val"])
        train_seconds += rec["seconds"]
        test = float(np.mean(trainer.model.predict_codes(X_te) == data["y_test"]))
        curves["val"].append(rec["val_accuracy"])
        curves["test"].append(test)
        curves["train_loss"].append(rec["train_loss"])
        curves["n_cosine"].append(rec["n_cosine"])
        curves["n_random"].append(rec["n_random"])
        curves["seconds"].append(rec["seconds"])
    wall = time.perf_counter() - t0
    model = trainer.model
    growth = trainer.updater.growth
    extra = {"switch_epoch": None}
    if method == "ctre_seq":
        n_cos = curves["n_cosine"]
        extra["switch_epoch"] = next((i + 1 for i in range(1, len(n_cos))
                                      if n_cos[i] == 0 and curves["n_random"][i] > 0), None)
        extra["switched"] = bool(growth.switched)
    return {**summarize(curves), "wall_seconds": wall, "epoch_seconds": train_seconds,
            "n_connections": [int(layer.W.nnz) for layer in model.layers],
            "n_connections_total": int(model.n_connections),
            "layers": degree_stats(model), "hidden": hidden_stats(model, X_tr),
            "input_overlap": input_overlap(model, top, relevant), **extra, "curves": curves}


# ------------------------------------------------------------------- dense run
def run_dense(seed, args, data):
    """scikit-learn MLPClassifier of the same shape, one partial_fit per epoch."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, solver="sgd", learning_rate_init=args.lr,
                        momentum=0.9, nesterovs_momentum=True, alpha=1e-4, batch_size=100,
                        max_iter=args.epochs, early_stopping=False, random_state=seed)
    classes = np.array([0, 1])
    curves = {"val": [], "test": [], "train_loss": [], "seconds": []}
    top = informative_features(data["X_tr"], data["y_tr"])
    relevant = relevant_features(data["X_tr"])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.epochs):
            te = time.perf_counter()
            clf.partial_fit(data["X_tr"], data["y_tr"], classes=classes)
            curves["seconds"].append(time.perf_counter() - te)
            curves["train_loss"].append(float(clf.loss_))
            curves["val"].append(float(clf.score(data["X_val"], data["y_val"])))
            curves["test"].append(float(clf.score(data["X_test"], data["y_test"])))
    wall = time.perf_counter() - t0
    W0 = np.abs(clf.coefs_[0]).sum(axis=1)
    n_conn = [int(w.size) for w in clf.coefs_]
    return {**summarize(curves), "wall_seconds": wall, "epoch_seconds": sum(curves["seconds"]),
            "n_connections": n_conn, "n_connections_total": int(sum(n_conn)),
            "input_weight_share_top20": float(W0[top].sum() / W0.sum()),
            "input_weight_share_relevant20": float(W0[relevant].sum() / W0.sum()),
            "curves": curves}


def summarize(curves):
    """Best-validation epoch (first strict best), test there, final test."""
    val = np.asarray(curves["val"], dtype=float)
    best = int(np.argmax(val))  # argmax returns the first maximum, like the authors' '>'
    return {"best_val_epoch": best + 1, "best_val_acc": float(val[best]),
            "test_at_best_val": float(curves["test"][best]),
            "final_test": float(curves["test"][-1]), "final_val": float(val[-1]),
            "max_test": float(np.max(curves["test"]))}


# ---------------------------------------------------------------- the sweep
def config(args):
    cfg = {"epochs": args.epochs, "epsilon": args.epsilon, "zeta": args.zeta, "lr": args.lr,
           "patience": args.patience}
    if args.init_scale != "dense":
        cfg["init_scale"] = args.init_scale
    if args.readd != "reinit":
        cfg["readd"] = args.readd
    if args.grow_scale != "dense":
        cfg["grow_scale"] = args.grow_scale
    return cfg


def done_runs(path, cfg):
    done = set()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("config") == cfg:
                    done.add((r["method"], r["seed"]))
    return done


def append_line(path, text):
    """Append one line with a single O_APPEND write (safe with a parallel sweep process)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep(args):
    data = load_data(args.data_dir)
    commit = short_commit()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = config(args)
    done = done_runs(out, cfg)
    for seed in args.seeds:
        for method in args.methods:
            if (method, seed) in done:
                print(f"skip {method} seed {seed} (in {out})", flush=True)
                continue
            print(f"run {method} seed {seed} ...", flush=True)
            rec = (run_dense(seed, args, data) if method == "dense_mlp"
                   else run_sparse(method, seed, args, data))
            rec = {"method": method, "seed": seed, "config": cfg, "backend": args.backend,
                   "git_commit": commit,
                   "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **rec}
            append_line(out, json.dumps(rec))
            print(f"  {method} seed {seed}: test@best-val {rec['test_at_best_val']:.4f} "
                  f"(epoch {rec['best_val_epoch']}), final test {rec['final_test']:.4f}, "
                  f"{rec['wall_seconds']:.1f}s", flush=True)


# ------------------------------------------------------------------ reporting
def load_results(path, epochs=None, truncate=None):
    """Records of ``path`` trained for ``epochs``; ``truncate`` re-summarizes the first epochs.

    Nothing in a run depends on the total number of epochs (constant learning
    rate, CTRE-seq's patience counts from the start), so the first ``truncate``
    epochs of a longer run are exactly a ``truncate``-epoch run; its wall time
    is the sum of those epochs' training times plus the per-epoch test share.
    """
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if epochs is not None:
        rows = [r for r in rows if r["config"]["epochs"] == epochs]
    if truncate is not None:
        out = []
        for r in rows:
            n = r["config"]["epochs"]
            if n < truncate:
                continue
            curves = {k: v[:truncate] for k, v in r["curves"].items()}
            eval_share = (r["wall_seconds"] - r["epoch_seconds"]) * truncate / n
            out.append({**r, **summarize(curves), "curves": curves,
                        "wall_seconds": sum(curves["seconds"]) + eval_share,
                        "truncated_from": n})
        rows = out
    return rows


def _ms(values, scale=100.0, fmt="{:.2f}"):
    v = np.asarray(values, dtype=float) * scale
    sd = v.std(ddof=1) if v.size > 1 else float("nan")
    return f"{fmt.format(v.mean())} ± {fmt.format(sd)}"


def table(rows):
    """Markdown table, one line per method (mean ± sample std over seeds)."""
    lines = ["| method | seeds | test acc @ best val (%) | final test acc (%) | best val acc (%) "
             "| best-val epoch | connections | density (%) | wall time per run (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    dense_total = 500 * 1000 + 1000 * 1000 * 2 + 1000 * 2
    for method in METHODS:
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        conn = rs[0]["n_connections_total"]
        lines.append(
            f"| {method} | {len(rs)} | {_ms([r['test_at_best_val'] for r in rs])} "
            f"| {_ms([r['final_test'] for r in rs])} | {_ms([r['best_val_acc'] for r in rs])} "
            f"| {_ms([r['best_val_epoch'] for r in rs], 1.0, '{:.0f}')} | {conn} "
            f"| {100.0 * conn / dense_total:.3g} "
            f"| {_ms([r['wall_seconds'] for r in rs], 1.0, '{:.1f}')} |")
    return "\n".join(lines)


def diagnostics_table(rows):
    """Per sparse method, at the end of training: dead neurons, connectivity, input overlap."""
    lines = ["| method | dead hidden neurons (L1/L2/L3, %) | zero activations (L1/L2/L3, %) "
             "| hidden neurons with inputs (L1/L2/L3) | max in-degree (L1/L2/L3) "
             "| input connections on the 20 relevant features (%, chance 4) "
             "| on the top-20 by abs. corr. with the label (%) | inputs used (of 500) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for method in SPARSE_METHODS:
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        dead = np.mean([r["hidden"]["dead_neurons"] for r in rs], axis=0) * 100
        zero = np.mean([r["hidden"]["zero_activations"] for r in rs], axis=0) * 100
        with_in = np.mean([[l["outputs_with_inputs"] for l in r["layers"][:3]] for r in rs], 0)
        max_in = np.mean([[l["max_in_degree"] for l in r["layers"][:3]] for r in rs], 0)
        rel = [r["input_overlap"]["share_relevant20"] for r in rs
               if "share_relevant20" in r["input_overlap"]]
        share = [r["input_overlap"]["share_top20"] for r in rs]
        used = np.mean([r["layers"][0]["inputs_used"] for r in rs])
        rel_text = f"{_ms(rel)} (n={len(rel)})" if rel else "n/a"
        lines.append(f"| {method} | {'/'.join(f'{d:.0f}' for d in dead)} "
                     f"| {'/'.join(f'{z:.0f}' for z in zero)} "
                     f"| {'/'.join(f'{w:.0f}' for w in with_in)} "
                     f"| {'/'.join(f'{m:.0f}' for m in max_in)} | {rel_text} | {_ms(share)} "
                     f"| {used:.0f} |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for method in METHODS:
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        for ax, key in zip(axes, ("test", "val")):
            c = np.array([r["curves"][key] for r in rs]) * 100
            x = np.arange(1, c.shape[1] + 1)
            ax.plot(x, c.mean(axis=0), label=f"{method} (n={len(rs)})")
            ax.fill_between(x, c.min(axis=0), c.max(axis=0), alpha=0.12)
    for ax, name in zip(axes, ("test", "validation")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} accuracy (%)")
        ax.set_title(f"MADELON, {name} accuracy (mean over seeds, band = min..max)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


# ---------------------------------------------------------------- diagnosis
def diagnose(args):
    """One instrumented run per growth: re-added connections and pick concentration."""
    data = load_data(args.data_dir)
    report = {}
    for method in args.methods:
        if method not in ("cosine", "ctre_sim", "random", "ctre_seq"):
            continue
        trainer = build_trainer(method, args.seeds[0], args)
        log = []
        strategy = trainer.updater.growth
        original = strategy.choose

        def choose(ctx, n, rng, _orig=original, _log=log, _epoch=lambda: trainer.epoch):
            rows, cols, n_cos = _orig(ctx, n, rng)
            n_in = ctx.W.n_in
            picks = rows * n_in + cols
            pruned = np.sort(ctx.removed_rows.astype(np.int64) * n_in + ctx.removed_cols)
            readd = int(np.count_nonzero(np.isin(picks, pruned)))
            _log.append({"epoch": _epoch(), "layer": ctx.layer_index, "n": int(n),
                         "n_cosine": int(n_cos), "readded": readd,
                         "distinct_rows": int(np.unique(rows).size),
                         "distinct_cols": int(np.unique(cols).size),
                         "top_row_share": float(np.bincount(rows).max() / max(1, rows.size)),
                         "top_col_share": float(np.bincount(cols).max() / max(1, cols.size))})
            return rows, cols, n_cos

        strategy.choose = choose
        X_tr, X_val = fm(data["X_tr"]), fm(data["X_val"])
        at_init = signal_stats(trainer.model, X_tr, data["y_tr"])
        for _ in range(args.epochs):
            rec = trainer.run_epoch(X_tr, data["y_tr"], X_val, data["y_val"])
        per_layer = {}
        for layer in range(4):
            ls = [e for e in log if e["layer"] == layer]
            if ls:
                per_layer[layer] = {k: float(np.mean([e[k] for e in ls]))
                                    for k in ("n", "n_cosine", "readded", "distinct_rows",
                                              "distinct_cols", "top_row_share", "top_col_share")}
        report[method] = {"signal_at_init": at_init,
                          "signal_at_end": signal_stats(trainer.model, X_tr, data["y_tr"]),
                          "final_val": rec["val_accuracy"],
                          "per_layer_mean_over_updates": per_layer,
                          "first_updates": log[:8], "last_updates": log[-4:],
                          "hidden": hidden_stats(trainer.model, X_tr),
                          "layers": degree_stats(trainer.model),
                          "init_bound_sqrt6_over_fan_in": [float(np.sqrt(6 / n)) for n in
                                                           trainer.model.layer_sizes[:-1]]}
    print(json.dumps(report, indent=1))


# --------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("CTRE_SPARSE_DATA_MADELON",
                                                         "../shared/data/madelon"),
                   help="folder with madelon_train/valid .data/.labels")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--zeta", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--patience", type=int, default=40, help="CTRE-seq: epochs without "
                   "validation improvement before switching to random growth")
    p.add_argument("--backend", default="auto")
    p.add_argument("--init-scale", choices=("dense", "sparse"), default="dense",
                   help="initial weights U(+-sqrt(6/n_in)) ('dense', the paper's) or scaled "
                   "to the layer's mean actual fan-in nnz/n_out ('sparse', an ablation)")
    p.add_argument("--grow-scale", choices=("dense", "sparse"), default="dense",
                   help="regrown weights U(+-sqrt(6/n_in)) ('dense', the paper's) or scaled to "
                   "the mean actual fan-in like --init-scale sparse ('sparse', an ablation)")
    p.add_argument("--readd", choices=("reinit", "keep"), default="reinit",
                   help="a connection pruned and regrown in the same update gets a new weight "
                   "('reinit', ctre_sparse) or keeps its weight and momentum ('keep', the "
                   "authors' RigL-based code; an ablation)")
    p.add_argument("--threads", type=int, help="limit OpenMP/BLAS/numba threads (set before "
                   "numpy loads; 1 is much faster on a machine shared with other jobs)")
    p.add_argument("--out", default="docs/results/reproduction_results.jsonl",
                   help="JSON-lines results file (appended; finished runs are skipped)")
    p.add_argument("--table", action="store_true", help="print the tables of --out and exit")
    p.add_argument("--plot", metavar="PNG", help="draw test/validation curves of --out")
    p.add_argument("--from-epochs", type=int, help="with --table/--plot: summarize the first "
                   "--epochs epochs of the runs trained for this many epochs")
    p.add_argument("--diagnose", action="store_true",
                   help="instrumented run of the first seed; prints JSON")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.table or args.plot:
        rows = load_results(args.out, args.from_epochs or args.epochs,
                            args.epochs if args.from_epochs else None)
        if args.table:
            print(table(rows))
            print()
            if args.from_epochs:
                print(f"(end-of-run diagnostics below are those of the {args.from_epochs}-epoch "
                      f"runs, not of epoch {args.epochs})")
            print(diagnostics_table(rows))
        if args.plot:
            plot(rows, args.plot)
        return 0
    if args.diagnose:
        diagnose(args)
        return 0
    sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
