"""Smoke tests of the benchmark scripts that no other test runs: each one end to end at tiny
sizes, through its ``main(argv)``, outputs in ``tmp_path``.

Nothing about speed or accuracy is asserted: only that a script still runs against the
package's current API and writes what it says it writes (a bench script that imports a
moved module or calls a removed method fails here, not on the day someone reruns it).
Scripts that need an optional package (FAISS, MPI) or a data set of the shared data
folder (USPS, MADELON) skip with the reason when it is absent.
"""

import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ctre_sparse.backends import available_backends
from ctre_sparse.sparse import CSRMatrix

from benchmarks.report import END, START


def bench(name):
    """``benchmarks.<name>``, imported here so that a script that no longer imports fails its
    own test only.

    Some scripts put benchmarks/ itself first on sys.path (to import their siblings by
    name): that is kept out of the rest of the test session.
    """
    saved = list(sys.path)
    try:
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path[:] = saved


REPO = Path(__file__).resolve().parents[1]
USPS = REPO.parent / "shared" / "data" / "usps" / "usps.npz"  # index_activations.usps_path()
MADELON = Path(os.environ.get("CTRE_SPARSE_DATA_MADELON",
                              REPO.parent / "shared" / "data" / "madelon"))
KERNELS_JSON = REPO / "docs" / "results" / "bench_kernels_cpu.json"
HAVE_NATIVE = "native" in available_backends("cpu")

needs_usps = pytest.mark.skipif(not USPS.exists(),
                                reason=f"USPS not found at {USPS} (shared data folder absent)")
needs_native = pytest.mark.skipif(not HAVE_NATIVE, reason="the native extension is not built")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def restore_threads():
    """Thread counts of numba and the native kernels as they were (some scripts set them)."""
    import numba

    from ctre_sparse.backends import native

    n_numba = numba.get_num_threads()
    n_native = native.get_num_threads() if HAVE_NATIVE else None
    yield
    numba.set_num_threads(n_numba)
    if n_native is not None:
        native.set_num_threads(n_native)


@pytest.fixture(scope="module")
def acts_file(tmp_path_factory):
    """A synthetic activations file in the layout of ``index_activations.py`` (3 layers)."""
    rng = np.random.default_rng(0)
    sizes, samples = [40, 96, 80, 10], 120
    out = {}
    for i, n in enumerate(sizes):
        a = rng.standard_normal((n, samples)).astype(np.float32)
        out[f"acts/{i}"] = a if i == 0 else np.maximum(a, 0)
    for i in range(len(sizes) - 1):
        W = CSRMatrix.random(sizes[i + 1], sizes[i], density=0.1, random_state=i)
        out[f"W/{i}/indptr"], out[f"W/{i}/indices"] = W.indptr, W.indices
        out[f"W/{i}/shape"] = np.array(W.shape)
    out["val_accuracy"] = np.array([0.5])
    path = tmp_path_factory.mktemp("acts") / "acts.npz"
    np.savez(path, **out)
    return path


# --------------------------------------------------------------------- kernels
def test_bench_validation(tmp_path):
    bench_validation = bench("bench_validation")
    out = tmp_path / "validation.json"
    results = bench_validation.main(["--n", "256", "--rounds", "5", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert [r["backend"] for r in saved] == [r["backend"] for r in results]
    assert {r["backend"] for r in saved} == {"native", "numba"} & set(available_backends("cpu"))
    for r in saved:
        assert set(r["median_us"]) == {"unchecked", "cached", "first", "validate_only",
                                       "validate_hot"}
        assert set(r["cost_vs_unchecked"]) == {"cached", "first"}
        assert r["n"] == 256 and r["nnz"] > 0


def test_bench_gather(tmp_path, restore_threads):
    bench_gather = bench("bench_gather")
    out = tmp_path / "gather.json"
    backend = "native" if HAVE_NATIVE else "numba"
    bench_gather.main(["--sizes", "500", "--batch", "16", "--threads", "1", "--repeats", "2",
                       "--backend", backend, "--json", str(out)])
    doc = json.loads(out.read_text())
    assert set(doc) == {"meta", "records"}
    assert [r["what"] for r in doc["records"]] == ["gather", "stream", "spmm", "spmm_t", "sddmm"]
    for r in doc["records"]:
        assert r["n"] == 500 and r["backend"] == backend and r["gb_per_s"] > 0
        assert r.get("check_error", 0.0) <= 1e-4


@needs_native
def test_bench_locality(tmp_path, acts_file, restore_threads):
    bench_locality = bench("bench_locality")
    out = tmp_path / "locality.json"
    bench_locality.main(["--sizes", "300", "--acts", str(acts_file), "--batch", "16",
                         "--threads", "1", "--rounds", "1", "--repeats", "1", "--json", str(out)])
    recs = json.loads(out.read_text())["records"]
    assert {(r["experiment"], r["case"]) for r in recs} == {
        (e, c) for e in ("renumber", "bf16", "fused") for c in ("random 300", "USPS-trained 80")}
    assert all(r["speedup"] > 0 for r in recs)
    assert all(r["relative_error"] < 1e-2 for r in recs if r["experiment"] == "bf16")


def test_report_kernels(tmp_path, capsys):
    report_kernels = bench("report_kernels")
    if not KERNELS_JSON.exists():
        pytest.skip(f"{KERNELS_JSON} absent")
    assert report_kernels.main([str(KERNELS_JSON)]) == 0
    text = capsys.readouterr().out
    assert "### Targets" in text and "| target |" in text
    md = tmp_path / "bench.md"
    md.write_text(f"# before\n{START}\nold\n{END}\nafter\n")
    assert report_kernels.main([str(KERNELS_JSON), "--update", str(md)]) == 0
    new = md.read_text()
    assert "old" not in new and "### Targets" in new
    assert new.startswith("# before\n") and new.endswith("after\n")


def test_training_check():
    training_check = bench("training_check")
    from ctre_sparse.nn import SparseMLP
    from benchmarks import harness

    model = SparseMLP([20, 16, 3], "relu", epsilon=5, init="he", random_state=0)
    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.standard_normal((20, 64)).astype(np.float32))
    y = rng.integers(0, 3, 64)
    Xb, yb = training_check.check_batch(model, X, y, 8)
    assert Xb.shape == (20, 8) and Xb.flags.c_contiguous and yb.shape == (8,)
    ref = training_check.reference_pass(model, Xb, yb)
    assert set(ref) == {"P", "loss", "grads"} and len(ref["grads"]) == 2
    assert training_check.check_ours(model, Xb, yb, ref) <= training_check.CHECK_RTOL[
        np.dtype(np.float32)]
    with pytest.raises(harness.ResultMismatchError, match="the peer"):
        training_check.checked_error(1.0, np.float32, "the peer")


# ------------------------------------------------------------------- cosine top-k
def test_bench_topk_sketch(tmp_path, capsys):
    bench_topk_sketch = bench("bench_topk_sketch")
    out = tmp_path / "sketch.json"
    assert bench_topk_sketch.main(["--sizes", "120x784,100x100", "--samples", "150", "--dims",
                                   "16", "--oversample", "2", "--rank-fractions", "0,0.25",
                                   "--repeats", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "topk_sketch" and "machine" in doc
    assert sorted((r["n_out"], r["n_in"]) for r in doc["records"]) == [(100, 100), (120, 784)]
    for r in doc["records"]:
        assert [(s["dim"], s["oversample"], s["rank"]) for s in r["sketch"]] == [(16, 2, 0),
                                                                              (16, 2, 4)]
        assert all(0.0 <= s["recall"] <= 1.0 for s in r["sketch"])
    assert "recall@k" in capsys.readouterr().out


def test_bench_topk_index_and_its_figure(tmp_path, acts_file):
    bench_topk_index = bench("bench_topk_index")
    plot_topk_index = bench("plot_topk_index")
    out, png = tmp_path / "index.json", tmp_path / "index.png"
    bench_topk_index.main([str(acts_file), "--samples", "100", "--nlist", "8", "--nprobe", "2,4",
                           "--dim", "16", "--repeats", "1", "--json", str(out)])
    (rec,) = json.loads(out.read_text())
    assert rec["shape"] == [80, 96] and rec["samples"] == 100 and rec["k"] > 0
    assert [(r["nlist"], r["nprobe"]) for r in rec["rows"]] == [(8, 2), (8, 4)]
    assert all(0.0 <= r["recall"] <= 1.0 and r["seconds"] > 0 for r in rec["rows"])
    plot_topk_index.main([str(out), str(png)])
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_bench_index_faiss_without_faiss(acts_file):
    """The exact re-scoring step FAISS's candidates go through, on every absent pair."""
    bench_index_faiss = bench("bench_index_faiss")
    bench_topk_index = bench("bench_topk_index")
    from ctre_sparse.ops import cosine_pairs, topk_cosine

    A, B, W = bench_topk_index.load_layer(str(acts_file), 1, 100)
    n_out, n_in = B.shape[0], A.shape[0]
    keys = np.arange(n_out * n_in, dtype=np.int64)
    pattern = W.row_indices().astype(np.int64) * n_in + W.indices
    keys = keys[~np.isin(keys, pattern)]
    scores = np.abs(cosine_pairs(B, A, keys // n_in, keys % n_in))
    rows, cols, _ = bench_index_faiss._finish(A, B, scores, keys, 50, n_in, 200)
    ref = topk_cosine(A, B, 50, exclude=W)
    np.testing.assert_array_equal(rows, ref[0])
    np.testing.assert_array_equal(cols, ref[1])


def test_bench_index_faiss(tmp_path, acts_file):
    bench_index_faiss = bench("bench_index_faiss")
    pytest.importorskip("faiss", reason="bench_index_faiss needs faiss-cpu")
    out = tmp_path / "faiss.json"
    bench_index_faiss.main([str(acts_file), "--samples", "100", "--nlist", "8", "--nprobe", "2",
                            "--ours-nprobe", "4", "--dim", "16", "--budget", "8",
                            "--threads", "1", "--repeats", "1", "--json", str(out)])
    (rec,) = json.loads(out.read_text())
    assert {r["method"] for r in rec["rows"]} >= {"exact", "ours nprobe 2", "ours nprobe 4",
                                                 "faiss-ivf-raw budget 8"}


# ------------------------------------------------------------------------ training
@needs_usps
def test_index_activations(tmp_path):
    bench_topk_index = bench("bench_topk_index")
    index_activations = bench("index_activations")
    out = tmp_path / "acts.npz"
    index_activations.main(["--width", "32", "--epochs", "1", "--samples", "100",
                            "--out", str(out)])
    z = np.load(out)
    assert [z[f"acts/{i}"].shape for i in range(4)] == [(256, 100), (32, 100), (32, 100),
                                                        (10, 100)]
    assert z["val_accuracy"].shape == (1,)
    A, B, W = bench_topk_index.load_layer(str(out), 1, 100)  # what bench_topk_index reads
    assert A.shape == (32, 100) and B.shape == (32, 100) and W.shape == (32, 32) and W.nnz > 0


@needs_usps
def test_check_bf16_training(tmp_path, monkeypatch):
    check_bf16_training = bench("check_bf16_training")
    rounded = []
    plain_round = check_bf16_training.round_bf16
    monkeypatch.setattr(check_bf16_training, "round_bf16",
                        lambda X: rounded.append(X.shape) or plain_round(X))
    out = tmp_path / "bf16.json"
    check_bf16_training.main(["--hidden", "32", "--epochs", "1", "--seeds", "0",
                              "--json", str(out)])
    doc = json.loads(out.read_text())
    assert [r["variant"] for r in doc["runs"]] == ["float32", "bfloat16 activations"]
    assert set(doc["mean_test_accuracy"]) == {"float32", "bfloat16 activations"}
    assert rounded, "the layers no longer call the ops the script rounds"
    from ctre_sparse.nn import layers

    assert layers.ops is check_bf16_training.ops      # restored after the run


@needs_usps
def test_check_index_training(tmp_path):
    check_index_training = bench("check_index_training")
    out = tmp_path / "index_training.json"
    check_index_training.main(["--hidden", "32", "--epochs", "2", "--seeds", "0",
                               "--cosine-samples", "100", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert [(r["mode"], r["modes_seen"]) for r in doc["runs"]] == [("exact", ["exact"]),
                                                                   ("index", ["index"])]
    assert set(doc["mean_test_accuracy"]) == {"exact", "index"}
    assert "mean_difference_index_minus_exact" in doc


@pytest.fixture(scope="module")
def madelon_results(tmp_path_factory):
    reproduce_madelon = bench("reproduce_madelon")
    if not (MADELON / "madelon_train.data").exists():
        pytest.skip(f"MADELON not found at {MADELON} (shared data folder absent)")
    out = tmp_path_factory.mktemp("madelon") / "results.jsonl"
    base = ["--data-dir", str(MADELON), "--seeds", "0", "--epochs", "2", "--out", str(out)]
    assert reproduce_madelon.main(base) == 0
    # the ablations' updater subclasses (they override TopologyUpdater._update_layer)
    assert reproduce_madelon.main(base + ["--methods", "ctre_sim", "--readd", "keep",
                                          "--grow-scale", "sparse", "--init-scale",
                                          "sparse"]) == 0
    return base, out


def test_reproduce_madelon_sweep(madelon_results, capsys):
    reproduce_madelon = bench("reproduce_madelon")
    base, out = madelon_results
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["method"] for r in rows] == list(reproduce_madelon.METHODS) + ["ctre_sim"]
    assert rows[-1]["config"]["readd"] == "keep" and rows[-1]["config"]["grow_scale"] == "sparse"
    for r in rows:
        assert len(r["curves"]["test"]) == 2 and 0.0 <= r["test_at_best_val"] <= 1.0
    assert sum(rows[0]["curves"]["n_cosine"]) > 0        # ctre_sim grew by cosine
    assert reproduce_madelon.main(base) == 0              # every run there: skipped
    assert capsys.readouterr().out.count("skip ") == len(reproduce_madelon.METHODS)


def test_reproduce_madelon_table_plot_diagnose(madelon_results, tmp_path, capsys):
    reproduce_madelon = bench("reproduce_madelon")
    base, out = madelon_results
    png = tmp_path / "curves.png"
    assert reproduce_madelon.main(base + ["--table", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    for method in reproduce_madelon.METHODS:
        assert f"| {method} |" in text
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert reproduce_madelon.main(base + ["--diagnose", "--methods", "ctre_sim"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"ctre_sim"}
    assert set(report["ctre_sim"]["per_layer_mean_over_updates"]) == {"0", "1", "2", "3"}


# --------------------------------------------------------------------- distributed
def test_bench_distributed(tmp_path, monkeypatch, capsys):
    bench_distributed = bench("bench_distributed")
    pytest.importorskip("mpi4py", reason="bench_distributed needs mpi4py (pip install '.[mpi]')")
    beside = Path(sys.executable).parent / "mpiexec"
    if not beside.exists() and shutil.which("mpiexec") is None:
        pytest.skip("bench_distributed needs mpiexec (beside this Python or on PATH)")
    from conftest import child_python

    # the workers run the script by path: they import the ctre_sparse of this process
    monkeypatch.setenv("PYTHONPATH", child_python()["env"]["PYTHONPATH"])
    out = tmp_path / "distributed.json"
    assert bench_distributed.main(["--ranks", "2", "--samples", "384", "--hidden", "48",
                                   "--epochs", "1", "--rounds", "1", "--cosine-samples", "96",
                                   "--overlap", "--threads", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["label"] for r in doc["rows"]] == ["1 process, no MPI", "MPI, P = 1", "MPI, P = 2",
                                                 "MPI, P = 2, overlap"]
    assert all(r["first_loss_rel_diff"] <= bench_distributed.LOSS_RTOL for r in doc["rows"])
    assert {r["ranks"] for r in doc["scaling_model"]["rows"]} == set(bench_distributed.MODEL_RANKS)
    capsys.readouterr()
    assert bench_distributed.main(["--render", str(out)]) == 0
    assert "| MPI, P = 2, overlap |" in capsys.readouterr().out


def test_regrowth_survival(capsys):
    """Three epochs of digits: two updates, so the first one's picks meet the second."""
    mod = bench("regrowth_survival")
    from ctre_sparse import ops
    from ctre_sparse.topology import updater

    plain = (ops.insert, updater.TopologyUpdater._update_layer)
    assert mod.main(["--dataset", "digits", "--growth", "ctre_sim", "--epochs", "3"]) == 0
    assert (ops.insert, updater.TopologyUpdater._update_layer) == plain   # patches undone
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["epochs"] == 3 and set(out["per_layer"]) == {"0", "1", "2", "3"}
    assert 0.0 <= out["informed"] <= 1.0
