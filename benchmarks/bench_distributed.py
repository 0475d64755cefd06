"""Data-parallel training benchmark: time per epoch and communication, for P = 1, 2, ... ranks.

Trains the training benchmark's network (784-H-H-H-10, epsilon 20, batch
128, exact cosine growth) on synthetic clustered data, once in one plain
process (no MPI: the reference) and once per ``--ranks`` entry under
``mpiexec -n P``, rounds interleaved. Per configuration it reports the
epoch's wall time (training and topology update apart), the gradient
allreduce's wall time during training (waiting for the slowest rank
included), the bytes each rank reduces per batch, the same allreduces timed
alone (after a barrier, repeated: the pure communication cost), and the
loss of every epoch. The first (untimed) epoch has no topology update before
it: its loss must match the reference's to 1e-5 (relative; float32 sums in
another order), else the run fails (exit status 1). Later epochs' losses are
reported only: in float32, the ranks' weights differ from one process's in
the last bits, which can flip a near-tie of the cosine top-k and so grow a
different connection (float64 runs match to the last digit printed).

Examples::

    python benchmarks/bench_distributed.py --ranks 1,2 --json docs/bench_distributed.json
    python benchmarks/bench_distributed.py --ranks 1,2 --samples 6000 --epochs 2   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LOSS_RTOL = 1e-5


def _arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", default="1,2", help="comma-separated P values (default: 1,2)")
    p.add_argument("--samples", type=int, default=30000)
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--epsilon", type=float, default=20.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs, after 1 warm-up epoch")
    p.add_argument("--cosine-samples", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--json", default=None, help="write the records here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)   # set by the driver
    return p.parse_args(argv)


def make_data(n, seed=0):
    """Ten Gaussian clusters in 784 dimensions, feature-major float32 (784, n)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((10, 784)).astype(np.float32) * 0.3
    y = rng.integers(0, 10, n)
    X = centers[y] + rng.standard_normal((n, 784), dtype=np.float32)
    return np.ascontiguousarray(X.T), y.astype(np.int64)


def _trainer(args, communicator):
    from ctre_sparse.nn import SGD, SparseMLP
    from ctre_sparse.topology import TopologyUpdater
    from ctre_sparse.training import Trainer

    sizes = [784] + [args.hidden] * 3 + [10]
    model = SparseMLP(sizes, epsilon=args.epsilon, dtype=np.dtype(args.dtype), random_state=0)
    updater = TopologyUpdater(zeta=0.3, growth="cosine", cosine_samples=args.cosine_samples)
    return Trainer(model, SGD(0.01), updater, batch_size=args.batch_size, random_state=1,
                   communicator=communicator)


def _isolated_allreduce(comm, model, repeat=50):
    """Seconds per batch of the per-layer allreduces alone (buffers of the training's sizes)."""
    from mpi4py import MPI

    bufs = [np.zeros(layer.W.nnz + layer.W.n_out + (2 if i == model.n_layers - 1 else 0),
                     dtype=model.dtype) for i, layer in enumerate(model.layers)]
    times = []
    for _ in range(repeat):
        comm.comm.Barrier()
        t0 = time.perf_counter()
        for buf in reversed(bufs):
            comm.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), int(sum(b.nbytes for b in bufs))


def worker(args):
    """One configuration: ``plain`` (no MPI) or ``mpi`` (this process is one rank)."""
    comm = None
    if args.worker == "mpi":
        from ctre_sparse.distributed import MPICommunicator

        comm = MPICommunicator()
    X, y = make_data(args.samples)
    X = X.astype(args.dtype)
    trainer = _trainer(args, comm)
    warmup = trainer.run_epoch(X, y)          # JIT, first touch; no topology update before it
    records = [trainer.run_epoch(X, y) for _ in range(args.epochs)]
    out = {"config": args.worker, "ranks": 1 if comm is None else comm.size,
           "n_batches": -(-args.samples // args.batch_size),
           "n_connections": int(trainer.model.n_connections),
           "threads": _threads(), "warmup": warmup, "epochs": records}
    if comm is not None:    # threads while training (close() restores the process's count)
        out["isolated_allreduce_s"], out["bytes_per_batch"] = _isolated_allreduce(
            comm, trainer.model)
        comm.close()
    if comm is None or comm.rank == 0:
        sys.stdout.write("RESULT " + json.dumps(out) + "\n")


def _threads():
    from ctre_sparse.backends import native

    return native.get_num_threads() if native.unavailable_reason() is None else None


def _run_config(args, config, ranks):
    cmd = [sys.executable, __file__, "--worker", config, "--samples", str(args.samples),
           "--hidden", str(args.hidden), "--epsilon", str(args.epsilon),
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
           "--cosine-samples", str(args.cosine_samples), "--dtype", args.dtype]
    if config == "mpi":
        mpiexec = Path(sys.executable).parent / "mpiexec"
        cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks)] + cmd
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[0][len("RESULT "):])


def _summary(rec, ref):
    """One row of the table from a configuration's record; ``ref``: the plain run's."""
    ep = rec["epochs"]
    seconds = np.median([e["seconds"] for e in ep])
    topo = np.median([e["topology_seconds"] for e in ep])
    comm = np.median([e.get("comm_seconds", 0.0) for e in ep])
    losses = np.array([e["train_loss"] for e in ep])
    ref_losses = np.array([e["train_loss"] for e in ref["epochs"]])
    later = float(np.max(np.abs(losses - ref_losses) / np.abs(ref_losses)))
    first = abs(rec["warmup"]["train_loss"] / ref["warmup"]["train_loss"] - 1)
    nb = rec["n_batches"]
    return {"label": "1 process, no MPI" if rec["config"] == "plain" else
            f"MPI, P = {rec['ranks']}", "ranks": rec["ranks"], "threads": rec["threads"],
            "epoch_s": float(seconds), "training_s": float(seconds - topo),
            "topology_s": float(topo), "comm_s": float(comm),
            "comm_ms_per_batch": 1e3 * comm / nb, "bytes_per_batch": rec.get("bytes_per_batch"),
            "isolated_allreduce_ms": (None if "isolated_allreduce_s" not in rec
                                      else 1e3 * rec["isolated_allreduce_s"]),
            "compute_ms_per_batch": 1e3 * (seconds - topo - comm) / nb,
            "first_loss_rel_diff": first, "later_loss_rel_diff": later,
            "final_loss": float(losses[-1])}


def main(argv=None):
    args = _arguments(argv)
    if args.worker:
        worker(args)
        return 0
    load_before = os.getloadavg()
    ranks = [int(r) for r in args.ranks.split(",")]
    configs = [("plain", 1)] + [("mpi", p) for p in ranks]
    rows = {c: [] for c in configs}
    for _ in range(args.rounds):                          # interleaved rounds
        for c in configs:
            rows[c].append(_run_config(args, *c))
    ref = rows[("plain", 1)][0]
    table = [_summary(rec, ref) for c in configs for rec in rows[c]]
    failed = any(r["first_loss_rel_diff"] > LOSS_RTOL for r in table)
    header = (f"{'configuration':<20} {'threads':>7} {'epoch s':>8} {'train s':>8} "
              f"{'topo s':>7} {'comm ms/b':>9} {'alone ms/b':>10} {'KiB/b':>7} {'loss 1st':>8} "
              f"{'later':>7}")
    print(header)
    for r in table:
        alone = "" if r["isolated_allreduce_ms"] is None else f"{r['isolated_allreduce_ms']:.3f}"
        kib = "" if r["bytes_per_batch"] is None else f"{r['bytes_per_batch'] / 1024:.0f}"
        print(f"{r['label']:<20} {r['threads']!s:>7} {r['epoch_s']:8.3f} {r['training_s']:8.3f} "
              f"{r['topology_s']:7.3f} {r['comm_ms_per_batch']:9.3f} {alone:>10} {kib:>7} "
              f"{r['first_loss_rel_diff']:8.1e} {r['later_loss_rel_diff']:7.1e}")
    if args.json:
        doc = {"args": {k: v for k, v in vars(args).items() if k != "worker"},
               "loadavg_before_after": [load_before, os.getloadavg()], "rows": table, "raw": {
                   f"{c[0]}-{c[1]}": rows[c] for c in configs},
               "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    if failed:
        print(f"FAILED: a run's first-epoch loss differs from the plain run's by more than "
              f"{LOSS_RTOL:g} (relative)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
