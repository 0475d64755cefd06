"""One CTRE epoch at widths 1,000 to 1,000,000: time, cost per connection, topology share, memory.

The demonstration of issue 13. Synthetic data (``--samples`` 10,000 x
``--features`` 1,000, 10 classes: seeded Gaussian clusters with 10% label
noise, feature-major float32), or a real data set (``--data X.npz`` with ``X``
and ``y``, standardized), into ``[features, W, W, W, classes]``, epsilon 10,
ReLU, CTRE-sim growth (zeta 0.3) with ``cosine_mode="auto"``, SGD with Nesterov
momentum, batch ``--batch``. Per width, in a fresh child process (so that its
peak RSS is its own):

1. build the model (timed, RSS after);
2. one training epoch (every mini-batch: forward, backward, SGD step), with
   progress lines on stderr;
3. one topology update (activation pass, then per layer prune, cosine/random
   regrowth, insert, momentum remap), timed per step.

"Seconds per epoch" is 2 + 3: the work of every epoch after the first. ns per
(nonzero x sample) = training seconds / (connections x samples). The training
epoch runs under the training benchmark's per-op timers (exclusive wall time
per op, about a microsecond per call; ``train_profile`` in the JSON). Peak RSS is
the child's VmHWM; the dense-equivalent memory is what the float32 weights
alone would take dense (``sum n_in * n_out * 4`` bytes), beside it.

Example::

    PYTHONPATH=. python benchmarks/bench_scale.py --widths 1000,16384 \\
        --json docs/results/scale/bench_scale.json --plot docs/figures/scale_ns_per_nnz.png
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

logger = logging.getLogger("bench_scale")

N_CLASSES = 10
EPSILON = 10.0
ZETA = 0.3


def make_data(n_samples, n_features, seed=0, label_noise=0.1):
    """Seeded Gaussian class clusters: float32 ``X`` of shape (n_features, n), F order; ``y``."""
    rng = np.random.default_rng([int(seed), 13])
    means = rng.standard_normal((N_CLASSES, n_features)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, size=n_samples, dtype=np.int64)
    X = rng.standard_normal((n_features, n_samples), dtype=np.float32)
    X += means[y].T
    flip = np.flatnonzero(rng.random(n_samples) < label_noise)
    y[flip] = rng.integers(0, N_CLASSES, size=flip.shape[0])
    # F order (each sample's features contiguous): the Trainer gathers a batch as whole rows
    # (width 1,000 on one thread: the batch gather took 0.54 s of a 0.9 s epoch in C order)
    return np.asfortranarray(X), y


def load_real(path, seed=0):
    """A ``.npz`` data set's training part, standardized, feature-major; ``(X, y, n_classes)``."""
    from ctre_sparse.datasets import load_npz, standardize

    ds = load_npz(path, test_size=0.2, random_state=seed)
    Xtr, _, _, _ = standardize(ds.X_train, ds.X_test)
    y = np.asarray(ds.y_train, dtype=np.int64)
    return np.asarray(Xtr, dtype=np.float32).T, y, int(y.max()) + 1  # F order, as above


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return None


def _progress_sgd(n_batches, t0):
    """An SGD whose ``step`` logs progress every ~5% of the epoch's batches."""
    from ctre_sparse.nn import SGD

    class ProgressSGD(SGD):
        done = 0

        def step(self, model):
            super().step(model)
            self.done += 1
            if self.done % max(1, n_batches // 20) == 0 or self.done == n_batches:
                el = time.perf_counter() - t0
                logger.info("  batch %d/%d, %.0f s, about %.0f s left", self.done, n_batches, el,
                            el / self.done * (n_batches - self.done))
    return ProgressSGD


class _StepTimer:
    """Wall time per labelled call of the topology update (wrapped functions, restored after)."""

    def __init__(self):
        self.seconds, self._undo = {}, []

    def wrap(self, owner, name, label):
        fn = getattr(owner, name)

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0
        setattr(owner, name, timed)
        self._undo.append((owner, name, fn))

    def restore(self):
        for owner, name, fn in reversed(self._undo):
            setattr(owner, name, fn)


def _timed_update(updater, model, X, optimizer, seed):
    """Run one topology update with per-step timers; ``(seconds, stats, steps)``."""
    from ctre_sparse import cosine_index, ops

    timer = _StepTimer()
    timer.wrap(type(updater), "_sample_activations", "activation pass")
    timer.wrap(ops, "prune_magnitude", "prune")
    timer.wrap(ops, "insert", "insert")
    timer.wrap(ops, "topk_cosine", "cosine top-k (exact)")
    timer.wrap(cosine_index, "topk_cosine_index", "cosine top-k (index)")
    timer.wrap(type(optimizer), "remap", "momentum remap")
    timer.wrap(type(updater.growth), "choose", "growth (all)")
    try:
        t0 = time.perf_counter()
        stats = updater.update(model, X, optimizer=optimizer, rng=np.random.default_rng(seed))
        seconds = time.perf_counter() - t0
    finally:
        timer.restore()
    steps = dict(timer.seconds)
    inner = sum(v for k, v in steps.items() if k.startswith("cosine top-k"))
    steps["growth (other: random picks, CTRE-sim)"] = steps.pop("growth (all)", 0.0) - inner
    return seconds, stats, steps


def run_width(width, args):
    """Everything measured for one width (runs in the child process)."""
    from ctre_sparse.nn import SparseMLP
    from ctre_sparse.topology import TopologyUpdater
    from ctre_sparse.training import Trainer

    rss0 = _status_kib("VmRSS")
    if args.data:
        X, y, n_classes = load_real(args.data, args.seed)
    else:
        X, y = make_data(args.samples, args.features, args.seed)
        n_classes = N_CLASSES
    sizes = [X.shape[0]] + [width] * 3 + [n_classes]
    t0 = time.perf_counter()
    model = SparseMLP(sizes, "relu", epsilon=EPSILON, init="he", random_state=args.seed)
    build = time.perf_counter() - t0
    nnz = model.n_connections
    logger.info("width %d: %s connections, model built in %.1f s", width, f"{nnz:,}", build)
    n_batches = -(-X.shape[1] // args.batch)
    t_train = time.perf_counter()
    opt = _progress_sgd(n_batches, t_train)(args.lr, momentum=0.9, nesterov=True)
    updater = TopologyUpdater(ZETA, "ctre_sim", cosine_samples=args.cosine_samples)
    trainer = Trainer(model, opt, updater, batch_size=args.batch, random_state=args.seed)
    cpu0 = time.process_time()
    profiler = _profiler(trainer)
    with profiler:
        record = trainer.run_epoch(X, y)
    train = time.perf_counter() - t_train
    cpu_train = time.process_time() - cpu0
    logger.info("width %d: training epoch %.1f s (loss %.4f); topology update ...", width, train,
                record["train_loss"])
    topo, stats, steps = _timed_update(updater, model, X, opt, args.seed + 1)
    logger.info("width %d: topology update %.1f s (%s)", width, topo, stats["cosine_modes"])
    dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * 4
    return {"width": width, "threads": _threads(), "layer_sizes": sizes, "connections": nnz,
            "nnz_layers": [layer.W.nnz for layer in model.layers],
            "samples": int(X.shape[1]), "batch": args.batch, "epsilon": EPSILON, "zeta": ZETA,
            "growth": "ctre_sim", "learning_rate": args.lr,
            "build_seconds": build, "train_seconds": train, "topology_seconds": topo,
            "epoch_seconds": train + topo, "topology_fraction": topo / (train + topo),
            "ns_per_nnz_sample": train / (nnz * X.shape[1]) * 1e9,
            "cpu_utilization_train": cpu_train / train / max(1, _threads()),
            "train_loss": record["train_loss"], "train_accuracy": record["train_accuracy"],
            "topology": {k: stats[k] for k in ("n_pruned", "n_cosine", "n_random",
                                               "cosine_modes")},
            "cosine_samples_used": _samples_used(updater, model),
            "topology_steps": steps, "train_profile": profiler.table(),
            "peak_rss_bytes": _status_kib("VmHWM") * 1024,
            "start_rss_bytes": rss0 * 1024, "dense_weight_bytes": dense,
            "load_1min_end": os.getloadavg()[0]}


def _profiler(trainer):
    """Exclusive wall time per op of the training epoch (the training benchmark's profiler)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.append(root)  # the repository root: the `benchmarks` package
    from benchmarks.training_profile import OpProfiler

    return OpProfiler.for_training(trainer)


def _samples_used(updater, model):
    return int(min(updater._samples(model), updater.cosine_samples))


def _threads():
    try:
        import numba
        return int(numba.get_num_threads())
    except Exception:  # pragma: no cover
        return os.cpu_count() or 1


def _set_threads(n):
    """Threads of every pool the epoch uses: numba, the native kernels' OpenMP team, BLAS."""
    import numba
    from threadpoolctl import threadpool_limits

    from ctre_sparse.backends import native

    numba.set_num_threads(n)
    if native.unavailable_reason() is None:
        native.set_num_threads(n)
    return threadpool_limits(n)


def child(args):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.threads:
        _set_threads(args.threads)
    rec = run_width(args.child, args)
    with open(args.out, "w") as f:
        json.dump(rec, f)


def parent(args):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    records = []
    for width in args.widths:
        load = os.getloadavg()
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            path = tmp.name
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(width), "--out", path]
        cmd += _passthrough(args)
        logger.info("width %d: child process (load average %s)", width, load)
        rc = subprocess.call(cmd)
        if rc != 0:
            logger.error("width %d: the child failed (exit %d)", width, rc)
            records.append({"width": width, "status": f"failed: exit {rc}",
                            "load_1min_start": load[0]})
            continue
        with open(path) as f:
            rec = json.load(f)
        os.unlink(path)
        rec.update(status="ok", load_start=list(load), machine=_machine())
        records.append(rec)
        print(format_row(rec), flush=True)
        if args.json:
            _save(args.json, rec)
    if args.plot:
        plot(records if not args.json else _load(args.json), args.plot)
    return records


def _passthrough(args):
    out = ["--samples", str(args.samples), "--features", str(args.features), "--batch",
           str(args.batch), "--lr", str(args.lr), "--seed", str(args.seed),
           "--cosine-samples", str(args.cosine_samples), "--threads", str(args.threads)]
    return out + (["--data", args.data] if args.data else [])


def _machine():
    import platform

    import ctre_sparse
    return {"cpu_count": os.cpu_count(), "threads": _threads(), "python": platform.python_version(),
            "numpy": np.__version__, "ctre_sparse": ctre_sparse.__version__,
            "platform": platform.platform(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _load(path):
    return json.load(open(path)) if os.path.exists(path) else []


def _save(path, rec):
    """Add ``rec`` to the JSON list at ``path``, replacing a record of the same width and data."""
    key = ("width", "samples", "threads")
    old = [r for r in _load(path) if tuple(r.get(k) for k in key) != tuple(rec[k] for k in key)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(sorted(old + [rec], key=lambda r: (r["width"], r.get("threads") or 0)), f,
              indent=1)


def format_row(rec):
    gib = 2.0 ** 30
    return (f"width {rec['width']:>9,}  connections {rec['connections']:>12,}  "
            f"epoch {rec['epoch_seconds']:8.1f} s  ns/(nnz x sample) "
            f"{rec['ns_per_nnz_sample']:.3f}  topology {100 * rec['topology_fraction']:5.1f}%  "
            f"peak RSS {rec['peak_rss_bytes'] / gib:6.2f} GiB  dense weights "
            f"{rec['dense_weight_bytes'] / gib:10.1f} GiB")


def markdown_table(records):
    """The docs/benchmarks.md table of the records."""
    lines = ["| width | threads | connections | s / epoch | training s | topology s (share) | "
             "ns / (nnz x sample) | CPU use | peak RSS | dense float32 weights | load (start) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in records:
        if r.get("status") != "ok":
            lines.append(f"| {r['width']:,} | | {r.get('status')} | | | | | | | | |")
            continue
        lines.append(
            f"| {r['width']:,} | {r.get('threads', '')} | {r['connections']:,} | "
            f"{r['epoch_seconds']:.1f} | {r['train_seconds']:.1f} | "
            f"{r['topology_seconds']:.1f} ({100 * r['topology_fraction']:.1f}%) | "
            f"{r['ns_per_nnz_sample']:.3f} | {100 * r['cpu_utilization_train']:.0f}% | "
            f"{_size(r['peak_rss_bytes'])} | {_size(r['dense_weight_bytes'])} | "
            f"{r['load_start'][0]:.1f} |")
    return "\n".join(lines)


def _size(b):
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def plot(records, path):
    """ns per (nonzero x sample) against width (log axis), one point per measured width."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for threads in sorted({r.get("threads") or 0 for r in ok}):
        mine = sorted((r for r in ok if (r.get("threads") or 0) == threads),
                      key=lambda r: r["width"])
        ax.plot([r["width"] for r in mine], [r["ns_per_nnz_sample"] for r in mine], "o-",
                label=f"{threads} thread(s)")
        for r in mine:
            ax.annotate(f"{r['ns_per_nnz_sample']:.2f}", (r["width"], r["ns_per_nnz_sample"]),
                        textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("hidden width (3 hidden layers)")
    ax.set_ylabel("training ns per (nonzero x sample)")
    ax.set_title(f"one CTRE epoch, batch {ok[0]['batch'] if ok else '?'}, epsilon 10")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ints(text):
    return [int(x) for x in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=_ints, default=[1000, 16384, 100_000, 1_000_000])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--features", type=int, default=1000)
    p.add_argument("--data", help="a .npz with X and y instead of the synthetic data")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--cosine-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="threads of numba, the native kernels and BLAS (0: their defaults)")
    p.add_argument("--json", help="add the records to this JSON list (same width replaced)")
    p.add_argument("--plot", help="write the figure of ns per (nonzero x sample) here")
    p.add_argument("--table", action="store_true", help="print the markdown table of --json")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.table:
        print(markdown_table(_load(args.json)))
        return None
    return parent(args)


if __name__ == "__main__":
    main()
