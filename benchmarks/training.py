"""The end-to-end training benchmark: one CTRE epoch, truly sparse, beside PyTorch dense+mask.

Network 784-H-H-H-10 (H = 1000 by default, ``--hidden`` for others),
Erdős–Rényi sparsity ``epsilon = 20``, ReLU, softmax cross-entropy, SGD with
Nesterov momentum, batch 128, 60,000 synthetic samples (seeded Gaussian class
clusters in 784 dimensions, so the loss falls and means something; no
download). An epoch is what :class:`~ctre_sparse.training.Trainer` runs
(batch gathering, forward, loss, backward, SGD step, for every mini-batch)
plus one topology update (prune ``zeta`` of each layer, regrow with exact
cosine growth over the activations of 2,000 training samples).

Figures (per epoch, averaged over ``--epochs``):

``train_seconds``
    Forward + backward + update over all mini-batches (the epoch minus the
    topology update).
``topology_seconds``
    The topology update.
``ns_per_nnz_sample``
    ``train_seconds / (nnz_total * n_samples)`` in nanoseconds, where
    ``nnz_total`` is the number of connections of all layers together.
``speedup_vs_torch``
    The peer's epoch time / our whole epoch (topology included; the peer
    does no topology update, so this ratio is the conservative one);
    ``train_speedup_vs_torch`` compares training time with training time.

Before anything is timed, the first mini-batch's probabilities and weight
gradients of our backend are compared with the ``reference`` backend's, and
the peer's with the same reference (it starts from our initial weights), so
all three train the same network. Usage::

    python benchmarks/bench_training.py --quick
    python benchmarks/bench_training.py --json docs/results/bench_training_cpu.json
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from ctre_sparse.backends import BackendUnavailableError, get_backend, select_backend
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater
from ctre_sparse.training import Trainer
from . import harness
from .kernels import thread_limits
from .machine import code_version, cuda_info, machine_block, usable_cores
from .training_check import (CHECK_RTOL, check_batch, check_ours, checked_error,
                             reference_pass)
from .training_peer import TorchDenseMasked, peer_unavailable_reason
from .training_profile import OpProfiler
from .training_report import (format_record, markdown_results, steady_topology,
                              update_markdown)

logger = logging.getLogger(__name__)

__all__ = ["TrainingBenchConfig", "TARGETS", "CHECK_RTOL", "layer_sizes", "make_data",
           "ns_per_nnz_sample", "run_training_bench", "check_batch", "targets", "format_record",
           "markdown_results", "add_arguments", "config_from_args", "run_from_args", "main"]

N_FEATURES, N_CLASSES, N_HIDDEN_LAYERS = 784, 10, 3
#: The issue's targets, for the full 60,000-sample epoch on the 2-core machine.
TARGETS = {"ns_per_nnz_sample": ("<=", 0.12), "speedup_vs_torch": (">=", 8.0),
           "topology_fraction": ("<=", 0.10)}
#: Seconds of sleep before each timed phase (idle thread pools of the previous one).
PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class TrainingBenchConfig:
    """What to measure. ``peer_batches = 0`` times the peer's full epoch."""

    hidden: tuple = (1000,)
    epsilon: float = 20.0
    batch: int = 128
    samples: int = 60_000
    epochs: int = 1
    growth: str = "ctre_sim"
    zeta: float = 0.3
    cosine_samples: int = 2000
    cosine_approx_dim: int = None
    cosine_approx_oversample: int = 4
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    dtype: str = "float32"
    device: str = "cpu"
    backend: str = "auto"
    threads: int = None
    seed: int = 0
    peer: bool = True
    peer_batches: int = 0
    profile: bool = False
    warmup: bool = True

    @classmethod
    def quick(cls, **kw):
        """6,000 samples: the same network, an epoch ten times shorter."""
        return cls(**{"samples": 6000, **kw})


def layer_sizes(width):
    """``[784, width, width, width, 10]``."""
    return [N_FEATURES] + [int(width)] * N_HIDDEN_LAYERS + [N_CLASSES]


def make_data(n_samples, seed=0, dtype=np.float32, separation=1.0, label_noise=0.1,
              chunk=8192):
    """Seeded synthetic Fashion-MNIST-shaped data: Gaussian clusters, one per class.

    Sample ``j`` is ``separation * mu[c[j]] + noise``, with ``mu`` (10 x 784)
    and the noise standard normal; its label ``y[j]`` is its cluster ``c[j]``,
    except for a ``label_noise`` fraction of samples that get a uniformly
    random label. The loss falls clearly within the first epoch and then
    levels off (about 0.5) instead of going to 0: without the label noise
    the gradients of later epochs become tiny, and their timings drift
    (measured: 1.01 s, then 1.27 s for the same epoch work).

    Returns
    -------
    X : ndarray, shape (784, n_samples)
        Feature-major view (F-ordered) of a sample-major array, the layout in
        which :class:`~ctre_sparse.training.Trainer` gathers a batch fastest
        (whole 784-value sample rows, then one transpose).
    y : int64 ndarray, shape (n_samples,)

    Examples
    --------
    >>> X, y = make_data(50, seed=1)
    >>> X.shape, X.dtype.name, X.flags.f_contiguous, y.shape, int(y.max()) < 10
    ((784, 50), 'float32', True, (50,), True)
    """
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
    rng = np.random.default_rng([int(seed), 7841])
    means = (separation * rng.standard_normal((N_CLASSES, N_FEATURES))).astype(dtype)
    y = rng.integers(0, N_CLASSES, size=int(n_samples), dtype=np.int64)
    Xs = rng.standard_normal((int(n_samples), N_FEATURES), dtype=np.float32).astype(dtype,
                                                                                    copy=False)
    for s in range(0, Xs.shape[0], chunk):
        Xs[s:s + chunk] += means[y[s:s + chunk]]
    flip = np.flatnonzero(rng.random(y.shape[0]) < label_noise)
    y[flip] = rng.integers(0, N_CLASSES, size=flip.shape[0])
    return Xs.T, y


def ns_per_nnz_sample(train_seconds, nnz_total, n_samples):
    """``train_seconds / (nnz_total * n_samples)`` in nanoseconds (None if not measured).

    Examples
    --------
    >>> ns_per_nnz_sample(0.9, 125_000, 60_000)
    0.12
    """
    if train_seconds is None or not nnz_total or not n_samples:
        return None
    return float(train_seconds) / (float(nnz_total) * float(n_samples)) * 1e9


# ------------------------------------------------------------------ building
def _check_device(config):
    if config.device == "cpu":
        return
    if config.device != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {config.device!r}")
    info = cuda_info()
    if not info.get("available"):
        raise RuntimeError(f"--device cuda needs a CUDA GPU and CuPy: {info.get('reason')}")
    if not hasattr(Trainer, "to_device"):
        raise RuntimeError("--device cuda: the training core has no GPU training loop yet "
                           "(Trainer.to_device is missing), so there is no GPU epoch to time")


def to_device(config, trainer, X):
    """Move ``trainer`` (model and optimizer) and ``X`` to ``config.device``.

    Returns
    -------
    X : ndarray or cupy.ndarray
        The data on the device (C-contiguous feature-major on the GPU);
        labels stay NumPy arrays.
    sync : callable or None
        Waits for the device; None on the CPU.
    """
    if config.device == "cpu":
        return X, None
    import cupy

    trainer.to_device("cuda")
    return (cupy.ascontiguousarray(cupy.asarray(X)),
            lambda: cupy.cuda.get_current_stream().synchronize())


def _same_device(Xd, A):
    """``A`` on the device of ``Xd`` (itself on the CPU, a C-contiguous copy on the GPU)."""
    if isinstance(Xd, np.ndarray):
        return A
    import cupy

    return cupy.ascontiguousarray(cupy.asarray(A))


def build_model(config, width, random_state=None):
    """The benchmarked :class:`SparseMLP` (784-width-width-width-10)."""
    rng = config.seed if random_state is None else random_state
    return SparseMLP(layer_sizes(width), "relu", epsilon=config.epsilon, dtype=config.dtype,
                     init="he", backend=config.backend, random_state=rng)


def _optimizer(config):
    return SGD(config.learning_rate, momentum=config.momentum, nesterov=True,
               weight_decay=config.weight_decay)


def build_trainer(config, model):
    """The :class:`Trainer` (with its optimizer and topology updater) of the benchmark."""
    updater = TopologyUpdater(config.zeta, config.growth, cosine_samples=config.cosine_samples,
                              backend=config.backend, cosine_approx_dim=config.cosine_approx_dim,
                              cosine_approx_oversample=config.cosine_approx_oversample)
    return Trainer(model, _optimizer(config), updater, batch_size=config.batch,
                   random_state=config.seed + 1)


def _backend_name(model):
    """The backend the model's ops resolve to (``auto`` resolved)."""
    module = select_backend(model.backend, model.layers[0].W.data)  # CuPy data: "cuda"
    return module.__name__.rsplit(".", 1)[-1].replace("_backend", "")


def warm_up(config):
    """Two epochs of a small network with the same backend and growth (JIT stays off the clock)."""
    small = replace(config, cosine_samples=min(config.cosine_samples, 128))
    X, y = make_data(256, seed=config.seed + 99, dtype=config.dtype)
    model = SparseMLP(layer_sizes(48), "relu", epsilon=4, dtype=config.dtype, init="he",
                      backend=config.backend, random_state=config.seed + 99)
    trainer = build_trainer(small, model)
    X, sync = to_device(config, trainer, X)
    time_epochs(trainer, X, y, 2, sync=sync)


# ------------------------------------------------------------------ measuring
def time_epochs(trainer, X, y, epochs, sync=None):
    """Train ``epochs`` epochs, each followed by its topology update; per-epoch timings.

    Each epoch is :meth:`Trainer.run_epoch` with the updater detached, then
    ``updater.update`` called as the trainer calls it (the epoch's training
    accuracy as the monitor, the trainer's generator), each timed on its own
    with ``sync()`` (device synchronize) before every clock reading. The
    random stream and the result are those of :meth:`Trainer.fit`, which
    runs the same update at the start of the next epoch.

    Returns
    -------
    list of dict
        ``epoch``, ``train_seconds``, ``topology_seconds``, ``seconds``,
        ``train_loss``, ``train_accuracy``, ``n_cosine``, ``n_random``.
    dict
        ``wall_seconds`` and ``cpu_seconds`` (this process, all threads) of
        the whole timed span.
    """
    sync = sync or (lambda: None)
    updater, out = trainer.updater, []
    sync()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        trainer.updater = None  # this loop runs each epoch's update itself, right after it
        for _ in range(int(epochs)):
            t0 = time.perf_counter()
            rec = trainer.run_epoch(X, y)
            sync()
            t1 = time.perf_counter()
            stats = updater.update(trainer.model, X, optimizer=trainer.optimizer,
                                   val_accuracy=rec["train_accuracy"], rng=trainer.rng)
            sync()
            t2 = time.perf_counter()
            out.append({"epoch": rec["epoch"], "train_seconds": t1 - t0,
                        "topology_seconds": t2 - t1, "seconds": t2 - t0,
                        "train_loss": rec["train_loss"], "train_accuracy": rec["train_accuracy"],
                        "n_cosine": int(stats["n_cosine"]), "n_random": int(stats["n_random"])})
    finally:
        trainer.updater = updater
    cpu = {"wall_seconds": time.perf_counter() - wall0, "cpu_seconds": time.process_time() - cpu0}
    return out, cpu


def useful_gflops(model, n_samples, seconds):
    """Useful GFLOP/s of training: ``2 * n`` per connection for spmm and for sddmm, and for
    spmm_t on every layer but the first (no input gradient there)."""
    if not seconds:
        return None
    nnz = [layer.W.nnz for layer in model.layers]
    flops = 2.0 * n_samples * (2 * sum(nnz) + sum(nnz[1:]))
    return flops / seconds / 1e9


def profile_epoch(trainer, X, y):
    """One more epoch (its topology update first) under :class:`OpProfiler`.

    Returns
    -------
    dict
        ``seconds`` (the profiled epoch, timers' overhead included) and
        ``ops``: ``{label: {"seconds", "calls"}}`` of exclusive time.
    """
    profiler = OpProfiler.for_training(trainer)
    with profiler:
        rec = trainer.run_epoch(X, y)
    return {"seconds": rec["seconds"], "ops": profiler.table()}


def _measure_peer(config, model, Xb, yb, ref):
    """Build the peer from the model's initial weights and check it; (peer, info)."""
    info = {"name": "torch dense+mask", "status": "ok", "check_error": None}
    reason = peer_unavailable_reason(config.device) if config.peer else "not requested (--no-peer)"
    if reason is None:
        reason = TorchDenseMasked.too_large(model.layer_sizes, model.dtype)
    if reason:
        info["status"] = f"skipped: {reason}"
        return None, info
    peer = TorchDenseMasked(model, learning_rate=config.learning_rate,
                            momentum=config.momentum, weight_decay=config.weight_decay,
                            device=config.device)
    info["check_error"] = checked_error(peer.check(Xb, yb, ref), model.dtype, "the torch peer")
    return peer, info


def run_network(config, width, X, y):
    """Check, then time our epochs and the peer's epoch for one hidden width; one record."""
    model = build_model(config, width)
    nnz_layers = [layer.W.nnz for layer in model.layers]
    Xb, yb = check_batch(model, X, y, config.batch)
    ref = reference_pass(model, Xb, yb)
    peer, peer_info = _measure_peer(config, model, Xb, yb, ref)
    trainer = build_trainer(config, model)
    Xd, sync = to_device(config, trainer, X)
    check_error = check_ours(model, _same_device(Xd, Xb), yb, ref)
    time.sleep(PAUSE_SECONDS)  # let the peer's spinning OpenMP threads go idle
    epochs, cpu = time_epochs(trainer, Xd, y, config.epochs, sync=sync)
    if peer is not None:
        time.sleep(PAUSE_SECONDS)
        peer_info.update(peer.run_epoch(X, y, config.batch, seed=config.seed + 2,
                                        max_batches=config.peer_batches))
        del peer
    rec = _record(config, width, model, nnz_layers, epochs, peer_info)
    rec["cpu_utilization"] = cpu["cpu_seconds"] / (cpu["wall_seconds"] * config.threads)
    rec.update(check_error=check_error, check_samples=int(yb.shape[0]), initial_loss=ref["loss"])
    if config.profile and config.device == "cpu":
        rec["profile"] = profile_epoch(trainer, Xd, y)
    elif config.profile:
        rec["profile_note"] = "no per-op profile on the GPU (its timers would need a sync per op)"
    return rec


def _mean(values):
    return float(np.mean(values)) if values else None


def _record(config, width, model, nnz_layers, epochs, peer):
    n, nnz = config.samples, sum(nnz_layers)
    train, topo = _mean([e["train_seconds"] for e in epochs]), _mean([e["topology_seconds"]
                                                                     for e in epochs])
    total = train + topo
    peer_s = peer.get("seconds_per_epoch")
    rec = {"benchmark": "training", "network": "-".join(map(str, model.layer_sizes)),
           "layer_sizes": list(model.layer_sizes), "hidden": int(width),
           "epsilon": config.epsilon, "batch": config.batch, "samples": n,
           "epochs": config.epochs, "growth": config.growth, "zeta": config.zeta,
           "cosine_samples": min(config.cosine_samples, n),
           "cosine_approx_dim": config.cosine_approx_dim,
           "cosine_approx_oversample": config.cosine_approx_oversample, "activation": "relu",
           "learning_rate": config.learning_rate, "dtype": config.dtype,
           "backend": _backend_name(model), "device": config.device, "threads": config.threads,
           "nnz_total": nnz, "nnz_layers": nnz_layers, "seconds_per_epoch": total,
           "train_seconds": train, "topology_seconds": topo,
           "topology_fraction": topo / total if total else None,
           **steady_topology(epochs),
           "ns_per_nnz_sample": ns_per_nnz_sample(train, nnz, n),
           "train_gflops": useful_gflops(model, n, train),
           "train_loss": epochs[-1]["train_loss"], "train_accuracy": epochs[-1]["train_accuracy"],
           "per_epoch": epochs, "peer": peer, "peer_seconds_per_epoch": peer_s,
           "speedup_vs_torch": peer_s / total if peer_s and total else None,
           "train_speedup_vs_torch": peer_s / train if peer_s and train else None,
           "seed": config.seed, "status": "ok",
           "config": {k: list(v) if isinstance(v, tuple) else v
                      for k, v in asdict(config).items()}}
    rec["targets"] = targets(rec)
    return rec


def targets(rec):
    """``{name: {"value", "target", "met"}}`` for :data:`TARGETS` (``met`` None: not measured)."""
    out = {}
    for name, (cmp, bound) in TARGETS.items():
        value = rec.get(name)
        met = None if value is None else (value <= bound if cmp == "<=" else value >= bound)
        out[name] = {"value": value, "target": f"{cmp} {bound:g}", "met": met}
    return out


def run_training_bench(config, on_record=None):
    """Run the benchmark for every hidden width of ``config``; one record per width.

    Parameters
    ----------
    config : TrainingBenchConfig
    on_record : callable, optional
        Called with each record as soon as it is complete.

    Returns
    -------
    list of dict
    """
    _check_config(config)
    _check_device(config)
    if config.backend != "auto":
        get_backend(config.backend)
    threads = config.threads or usable_cores()
    config = replace(config, threads=threads)
    machine = machine_block(threads=threads, device=config.device)
    machine["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine["code"] = code_version()
    records = []
    with thread_limits(threads):
        if config.warmup:
            warm_up(config)
        X, y = make_data(config.samples, seed=config.seed, dtype=config.dtype)
        for width in config.hidden:
            rec = run_network(config, width, X, y)
            rec["machine"] = machine
            records.append(rec)
            if on_record:
                on_record(rec)
    machine["loadavg_end"] = machine_block()["loadavg"]
    return records


def _check_config(config):
    positive = {"batch": config.batch, "samples": config.samples, "epochs": config.epochs,
                "cosine_samples": config.cosine_samples}
    bad = {k: v for k, v in positive.items() if int(v) < 1}
    if bad:
        raise ValueError(f"expected positive integers, got {bad}")
    if not config.hidden or min(int(h) for h in config.hidden) < 1:
        raise ValueError(f"hidden must list positive widths, got {config.hidden!r}")
    if int(config.peer_batches) < 0:
        raise ValueError(f"peer_batches must be >= 0 (0: the full epoch), got "
                         f"{config.peer_batches!r}")


# ------------------------------------------------------------------ command line
def _widths(text):
    try:
        widths = tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError as exc:
        raise ValueError(f"--hidden expects comma-separated integers, got {text!r}") from exc
    return widths


def add_arguments(parser):
    """Add the training benchmark's options to an argparse parser."""
    parser.add_argument("--quick", action="store_true",
                        help="6,000 samples instead of 60,000 (same network; finishes fast)")
    parser.add_argument("--json", metavar="PATH", help="write the records to PATH (a JSON list)")
    parser.add_argument("--samples", type=int, default=None,
                        help="training samples (default 60000, 6000 with --quick)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs timed (each with its "
                        "topology update; figures are per-epoch means)")
    parser.add_argument("--hidden", type=str, default="1000",
                        help="hidden width(s) of the 3 hidden layers, comma list: one network "
                             "per width (e.g. 1000,16384)")
    parser.add_argument("--growth", default="ctre_sim",
                        choices=("ctre_sim", "cosine", "ctre_seq", "random", "static"),
                        help="topology growth (ctre_sim and cosine run exact cosine top-k "
                             "unless --cosine-approx-dim is given)")
    parser.add_argument("--epsilon", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--zeta", type=float, default=0.3, help="fraction pruned per update")
    parser.add_argument("--cosine-samples", type=int, default=2000,
                        help="samples whose activations feed cosine growth")
    parser.add_argument("--cosine-approx-dim", type=int, default=None, metavar="N",
                        help="approximate cosine growth (sketch dimension N) in layers of at "
                             "least 4096 x 4096 positions (default: off, exact)")
    parser.add_argument("--cosine-approx-oversample", type=int, default=4, metavar="M",
                        help="with --cosine-approx-dim: candidates re-scored per grown "
                             "connection (default: 4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--backend", default="auto", help="our CPU backend (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for our kernels, torch and BLAS (default: usable cores)")
    parser.add_argument("--no-peer", action="store_true", help="skip the torch peer")
    parser.add_argument("--peer-batches", type=int, default=0,
                        help="time only this many peer batches and extrapolate to the epoch "
                             "(0, the default: time the full epoch)")
    parser.add_argument("--profile", action="store_true",
                        help="one more epoch with timers around each op; per-op breakdown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-doc", metavar="MD",
                        help="write the results section of MD (e.g. docs/benchmarks.md) between "
                             "its training-results markers")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: report (and --update-doc) the records in PATH")
    return parser


def config_from_args(args):
    """Build a :class:`TrainingBenchConfig` from parsed arguments."""
    samples = args.samples if args.samples is not None else (6000 if args.quick else 60_000)
    return TrainingBenchConfig(
        hidden=_widths(args.hidden), epsilon=args.epsilon, batch=args.batch, samples=samples,
        epochs=args.epochs, growth=args.growth, zeta=args.zeta,
        cosine_samples=args.cosine_samples, cosine_approx_dim=args.cosine_approx_dim,
        cosine_approx_oversample=args.cosine_approx_oversample, device=args.device,
        backend=args.backend,
        threads=args.threads, seed=args.seed, peer=not args.no_peer,
        peer_batches=args.peer_batches, profile=args.profile)


def run_from_args(args, stream=None):
    """Run the benchmark for parsed arguments, printing the results; returns the exit code."""
    stream = stream or sys.stdout
    if args.from_json:
        records = harness.read_json(args.from_json)
        for rec in records:
            print(format_record(rec), file=stream)
        _update_doc(args, records, stream)
        return 0
    config = config_from_args(args)
    print(f"training benchmark: hidden {list(config.hidden)}, {config.samples:,} samples, "
          f"{config.epochs} epoch(s), device {config.device}", file=stream)
    if config.samples != 60_000:
        print("note: the targets are for the full 60,000-sample epoch; with fewer samples the "
              "topology update (a fixed cost) weighs more", file=stream)
    load = machine_block()["loadavg"]
    if load and load[0] > 0.5:
        print(f"WARNING: load average {load[0]:.2f} before starting: other processes share "
              "the CPU and the timings will be noisy", file=stream)
    stream.flush()
    t0 = time.perf_counter()
    try:
        records = run_training_bench(
            config, on_record=lambda r: print(format_record(r), file=stream, flush=True))
    except harness.ResultMismatchError as exc:
        print(f"result check FAILED, nothing timed: {exc}", file=stream)
        return 1
    except BackendUnavailableError as exc:
        raise RuntimeError(str(exc)) from exc
    print(f"done in {time.perf_counter() - t0:.1f} s", file=stream)
    if args.json:
        harness.write_json(records, args.json)
        print(f"wrote {len(records)} records to {args.json}", file=stream)
    _update_doc(args, records, stream)
    return 0


def _update_doc(args, records, stream):
    if args.update_doc:
        gpu = any(r.get("device") == "cuda" for r in records)
        update_markdown(args.update_doc, markdown_results(records), gpu=gpu)
        print(f"updated the {'GPU ' if gpu else ''}training results in {args.update_doc}",
              file=stream)


def main(argv=None):
    """Entry point of ``benchmarks/bench_training.py``; returns the exit code (1 with a one-line error)."""
    return harness.command_main(__doc__, add_arguments, run_from_args, argv)
