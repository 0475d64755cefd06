"""The training benchmark: records, figures, the reference check, the peer, the profiler.

Tiny networks only; no speed is asserted, only that the numbers are computed,
checked and recorded right.
"""

import argparse
import doctest
import json
import math
import sys
import types

import numpy as np
import pytest

from ctre_sparse import ops
from benchmarks import harness
from benchmarks import training as tb
from benchmarks import training_peer, training_profile
from ctre_sparse.nn.init import erdos_renyi_nnz

TINY = dict(hidden=(16,), samples=300, batch=32, epochs=2, cosine_samples=64, zeta=0.2,
            threads=1, warmup=False)
REQUIRED = ("network", "epsilon", "batch", "samples", "backend", "device", "seconds_per_epoch",
            "train_seconds", "topology_seconds", "topology_fraction", "ns_per_nnz_sample",
            "nnz_total", "nnz_layers", "train_gflops", "peer", "peer_seconds_per_epoch",
            "speedup_vs_torch", "train_speedup_vs_torch", "targets", "check_error",
            "per_epoch", "machine", "growth", "threads", "train_loss", "initial_loss")

try:
    import torch  # noqa: F401
    HAVE_TORCH = True
except Exception:  # pragma: no cover - depends on the machine
    HAVE_TORCH = False


def tiny(**kw):
    return tb.TrainingBenchConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def tiny_records():
    return tb.run_training_bench(tiny(peer=HAVE_TORCH))


# ----------------------------------------------------------------- figures
def test_ns_per_nnz_sample_definition():
    assert tb.ns_per_nnz_sample(0.9, 125_000, 60_000) == pytest.approx(0.12)
    assert tb.ns_per_nnz_sample(2.0, 10, 100) == pytest.approx(2e9 / 1000)
    assert tb.ns_per_nnz_sample(None, 10, 10) is None
    assert tb.ns_per_nnz_sample(1.0, 0, 10) is None


def test_steady_topology_leaves_out_the_first_epoch():
    from benchmarks import training_report

    epochs = [{"topology_seconds": 0.3, "seconds": 1.3}, {"topology_seconds": 0.1, "seconds": 1.0},
              {"topology_seconds": 0.2, "seconds": 1.2}]
    got = training_report.steady_topology(epochs)
    assert got["topology_seconds_steady"] == pytest.approx(0.15)
    assert got["topology_fraction_steady"] == pytest.approx(0.15 / 1.1)
    assert training_report.steady_topology(epochs[:1]) == {"topology_seconds_steady": None,
                                                           "topology_fraction_steady": None}
    line = training_report._steady({"per_epoch": epochs})
    assert line == "0.150 (13.6% of those epochs; the first update took 0.300)"
    assert "one epoch" in training_report._steady({"per_epoch": epochs[:1]})


def test_layer_sizes_and_data():
    assert tb.layer_sizes(1000) == [784, 1000, 1000, 1000, 10]
    X, y = tb.make_data(500, seed=3)
    X2, y2 = tb.make_data(500, seed=3)
    assert X.shape == (784, 500) and X.flags.f_contiguous and X.dtype == np.float32
    assert np.array_equal(X, X2) and np.array_equal(y, y2)  # seeded
    assert not np.array_equal(tb.make_data(500, seed=4)[0], X)
    assert y.dtype == np.int64 and set(np.unique(y)) <= set(range(10))
    # the classes differ in their means: class-mean distance well above the noise of a mean
    m0, m1 = X[:, y == 0].mean(axis=1), X[:, y == 1].mean(axis=1)
    assert np.linalg.norm(m0 - m1) > 5 * math.sqrt(784 * 2 / 40)
    with pytest.raises(ValueError, match="n_samples"):
        tb.make_data(0)


def test_targets_verdicts():
    rec = {"ns_per_nnz_sample": 0.1, "speedup_vs_torch": 7.9, "topology_fraction": None}
    t = tb.targets(rec)
    assert t["ns_per_nnz_sample"]["met"] is True
    assert t["speedup_vs_torch"]["met"] is False
    assert t["topology_fraction"]["met"] is None
    assert t["ns_per_nnz_sample"]["target"] == "<= 0.12"


def test_record_fields_and_figures(tiny_records):
    (rec,) = tiny_records
    for key in REQUIRED:
        assert key in rec, key
    assert rec["network"] == "784-16-16-16-10" and rec["status"] == "ok"
    sizes = tb.layer_sizes(16)
    expected_nnz = [erdos_renyi_nnz(b, a, epsilon=20.0) for a, b in zip(sizes[:-1], sizes[1:])]
    assert rec["nnz_layers"] == expected_nnz and rec["nnz_total"] == sum(expected_nnz)
    epochs = rec["per_epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert e["seconds"] == pytest.approx(e["train_seconds"] + e["topology_seconds"])
        assert e["train_seconds"] > 0 and e["topology_seconds"] > 0
        assert e["n_cosine"] + e["n_random"] > 0  # every epoch has its topology update
    train = np.mean([e["train_seconds"] for e in epochs])
    topo = np.mean([e["topology_seconds"] for e in epochs])
    assert rec["train_seconds"] == pytest.approx(train)
    assert rec["topology_seconds"] == pytest.approx(topo)
    assert rec["seconds_per_epoch"] == pytest.approx(train + topo)
    assert rec["topology_fraction"] == pytest.approx(topo / (train + topo))
    assert rec["ns_per_nnz_sample"] == pytest.approx(train / (sum(expected_nnz) * 300) * 1e9)
    nnz = expected_nnz
    flops = 2 * 300 * (2 * sum(nnz) + sum(nnz[1:]))
    assert rec["train_gflops"] == pytest.approx(flops / train / 1e9)
    assert rec["check_error"] <= tb.CHECK_RTOL[np.dtype(np.float32)]
    assert rec["targets"]["ns_per_nnz_sample"]["value"] == rec["ns_per_nnz_sample"]
    assert rec["machine"]["threads"] == 1 and "loadavg_end" in rec["machine"]
    assert 0 < rec["cpu_utilization"] < 1.5  # process CPU time / (wall time * threads)
    assert set(rec["machine"]["code"]) == {"commit", "dirty"}


def test_record_peer_figures(tiny_records):
    (rec,) = tiny_records
    peer = rec["peer"]
    if not HAVE_TORCH:
        assert peer["status"].startswith("skipped")
        return
    assert peer["status"] == "ok"
    assert peer["check_error"] <= tb.CHECK_RTOL[np.dtype(np.float32)]
    assert peer["extrapolated"] is False and peer["batches_timed"] == peer["n_batches"] == 10
    assert rec["peer_seconds_per_epoch"] == peer["seconds_per_epoch"] == peer["timed_seconds"]
    assert rec["speedup_vs_torch"] == pytest.approx(peer["seconds_per_epoch"]
                                                    / rec["seconds_per_epoch"])
    assert rec["train_speedup_vs_torch"] == pytest.approx(peer["seconds_per_epoch"]
                                                          / rec["train_seconds"])
    assert peer["threads"] == 1


def test_records_are_strict_json(tiny_records, tmp_path):
    path = harness.write_json(tiny_records, tmp_path / "t.json")
    back = json.loads(open(path).read())
    assert back[0]["nnz_total"] == tiny_records[0]["nnz_total"]
    assert "per_epoch" in back[0] and "targets" in back[0]


# ----------------------------------------------------------------- the peer
def test_peer_skipped_cleanly_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    reason = training_peer.peer_unavailable_reason()
    assert reason and reason.startswith("torch not importable")
    (rec,) = tb.run_training_bench(tiny(epochs=1))
    assert rec["peer"]["status"] == f"skipped: {reason}"
    assert rec["peer_seconds_per_epoch"] is None and rec["speedup_vs_torch"] is None
    assert rec["targets"]["speedup_vs_torch"]["met"] is None
    assert rec["seconds_per_epoch"] > 0
    assert "torch dense+mask: skipped" in tb.format_record(rec)


def test_no_peer_option():
    (rec,) = tb.run_training_bench(tiny(epochs=1, peer=False))
    assert rec["peer"]["status"].startswith("skipped: not requested")


def test_peer_too_large_is_skipped_with_reason():
    reason = training_peer.TorchDenseMasked.too_large(tb.layer_sizes(16384), np.float32)
    assert reason and "GiB" in reason
    assert training_peer.TorchDenseMasked.too_large(tb.layer_sizes(1000), np.float32) is None


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_peer_trains_the_same_network_and_extrapolates():
    config = tiny()
    model = tb.build_model(config, 16)
    X, y = tb.make_data(200, seed=1)
    Xb, yb = tb.check_batch(model, X, y, 32)
    ref = tb.reference_pass(model, Xb, yb)
    peer = training_peer.TorchDenseMasked(model, learning_rate=0.05, momentum=0.9,
                                          weight_decay=1e-4)
    assert peer.check(Xb, yb, ref) < 1e-4
    # masked-out weights get no gradient: the product W * M hides them
    out = peer.run_epoch(X, y, 32, seed=0, max_batches=3)
    assert out["extrapolated"] is True and out["batches_timed"] == 3 and out["n_batches"] == 7
    assert out["seconds_per_epoch"] == pytest.approx(out["timed_seconds"] * 200 / 96)
    W, M = peer.weights[0].detach().numpy(), peer.masks[0].numpy()
    W0 = model.layers[0].W.toarray()
    assert np.array_equal(W[M == 0] != 0, W0[M == 0] != 0)  # still zero outside the pattern
    assert not np.allclose(W[M == 1], W0[M == 1])  # trained inside it


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_peer_check_catches_a_different_network():
    config = tiny()
    model = tb.build_model(config, 16)
    X, y = tb.make_data(100, seed=1)
    Xb, yb = tb.check_batch(model, X, y, 32)
    ref = tb.reference_pass(model, Xb, yb)
    other = tb.build_model(config, 16, random_state=123)
    peer = training_peer.TorchDenseMasked(other, learning_rate=0.05, momentum=0.9,
                                          weight_decay=1e-4)
    assert peer.check(Xb, yb, ref) > 1e-2


# ----------------------------------------------------------------- the check
def test_wrong_backend_is_caught_and_nothing_timed(monkeypatch, capsys):
    original = ops.sddmm

    def wrong_sddmm(W, G, X, *, out=None, backend="auto"):
        res = original(W, G, X, out=out, backend=backend)
        if backend != "reference":
            res[0] += 1.0  # one wrong weight gradient
        return res

    monkeypatch.setattr(ops, "sddmm", wrong_sddmm)
    with pytest.raises(harness.ResultMismatchError, match="reference"):
        tb.run_training_bench(tiny(epochs=1, peer=False))
    args = _parse(["--samples", "300", "--hidden", "16", "--batch", "32", "--epochs", "1",
                   "--cosine-samples", "64", "--threads", "1", "--no-peer"])
    assert tb.run_from_args(args) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "s/epoch" not in out


def test_check_batch_avoids_relu_kinks():
    config = tiny()
    model = tb.build_model(config, 16)
    X, y = tb.make_data(200, seed=2)
    Xb, yb = tb.check_batch(model, X, y, 32)
    assert Xb.flags.c_contiguous and 0 < Xb.shape[1] <= 32 and yb.shape == (Xb.shape[1],)
    # a sample with a hidden pre-activation exactly 0 is left out
    layer = model.layers[0]
    row = int(np.argmax(np.diff(layer.W.indptr)))
    lo = layer.W.indptr[row]
    X2 = X.copy()
    X2[:, 0] = 0
    X2[layer.W.indices[lo], 0] = 1.0
    layer.b[row] = -layer.W.data[lo]  # z = w * 1 + b = 0 for sample 0
    X2b, _ = tb.check_batch(model, X2, y, 32)
    assert not any(np.array_equal(X2b[:, j], X2[:, 0]) for j in range(X2b.shape[1]))


# ----------------------------------------------------------------- options and errors
def _parse(argv):
    return tb.add_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_config_from_args():
    c = tb.config_from_args(_parse(["--quick"]))
    assert c.samples == 6000 and c.hidden == (1000,) and c.growth == "ctre_sim"
    assert c.epsilon == 20 and c.batch == 128 and c.cosine_samples == 2000 and c.peer
    c = tb.config_from_args(_parse(["--quick", "--samples", "1234", "--hidden", "1000,16384",
                                    "--growth", "cosine", "--no-peer", "--peer-batches", "5"]))
    assert c.samples == 1234 and c.hidden == (1000, 16384) and c.growth == "cosine"
    assert not c.peer and c.peer_batches == 5
    assert tb.config_from_args(_parse([])).samples == 60_000
    with pytest.raises(ValueError, match="comma-separated integers"):
        tb.config_from_args(_parse(["--hidden", "big"]))


@pytest.mark.parametrize("kw, match", [(dict(batch=0), "positive"), (dict(hidden=()), "hidden"),
                                       (dict(peer_batches=-1), "peer_batches"),
                                       (dict(device="tpu"), "device")])
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        tb.run_training_bench(tiny(**kw))


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tb, "cuda_info", lambda: {"available": False,
                                                  "reason": "CuPy not importable (x)"})
    with pytest.raises(RuntimeError, match="needs a CUDA GPU and CuPy: CuPy not importable"):
        tb.run_training_bench(tiny(device="cuda"))
    monkeypatch.setattr(tb, "cuda_info", lambda: {"available": True})
    monkeypatch.delattr(tb.Trainer, "to_device", raising=False)
    with pytest.raises(RuntimeError, match="no GPU training loop yet"):
        tb.run_training_bench(tiny(device="cuda"))


def test_run_from_args_writes_json(tmp_path, capsys):
    path = tmp_path / "train.json"
    args = _parse(["--samples", "300", "--hidden", "16", "--batch", "32", "--epochs", "1",
                   "--cosine-samples", "64", "--threads", "1", "--json", str(path),
                   "--peer-batches", "2"])
    assert tb.run_from_args(args) == 0
    out = capsys.readouterr().out
    assert "s/epoch" in out and "target ns_per_nnz_sample" in out
    (rec,) = harness.read_json(path)
    assert rec["samples"] == 300 and rec["network"] == "784-16-16-16-10"
    if HAVE_TORCH:
        assert rec["peer"]["extrapolated"] is True and "EXTRAPOLATED" in out


# ----------------------------------------------------------------- the profiler
def test_profiler_exclusive_times_and_restore():
    ns = types.SimpleNamespace()
    ns.inner = lambda: sum(range(20000))

    def outer():
        return ns.inner() + ns.inner()

    ns.outer = outer
    prof = training_profile.OpProfiler()
    prof.patch(ns, "outer", "outer", phase="p: ")
    prof.patch(ns, "inner", "inner")
    original_inner = ns.inner
    with prof:
        ns.outer()
        ns.inner()
    assert ns.inner is original_inner and ns.outer is outer  # restored
    table = prof.table()
    assert table["p: outer"]["calls"] == 1 and table["p: inner"]["calls"] == 2
    assert table["inner"]["calls"] == 1
    assert all(row["seconds"] >= 0 for row in table.values())


def test_profile_epoch_covers_the_ops():
    (rec,) = tb.run_training_bench(tiny(epochs=1, peer=False, profile=True, growth="cosine"))
    ops_seen = rec["profile"]["ops"]
    for label in ("spmm", "spmm_t", "sddmm", "SGD update", "batch gather", "softmax",
                  "topology: topk_cosine", "topology: prune_magnitude", "topology: insert"):
        assert label in ops_seen, label
    total = sum(r["seconds"] for r in ops_seen.values())
    assert total == pytest.approx(rec["profile"]["seconds"], rel=0.1)
    assert ops.spmm.__module__ == "ctre_sparse.ops"  # unpatched after the run
    assert "profile of one more epoch" in tb.format_record(rec)


def test_doctests():
    for module in (tb, training_profile):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_bench_training_main(capsys, tmp_path):
    path = tmp_path / "cli.json"
    assert tb.main(["--samples", "300", "--hidden", "16", "--batch", "32",
                    "--epochs", "1", "--cosine-samples", "64", "--threads", "1", "--no-peer",
                    "--json", str(path)]) == 0
    assert "s/epoch" in capsys.readouterr().out
    assert harness.read_json(path)[0]["benchmark"] == "training"


def test_profiler_exclusive_time_with_a_fake_clock():
    ticks = iter(range(100))
    ns = types.SimpleNamespace(inner=lambda: None)
    ns.outer = lambda: (ns.inner(), ns.inner())
    prof = training_profile.OpProfiler(clock=lambda: float(next(ticks)))
    prof.patch(ns, "outer", "outer")
    prof.patch(ns, "inner", "inner")
    with prof:
        ns.outer()  # clock: outer 0, inner 1..2, inner 3..4, outer 5
    table = prof.table()
    assert table["inner"] == {"seconds": 2.0, "calls": 2}
    assert table["outer"] == {"seconds": 3.0, "calls": 1}  # 5 minus the inner 2


def test_markdown_results_and_doc_update(tiny_records, tmp_path, capsys):
    from benchmarks import training_report

    rec = dict(tiny_records[0])
    text = training_report.markdown_results([rec])
    assert "### Machine" in text and "ns per (nonzero x sample)" in text
    assert f"{rec['ns_per_nnz_sample']:.4f}" in text and "| `speedup_vs_torch` |" in text
    json_path = harness.write_json(tiny_records, tmp_path / "r.json")
    doc = tmp_path / "doc.md"
    doc.write_text(f"# T\n\nbefore\n{training_report.START}\nold\n{training_report.END}\nafter\n")
    args = _parse(["--from-json", str(json_path), "--update-doc", str(doc)])
    assert tb.run_from_args(args) == 0
    new = doc.read_text()
    assert "old" not in new and "before" in new and "after" in new
    assert f"{rec['train_seconds']:.3f}" in new
    assert "s/epoch" in capsys.readouterr().out
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        training_report.update_markdown(doc, text)


def test_gpu_records_go_to_the_gpu_section(tiny_records, tmp_path):
    """``--update-doc`` with records of ``--device cuda`` leaves the CPU section alone."""
    from benchmarks import training_report as tr

    gpu = {"available": True, "gpu": "NVIDIA H200", "devices": 1, "cupy": "13.6.0",
           "cuda_runtime": 12080, "cuda_driver": 12080, "memory_gib": 139.8}
    recs = [dict(r, device="cuda", machine=dict(r["machine"], gpu=gpu)) for r in tiny_records]
    json_path = harness.write_json(recs, tmp_path / "g.json")
    doc = tmp_path / "doc.md"
    doc.write_text(f"{tr.START}\ncpu figures\n{tr.END}\n{tr.GPU_START}\nold\n{tr.GPU_END}\n")
    assert tb.run_from_args(_parse(["--from-json", str(json_path), "--update-doc",
                                    str(doc)])) == 0
    new = doc.read_text()
    cpu_part, gpu_part = new.split(tr.GPU_START)
    assert "cpu figures" in cpu_part and "old" not in gpu_part
    assert "- GPU: NVIDIA H200 (139.8 GiB)" in gpu_part and "CuPy 13.6.0" in gpu_part


def test_time_epochs_trains_exactly_as_trainer_fit():
    config = tiny()
    X, y = tb.make_data(200, seed=5)
    a = tb.build_trainer(config, tb.build_model(config, 16))
    epochs, cpu = tb.time_epochs(a, X, y, 2)
    assert a.updater is not None and a.epoch == 2 and cpu["wall_seconds"] > 0
    b = tb.build_trainer(config, tb.build_model(config, 16))
    records = b.fit(X, y, epochs=2)  # epoch 2 starts with epoch 1's update
    b.updater.update(b.model, X, optimizer=b.optimizer,
                     val_accuracy=records[-1]["train_accuracy"], rng=b.rng)
    assert [e["train_loss"] for e in epochs] == [r["train_loss"] for r in records]
    assert epochs[0]["n_cosine"] + epochs[0]["n_random"] == records[1]["n_pruned"]
    for la, lb in zip(a.model.layers, b.model.layers):
        assert np.array_equal(la.W.indices, lb.W.indices)
        assert np.array_equal(la.W.data, lb.W.data)


def test_label_noise():
    X0, y0 = tb.make_data(20000, seed=3, label_noise=0.0)
    X1, y1 = tb.make_data(20000, seed=3)  # 10% of labels redrawn (9% end up different)
    assert np.array_equal(X0, X1)
    assert 0.08 < np.mean(y0 != y1) < 0.10
