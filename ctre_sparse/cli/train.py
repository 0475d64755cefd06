"""``ctre-sparse train``: train a CTRE/SET sparse MLP on a data set, write results.

With no arguments it trains on the embedded scikit-learn digits (no
download) with a network small enough to finish well within a minute on two
cores. Output folder (``--out``): ``history.json`` (per-epoch records and a
summary), ``model.npz`` (:meth:`CTREClassifier.save` format),
``learning_curves.png``, ``input_connectivity.png`` and ``checkpoint.npz``
(rewritten every ``--checkpoint-every`` epochs; ``--resume`` continues from it).

Started by an MPI launcher (``mpiexec -n P ctre-sparse train ...``), the P
processes train one model together (``--distributed``, default ``auto``;
:mod:`ctre_sparse.distributed`); rank 0 alone prints and writes the outputs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

__all__ = ["register", "run", "ProgressBar", "DEFAULTS", "OUTPUT_FILES"]

#: What a run writes into its ``--out`` folder.
OUTPUT_FILES = ("history.json", "model.npz", "checkpoint.npz", "learning_curves.png",
                "input_connectivity.png")

logger = logging.getLogger(__name__)

#: Defaults of the command (measured on 2 shared cores: ~5-15 s, test accuracy 0.97-0.98).
DEFAULTS = dict(dataset="digits", growth="ctre_seq", epsilon=10.0, zeta=0.2, epochs=40,
                hidden="256,256", learning_rate=None, weight_decay=None, dropout=None,
                grad_clip=None, prune=None, batch_size=100, activation="relu", seed=0,
                backend="auto", device="cpu", checkpoint_every=10, patience=40,
                cosine_samples=None, cosine_approx_dim=None, cosine_approx_oversample=4,
                cosine_mode="auto", preset="default")


class ProgressBar:
    """One plain-text progress line per epoch (redrawn in place on a terminal).

    Parameters
    ----------
    total : int
        Number of epochs.
    stream : file, default sys.stderr
    width : int, default 24
        Characters of the bar.
    """

    def __init__(self, total, stream=None, width=24):
        self.total = int(total)
        self.stream = stream if stream is not None else sys.stderr
        self.width = int(width)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_len = 0

    def format(self, record):
        """The progress line of one epoch record."""
        epoch = int(record["epoch"])
        filled = int(round(self.width * min(epoch, self.total) / max(self.total, 1)))
        bar = "#" * filled + "." * (self.width - filled)
        val = record.get("val_accuracy")
        digits = len(str(self.total))
        return (f"epoch {epoch:>{digits}}/{self.total} [{bar}] "
                f"loss {record['train_loss']:.4f}  train acc {record['train_accuracy']:.4f}"
                + ("" if val is None else f"  val acc {val:.4f}")
                + f"  {record['seconds']:.2f}s")

    def __call__(self, estimator, record):
        line = self.format(record)
        if self.tty:
            pad = " " * max(0, self._last_len - len(line))
            end = "\n" if int(record["epoch"]) >= self.total else ""
            self.stream.write("\r" + line + pad + end)
        else:
            self.stream.write(line + "\n")
        self._last_len = len(line)
        self.stream.flush()
        return False

    def close(self):
        """End an unfinished in-place line (training stopped early)."""
        if self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()


def _hidden(text):
    try:
        sizes = tuple(int(s) for s in str(text).replace(" ", ",").split(",") if s)
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated ints like 256,256, got {text!r}") \
            from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--hidden must be positive ints like 256,256, got {text!r}")
    return sizes


def register(subparsers):
    """Add the ``train`` subcommand."""
    from .._params import PRUNES

    d = DEFAULTS
    p = subparsers.add_parser(
        "train", help="train a sparse MLP with CTRE/SET and write history, model and figures",
        description="Train a CTRE/SET sparse MLP. With no arguments: the embedded digits data, "
                    "well within a minute on two cores. Writes history.json, model.npz, "
                    "learning_curves.png, input_connectivity.png and checkpoint.npz to --out.")
    p.add_argument("--dataset", default=d["dataset"], metavar="SPEC",
                   help="digits | madelon | openml:NAME | PATH (MADELON folder, .mat, .npz, "
                        ".csv) (default: %(default)s)")
    p.add_argument("--growth", default=d["growth"],
                   choices=["ctre_sim", "ctre_seq", "cosine", "rigl", "random", "set", "static"],
                   help="topology growth (default: %(default)s)")
    p.add_argument("--epsilon", type=float, default=d["epsilon"],
                   help="Erdos-Renyi sparsity level (default: %(default)s)")
    p.add_argument("--density", type=float, default=None,
                   help="connection density per layer, instead of --epsilon")
    p.add_argument("--zeta", type=float, default=d["zeta"],
                   help="fraction pruned and regrown per epoch (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="(default: %(default)s)")
    p.add_argument("--hidden", default=d["hidden"], metavar="N,N,...",
                   help="hidden layer sizes (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d["learning_rate"], dest="learning_rate",
                   help="peak learning rate (default: the preset's; 'default' follows the "
                        "network's fan-in, 'paper' 0.01)")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                   help="L2 penalty on the existing connections (default: the preset's; "
                        "'default' 1e-3, 'paper' 1e-4)")
    p.add_argument("--dropout", type=float, default=d["dropout"],
                   help="dropout on the hidden activations while training (default: the "
                        "preset's; 'default' 0.05, 'paper' 0)")
    p.add_argument("--grad-clip", type=float, default=d["grad_clip"],
                   help="scale down a step whose gradient norm exceeds this many times the "
                        "median of the last 200 steps; 0: no clipping (default: the preset's; "
                        "'default' 5, 'paper' 0)")
    p.add_argument("--prune", default=d["prune"], choices=PRUNES,
                   help="which connections a topology update removes: the smallest |w|, or "
                        "the smallest |w| times the input's spread, their mean moved into the "
                        "bias (default: the preset's; 'default' activity, 'paper' magnitude)")
    p.add_argument("--preset", default=d["preset"], choices=["default", "paper"],
                   help="initialisation, regrown weights, learning-rate schedule, L2, "
                        "dropout, clipping and pruning rule: 'paper' is the CTRE authors' regime "
                        "(docs/accuracy.md) "
                        "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help="(default: %(default)s)")
    p.add_argument("--activation", default=d["activation"],
                   choices=["relu", "alternated_left_relu", "leaky_relu", "tanh", "sigmoid"],
                   help="hidden activation (default: %(default)s)")
    p.add_argument("--patience", type=int, default=d["patience"],
                   help="epochs without validation improvement before ctre_seq switches to "
                        "random growth (default: %(default)s)")
    p.add_argument("--cosine-samples", type=int, default=d["cosine_samples"],
                   help="training samples feeding the cosine similarity (default: all)")
    p.add_argument("--cosine-approx-dim", type=int, default=d["cosine_approx_dim"], metavar="N",
                   help="approximate cosine growth (sketch dimension N) in layers of at least "
                        "4096 x 4096 positions; smaller layers stay exact; see docs/cosine_sketch.md "
                        "(default: off, exact everywhere)")
    p.add_argument("--cosine-approx-oversample", type=int,
                   default=d["cosine_approx_oversample"], metavar="M",
                   help="sketched candidates re-scored exactly per grown connection, with "
                        "--cosine-approx-dim (default: %(default)s)")
    p.add_argument("--cosine-mode", default=d["cosine_mode"],
                   choices=["auto", "exact", "sketch", "index"],
                   help="how cosine growth finds its picks per layer: exact scan, sketch, "
                        "nearest-neighbour index, or auto (exact where cheap, index on wide "
                        "layers; docs/cosine_index.md) (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"], help="(default: %(default)s)")
    p.add_argument("--backend", default=d["backend"],
                   help="kernel backend: auto, native, numba, reference (default: %(default)s)")
    p.add_argument("--device", default=d["device"], choices=["cpu", "cuda"],
                   help="where training runs: cpu, or cuda (a GPU through CuPy; see "
                        "`ctre-sparse info`) (default: %(default)s)")
    p.add_argument("--distributed", default="auto", choices=["auto", "mpi", "none"],
                   help="data-parallel training over MPI: 'auto' when started by an MPI "
                        "launcher with several processes (mpiexec -n P ctre-sparse train), "
                        "'none' trains P independent copies (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: runs/<dataset>-<growth>-seed<seed>)")
    p.add_argument("--checkpoint-every", type=int, default=d["checkpoint_every"],
                   help="epochs between checkpoints in --out (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.npz of an interrupted run")
    p.add_argument("--no-standardize", action="store_true",
                   help="use the features as they are (default: each feature scaled to zero "
                        "mean and unit variance with training statistics)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _estimator(args, out):
    from ..estimator import CTREClassifier

    return CTREClassifier(
        hidden_layer_sizes=_hidden(args.hidden), epsilon=args.epsilon, density=args.density,
        zeta=args.zeta, growth=args.growth, activation=args.activation,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, dropout=args.dropout,
        grad_clip=args.grad_clip, prune=args.prune, batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience, cosine_samples=args.cosine_samples,
        cosine_approx_dim=args.cosine_approx_dim,
        cosine_approx_oversample=args.cosine_approx_oversample, cosine_mode=args.cosine_mode,
        standardize=not args.no_standardize, random_state=args.seed,
        backend=args.backend, device=args.device, distributed=_distributed(args),
        checkpoint_dir=out, checkpoint_every=max(1, args.checkpoint_every), preset=args.preset)


def _distributed(args):
    """``"mpi"`` or None, from ``--distributed`` and the launcher's environment."""
    from ..distributed import mpi_size_from_env

    if args.distributed == "auto":
        return "mpi" if (mpi_size_from_env() or 1) > 1 else None
    return None if args.distributed == "none" else "mpi"


def _ranks(args):
    """``(rank, size, where)`` of this process; ``(0, 1, "")`` without MPI."""
    if _distributed(args) is None:
        return 0, 1, ""
    from ..distributed import import_mpi

    world = import_mpi().COMM_WORLD
    peers = world.allgather((socket.gethostname(), os.getpid()))
    where = ", ".join(f"rank {r}: pid {pid} on {host}" for r, (host, pid) in enumerate(peers))
    return world.Get_rank(), world.Get_size(), where


def _summary(clf, ds, seconds, test_accuracy):
    sizes = [ds.n_features] + list(clf.hidden_layer_sizes) + [len(clf.classes_)]
    dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    conns = sum(clf.n_connections_)
    vals = [r["val_accuracy"] for r in clf.history_ if r.get("val_accuracy") is not None]
    return {"dataset": ds.name, "n_train": int(ds.X_train.shape[0]),
            "n_test": int(ds.X_test.shape[0]), "n_features": ds.n_features,
            "n_classes": int(len(clf.classes_)), "layer_sizes": sizes,
            "growth": clf.growth, "epochs": int(clf.n_iter_), "seconds": seconds,
            "ranks": int(clf.history_[-1].get("ranks", 1)) if clf.history_ else 1,
            "topology_seconds": sum(r.get("topology_seconds", 0.0) for r in clf.history_),
            "test_accuracy": test_accuracy, "best_val_accuracy": max(vals) if vals else None,
            "n_connections": conns, "n_connections_per_layer": clf.n_connections_,
            "dense_connections": dense, "density": conns / dense}


def _write_outputs(clf, ds, out, summary):
    from ..plots import plot_input_connectivity, plot_learning_curves
    from .._params import params_json

    doc = dict(summary, params=params_json(clf), history=clf.history_)
    (out / "history.json").write_text(json.dumps(doc, indent=1) + "\n")
    clf.save(out / "model.npz")
    title = f"{ds.name}, {clf.growth}"
    plot_learning_curves(clf.history_, out / "learning_curves.png", title=title)
    plot_input_connectivity(clf.feature_importances_, out / "input_connectivity.png",
                            image_shape=ds.image_shape, title=f"input connectivity ({title})")


def _output_folder(args):
    """The ``--out`` folder (created), or a ValueError saying why it cannot be used."""
    spec = str(args.dataset)
    name = spec.split(":", 1)[1] if spec.startswith("openml:") else Path(spec).stem or spec
    out = Path(args.out) if args.out else Path("runs") / f"{name}-{args.growth}-seed{args.seed}"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") \
            from None
    return out


def _resume(args, out, report=True):
    """``fit``'s ``resume`` argument; says so (when ``report``) if --resume finds no checkpoint."""
    from ..estimator import CHECKPOINT_NAME

    if not args.resume:
        return False
    if not (out / CHECKPOINT_NAME).exists():
        if report:
            sys.stderr.write(f"ctre-sparse: --resume: no checkpoint in {out}/ "
                             f"({CHECKPOINT_NAME}); training from scratch\n")
        return False
    return True


def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def run(args):
    """Execute ``ctre-sparse train`` with parsed ``args``; return the exit code."""
    from ..datasets import load_dataset

    clf = _estimator(args, None).validate_params()   # parameter errors before any data loads
    out = _output_folder(args)
    clf.set_params(checkpoint_dir=out)
    ds = load_dataset(args.dataset)
    rank, size, where = _ranks(args)
    resume = _resume(args, out, report=rank == 0)
    if rank == 0:
        sys.stderr.write(f"training on {ds.name}: {ds.X_train.shape[0]} train / "
                         f"{ds.X_test.shape[0]} test samples, "
                         f"{_plural(ds.n_features, 'feature')}, "
                         f"{_plural(len(ds.classes), 'class')}; hidden {args.hidden}, growth "
                         f"{args.growth}" + (f"; {size} MPI ranks ({where})" if size > 1 else "")
                         + "\n")
    bar = ProgressBar(args.epochs)
    t0 = time.perf_counter()
    try:
        clf.fit(ds.X_train, ds.y_train, resume=resume,
                callbacks=() if args.quiet or rank else [bar])
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if rank:
        return 0    # rank 0 reports and writes the outputs
    summary = _summary(clf, ds, seconds, float(clf.score(ds.X_test, ds.y_test)))
    _write_outputs(clf, ds, out, summary)
    _print_summary(summary, out)
    return 0


def _print_summary(s, out):
    print(f"test accuracy {s['test_accuracy']:.4f}"
          + ("" if s["best_val_accuracy"] is None
             else f" (best validation {s['best_val_accuracy']:.4f})"))
    print(f"time {s['seconds']:.1f} s for {s['epochs']} epochs "
          f"(topology updates {s['topology_seconds']:.1f} s)"
          + (f" on {s['ranks']} MPI ranks" if s["ranks"] > 1 else ""))
    print(f"network {'-'.join(map(str, s['layer_sizes']))}: {s['n_connections']} connections, "
          f"density {100 * s['density']:.2f}% of the dense {s['dense_connections']}")
    print(f"wrote {out}/: {', '.join(OUTPUT_FILES)}")
