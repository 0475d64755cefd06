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
#: Networks of the scaling model: (name, bandwidth bytes/s, latency s per message), assumed
#: typical figures, not measured here.
NETWORKS = (("1 GbE (TCP)", 0.125e9, 50e-6), ("10 GbE (TCP)", 1.25e9, 25e-6),
            ("100 Gb/s InfiniBand", 12.5e9, 2e-6))
MODEL_RANKS = (1, 2, 4, 8, 16, 32, 64)
N_HIDDEN_LAYERS = 3


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
    p.add_argument("--overlap", action="store_true",
                   help="also time the overlap experiment: each layer's allreduce started "
                        "(MPI_Iallreduce) as soon as backward has its gradient")
    p.add_argument("--json", default=None, help="write the records here")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of every process (OMP/NUMBA/OPENBLAS_NUM_THREADS); default: "
                        "one process uses all cores, P ranks on one machine share them")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print the tables of a saved run as markdown, measure nothing")
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

    sizes = [784] + [args.hidden] * N_HIDDEN_LAYERS + [10]
    model = SparseMLP(sizes, epsilon=args.epsilon, dtype=np.dtype(args.dtype), init="he",
                      random_state=0)
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


def _topk_split_times(trainer, X, repeat=3):
    """Seconds of the exact top-k of layer 1 (hidden x hidden) whole and on half its rows.

    What one of 2 ranks does in the split top-k, without the gather: the
    trained model's activations over ``cosine_samples`` samples, the same k
    as the topology update; best of ``repeat``.
    """
    from ctre_sparse import topk_cosine
    from ctre_sparse.distributed import row_block

    acts = trainer.model.activations(np.ascontiguousarray(X[:, :trainer.updater.cosine_samples]))
    W = trainer.model.layers[1].W
    A, B, k, half = acts[1], acts[2], int(trainer.updater.zeta * W.nnz), W.n_out // 2

    def best(fn):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)
    return {"whole_s": best(lambda: topk_cosine(A, B, k, exclude=W)),
            "half_rows_s": best(lambda: topk_cosine(A, B[:half], k,
                                                    exclude=row_block(W, 0, half)))}


def _install_overlap(comm, model):
    """The overlap experiment: every layer's allreduce overlaps the backward of the layers below.

    Each layer's ``backward`` starts ``MPI_Iallreduce`` of its gradients as
    soon as it has them; the batch's loss and correct count go in a small
    blocking allreduce after backward; all are completed before the SGD
    step. Replaces the communicator's ``allreduce_gradients`` in this process.
    """
    from mpi4py import MPI

    pending = []
    for i, layer in enumerate(model.layers):
        def backward(dY, X, *, need_dX=True, out=None, _i=i, _layer=layer,
                     _plain=layer.backward):
            dX = _plain(dY, X, need_dX=need_dX, out=out)
            buf = comm._gradient_buffer(_i, _layer, 0)
            pending.append((comm.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM), buf.nbytes))
            return dX
        layer.backward = backward

    def allreduce_gradients(model, loss, n_correct):
        t0 = time.perf_counter()
        tail = np.array([loss, n_correct], dtype=np.float64)
        comm.comm.Allreduce(MPI.IN_PLACE, tail, op=MPI.SUM)
        MPI.Request.Waitall([req for req, _ in pending])
        comm.stats["allreduce_seconds"] += time.perf_counter() - t0
        comm.stats["allreduce_bytes"] += sum(n for _, n in pending) + tail.nbytes
        comm.stats["n_batches"] += 1
        pending.clear()
        return float(tail[0]), int(round(tail[1]))
    comm.allreduce_gradients = allreduce_gradients


def worker(args):
    """One configuration: ``plain`` (no MPI), ``mpi`` or ``overlap`` (one rank of P)."""
    comm = None
    if args.worker in ("mpi", "overlap"):
        from ctre_sparse.distributed import MPICommunicator

        comm = MPICommunicator()
    X, y = make_data(args.samples)
    X = X.astype(args.dtype)
    trainer = _trainer(args, comm)
    if args.worker == "overlap":
        _install_overlap(comm, trainer.model)
    warmup = trainer.run_epoch(X, y)          # JIT, first touch; no topology update before it
    records = [trainer.run_epoch(X, y) for _ in range(args.epochs)]
    out = {"config": args.worker, "ranks": 1 if comm is None else comm.size,
           "n_batches": -(-args.samples // args.batch_size),
           "n_connections": int(trainer.model.n_connections),
           "threads": _threads(), "warmup": warmup, "epochs": records}
    if comm is None:
        out["topk_layer1"] = _topk_split_times(trainer, X)
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
    if config != "plain":
        mpiexec = Path(sys.executable).parent / "mpiexec"
        cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks)] + cmd
    env = dict(os.environ)
    if args.threads is not None:
        env.update({k: str(args.threads) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                   "OPENBLAS_NUM_THREADS")})
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
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
    label = {"plain": "1 process, no MPI", "mpi": f"MPI, P = {rec['ranks']}",
             "overlap": f"MPI, P = {rec['ranks']}, overlap"}[rec["config"]]
    return {"label": label, "ranks": rec["ranks"], "threads": rec["threads"],
            "epoch_s": float(seconds), "training_s": float(seconds - topo),
            "topology_s": float(topo), "comm_s": float(comm),
            "topk_s": float(np.median([e.get("topk_seconds", 0.0) for e in ep])),
            "comm_ms_per_batch": 1e3 * comm / nb, "bytes_per_batch": rec.get("bytes_per_batch"),
            "isolated_allreduce_ms": (None if "isolated_allreduce_s" not in rec
                                      else 1e3 * rec["isolated_allreduce_s"]),
            "compute_ms_per_batch": 1e3 * (seconds - topo - comm) / nb,
            "first_loss_rel_diff": first, "later_loss_rel_diff": later,
            "final_loss": float(losses[-1])}


def allreduce_model(P, n_layers, nbytes, bandwidth, latency):
    """Seconds of one batch's allreduces (one per layer, ``nbytes`` in all) over P machines.

    Recursive halving/doubling (Rabenseifner): ``2 log2 P`` latencies per
    message, ``2 (P - 1) / P`` times the bytes through each machine's link.
    """
    if P <= 1:
        return 0.0
    return (n_layers * 2 * np.ceil(np.log2(P)) * latency
            + 2 * (P - 1) / P * nbytes / bandwidth)


def scaling_model(rows, n_batches, n_layers, batch_size):
    """Predicted epoch time on P machines from this machine's measured pieces.

    ``t_c``: training seconds per global batch of the plain run (whole batch,
    one machine); ``K``: the cosine top-k of the topology update (split P
    ways), ``R``: the rest of it (every rank does it), both from the P = 1
    MPI runs; medians over the rounds; ``V``: bytes reduced per batch.
    Epoch(P) = batches * (t_c / P + allreduce(P)) + R + K / P.
    ``batch_for_20pct``: the smallest global batch whose allreduce is at most
    20% of a batch step (compute grows with the batch, the allreduce does not).
    """
    def median(label, key):                      # over the interleaved rounds
        return float(np.median([r[key] for r in rows if r["label"] == label]))

    t_c = median("1 process, no MPI", "training_s") / n_batches
    K = median("MPI, P = 1", "topk_s")
    R = max(median("MPI, P = 1", "topology_s") - K, 0.0)    # the same runs' updates
    V = next(r for r in rows if r["label"] == "MPI, P = 1")["bytes_per_batch"]
    table = []
    for name, bandwidth, latency in NETWORKS:
        base = n_batches * t_c + R + K
        for P in MODEL_RANKS:
            ar = allreduce_model(P, n_layers, V, bandwidth, latency)
            epoch = n_batches * (t_c / P + ar) + R + K / P
            table.append({"network": name, "ranks": P, "epoch_s": epoch,
                          "speedup": base / epoch, "comm_share": n_batches * ar / epoch,
                          "allreduce_ms_per_batch": 1e3 * ar,
                          "compute_ms_per_batch": 1e3 * t_c / P,
                          "batch_for_20pct": int(np.ceil(4 * P * ar * batch_size / t_c))})
    return {"t_c_ms": 1e3 * t_c, "batch_size": batch_size, "topk_s": K, "topology_rest_s": R, "bytes_per_batch": V,
            "n_layers": n_layers, "rows": table}


def _print_model(model):
    print(f"\nscaling model: compute {model['t_c_ms']:.3f} ms per global batch on this machine, "
          f"{model['bytes_per_batch'] / 1024:.0f} KiB reduced per batch in "
          f"{model['n_layers']} messages, topology {model['topk_s']:.3f} s split + "
          f"{model['topology_rest_s']:.3f} s on every rank")
    print(f"{'network':<22} " + " ".join(f"{'P=' + str(P):>14}" for P in MODEL_RANKS))
    for name, _, _ in NETWORKS:
        cells = [r for r in model["rows"] if r["network"] == name]
        print(f"{name:<22} " + " ".join(
            f"{r['speedup']:5.2f}x {100 * r['comm_share']:4.0f}%c " for r in cells))


def _print_table(table):
    print(f"{'configuration':<26} {'threads':>7} {'epoch s':>8} {'train s':>8} {'topo s':>7} "
          f"{'comm ms/b':>9} {'alone ms/b':>10} {'KiB/b':>7} {'loss 1st':>8} {'later':>7}")
    for r in table:
        alone = "" if r["isolated_allreduce_ms"] is None else f"{r['isolated_allreduce_ms']:.3f}"
        kib = "" if r["bytes_per_batch"] is None else f"{r['bytes_per_batch'] / 1024:.0f}"
        print(f"{r['label']:<26} {r['threads']!s:>7} {r['epoch_s']:8.3f} {r['training_s']:8.3f} "
              f"{r['topology_s']:7.3f} {r['comm_ms_per_batch']:9.3f} {alone:>10} {kib:>7} "
              f"{r['first_loss_rel_diff']:8.1e} {r['later_loss_rel_diff']:7.1e}")


def render_markdown(doc):
    """The measured table and the model's table of a saved run, as markdown (for the docs)."""
    lines = ["| configuration | threads/rank | epoch (s) | training (s) | topology (s) | "
             "allreduce in training (ms/batch) | allreduce alone (ms/batch) | KiB/batch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["rows"]:
        alone = "" if r["isolated_allreduce_ms"] is None else f"{r['isolated_allreduce_ms']:.3f}"
        kib = "" if r["bytes_per_batch"] is None else f"{r['bytes_per_batch'] / 1024:.0f}"
        lines.append(f"| {r['label']} | {r['threads']} | {r['epoch_s']:.3f} | "
                     f"{r['training_s']:.3f} | {r['topology_s']:.3f} | "
                     f"{r['comm_ms_per_batch']:.3f} | {alone} | {kib} |")
    model = doc["scaling_model"]
    lines += ["", "| network | " + " | ".join(f"P = {P}" for P in MODEL_RANKS) + " |",
              "| --- |" + " --- |" * len(MODEL_RANKS)]
    for name, _, _ in NETWORKS:
        cells = [r for r in model["rows"] if r["network"] == name]
        lines.append(f"| {name} | " + " | ".join(
            f"{r['speedup']:.2f}x ({100 * r['comm_share']:.0f}%)" for r in cells) + " |")
    lines += ["", "| network | " + " | ".join(f"P = {P}" for P in MODEL_RANKS[1:]) + " |",
              "| --- |" + " --- |" * (len(MODEL_RANKS) - 1)]
    for name, _, _ in NETWORKS:
        cells = [r for r in model["rows"] if r["network"] == name and r["ranks"] > 1]
        lines.append(f"| {name} | " + " | ".join(str(r["batch_for_20pct"]) for r in cells)
                     + " |")
    return "\n".join(lines)


def measure(args):
    """Run every configuration ``args.rounds`` times, interleaved; the JSON-able record."""
    load_before = os.getloadavg()
    ranks = sorted({1} | {int(r) for r in args.ranks.split(",")})   # P = 1 feeds the model
    configs = [("plain", 1)] + [("mpi", p) for p in ranks]
    if args.overlap:
        configs += [("overlap", p) for p in ranks if p > 1]
    rows = {c: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            rows[c].append(_run_config(args, *c))
    ref = rows[("plain", 1)][0]
    table = [_summary(rec, ref) for c in configs for rec in rows[c]]
    return {"rows": table,
            "scaling_model": scaling_model(table, ref["n_batches"], N_HIDDEN_LAYERS + 1,
                                           args.batch_size),
            "args": {k: v for k, v in vars(args).items() if k not in ("worker", "render")},
            "loadavg_before_after": [load_before, os.getloadavg()],
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "raw": {f"{c[0]}-{c[1]}": rows[c] for c in configs}}


def main(argv=None):
    args = _arguments(argv)
    if args.worker:
        worker(args)
        return 0
    if args.render:     # the model recomputed from the saved measurements
        doc = json.loads(Path(args.render).read_text())
        doc["scaling_model"] = scaling_model(doc["rows"], doc["raw"]["plain-1"][0]["n_batches"],
                                             N_HIDDEN_LAYERS + 1, doc["args"]["batch_size"])
        print(render_markdown(doc))
        return 0
    doc = measure(args)
    _print_table(doc["rows"])
    _print_model(doc["scaling_model"])
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    if any(r["first_loss_rel_diff"] > LOSS_RTOL for r in doc["rows"]):
        print(f"FAILED: a run's first-epoch loss differs from the plain run's by more than "
              f"{LOSS_RTOL:g} (relative)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
