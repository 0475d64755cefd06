"""The benchmark machinery: timing, GFLOP/s, the reference check, ratios, JSON, plots.

No speed is asserted here: only that the numbers are computed and recorded right.
"""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ctre_sparse import backends
from ctre_sparse.backends import reference
from benchmarks import harness, kernels, peers

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--sizes", "64", "--densities", "0.05", "--batches", "8", "--fixed-nnz-per-row", "0",
             "--repeat", "1", "--min-time", "0", "--pause", "0", "--threads", "1"]

TINY = dict(sizes=(64,), densities=(0.05,), batches=(8,), fixed_nnz_per_row=4,
            max_repeat=2, min_time=0.0, pause=0.0, threads=1)
REQUIRED = ("op", "backend", "n_out", "n_in", "density", "batch", "dtype", "nnz", "median_s",
            "gflops", "speedup_vs_scipy", "speedup_vs_torch", "fraction_of_dense",
            "time_vs_spmm", "status", "machine")


def fake_clock(step_times):
    """A clock whose successive differences (end - start) are ``step_times``."""
    state = {"t": 0.0, "i": 0, "start": True}

    def clock():
        if state["start"]:
            state["start"] = False
        else:
            state["t"] += step_times[state["i"]]
            state["i"] += 1
            state["start"] = True
        return state["t"]
    return clock


# ----------------------------------------------------------------- harness
def test_gflops_known_values():
    assert harness.gflops(1_000_000, 100, 0.1) == pytest.approx(2.0)
    assert harness.gflops(10, 3, 2e-9) == pytest.approx(30.0)
    assert harness.gflops(10, 3, 0.0) is None


def test_time_call_warmup_sync_and_median():
    calls, syncs = [], []
    t = harness.time_call(lambda: calls.append(1), warmup=2, min_time=0.0, max_repeat=5,
                          min_repeat=3, sync=lambda: syncs.append(1),
                          clock=fake_clock([0.3, 0.1, 0.2]))
    assert len(calls) == 2 + 3
    assert t.n_repeats == 3 and t.n_warmup == 2
    assert t.median_s == pytest.approx(0.2)
    assert t.min_s == pytest.approx(0.1) and t.max_s == pytest.approx(0.3)
    assert len(syncs) >= len(calls)  # synchronized after every call


def test_time_call_stops_at_min_time_or_max_repeat():
    t = harness.time_call(lambda: None, warmup=0, min_time=1.0, max_repeat=50, min_repeat=1,
                          clock=fake_clock([0.4] * 50))
    assert t.n_repeats == 3  # 0.4 + 0.4 + 0.4 >= 1.0
    t = harness.time_call(lambda: None, warmup=0, min_time=100.0, max_repeat=4,
                          clock=fake_clock([0.4] * 50))
    assert t.n_repeats == 4
    with pytest.raises(ValueError, match="max_repeat"):
        harness.time_call(lambda: None, max_repeat=0)


def test_check_result_tolerances():
    expected = np.linspace(-1, 1, 50, dtype=np.float32).reshape(5, 10)
    assert harness.check_result(expected + 1e-7, expected, np.float32) < 1e-6
    with pytest.raises(harness.ResultMismatchError, match="relative error"):
        harness.check_result(expected * 1.01, expected, np.float32)
    bad = expected.copy()
    bad[2, 3] = np.nan
    with pytest.raises(harness.ResultMismatchError):
        harness.check_result(bad, expected, np.float32)
    with pytest.raises(harness.ResultMismatchError):
        harness.check_result(expected.T, expected, np.float32)
    with pytest.raises(harness.ResultMismatchError):  # float64 is held much tighter
        harness.check_result(expected.astype(np.float64) * (1 + 1e-6),
                             expected.astype(np.float64), np.float64)


def test_add_ratios_from_known_times():
    base = dict(series="grid", n_out=10, n_in=10, nnz=20, batch=4, dtype="float32",
                device="cpu", status="ok")
    recs = [dict(base, op="spmm", backend="numba", median_s=1.0, gflops=2.0),
            dict(base, op="spmm", backend="scipy", median_s=3.0, gflops=0.5),
            dict(base, op="spmm", backend="torch", median_s=1.5, gflops=1.0),
            dict(base, op="spmm", backend="dense", median_s=4.0, gflops=0.1, dense_gflops=8.0),
            dict(base, op="sddmm", backend="numba", median_s=1.25, gflops=1.6),
            dict(base, op="sddmm", backend="scipy", median_s=None, gflops=None,
                 status="skipped: x")]
    harness.add_ratios(recs)
    numba_spmm, numba_sddmm = recs[0], recs[4]
    assert numba_spmm["speedup_vs_scipy"] == pytest.approx(3.0)
    assert numba_spmm["speedup_vs_torch"] == pytest.approx(1.5)
    assert numba_spmm["speedup_vs_dense"] == pytest.approx(4.0)
    assert numba_spmm["fraction_of_dense"] == pytest.approx(2.0 / 8.0)
    assert numba_spmm["speedup_vs_cusparse"] is None
    assert numba_sddmm["time_vs_spmm"] == pytest.approx(1.25)
    assert numba_sddmm["speedup_vs_scipy"] is None  # the peer was skipped
    assert recs[5]["time_vs_spmm"] is None


def test_write_json_is_strict(tmp_path):
    path = harness.write_json([{"a": float("nan"), "b": np.float32(1.5), "c": (1, 2)}],
                              tmp_path / "sub" / "r.json")
    text = open(path).read()
    assert json.loads(text) == [{"a": None, "b": 1.5, "c": [1, 2]}]
    with pytest.raises(ValueError, match="JSON list"):
        (tmp_path / "d.json").write_text('{"records": []}')
        harness.read_json(tmp_path / "d.json")


# ----------------------------------------------------------------- the benchmark
def test_quick_grid_contains_the_target_case():
    cfg = kernels.KernelBenchConfig.quick()
    cases = kernels.build_cases(cfg)
    assert any(c.series == "grid" and c.n == 4096 and c.density == 0.01 and c.batch == 128
               for c in cases)
    fixed = [c for c in kernels.build_cases(kernels.KernelBenchConfig())
             if c.series == "fixed_nnz_per_row"]
    assert [c.n for c in fixed] == [1024, 4096, 16384]
    assert all(c.nnz == 41 * c.n for c in fixed)


@pytest.mark.parametrize("op", kernels.OPS)
def test_measure_gflops_from_known_time(monkeypatch, op):
    cfg = kernels.KernelBenchConfig(**TINY)
    case = kernels.build_cases(cfg)[0]
    operands = kernels.make_operands(case, np.dtype(np.float32), 0)
    expected = kernels.reference_result(op, operands)
    monkeypatch.setattr(harness, "time_call",
                        lambda fn, **kw: harness.Timing(0.004, 0.003, 0.005, 3, 1))
    rec = kernels.measure("reference", op, case, operands, expected, cfg)
    assert rec["status"] == "ok"
    assert rec["median_s"] == 0.004
    assert rec["gflops"] == pytest.approx(2 * operands.W.nnz * case.batch / 0.004 / 1e9)
    assert rec["ns_per_nnz"] == pytest.approx(0.004 / operands.W.nnz * 1e9)


class _WrongBackend(types.ModuleType):
    """The reference backend with one op broken in a chosen way."""

    def __init__(self, op, how):
        super().__init__("wrong_backend")
        for name in ("spmm", "spmm_t", "sddmm"):
            setattr(self, name, getattr(reference, name))
        good = getattr(reference, op)

        def broken(*args):
            out = args[-1]
            if how == "drop_largest":  # drop the largest-magnitude weight (or the first dot)
                data_pos = {"spmm": 2, "spmm_t": 3}.get(op)
                if data_pos is not None:
                    args = list(args)
                    data = args[data_pos].copy()
                    data[np.argmax(np.abs(data))] = 0
                    args[data_pos] = data
                good(*args)
                if data_pos is None:
                    out[np.argmax(np.abs(out))] = 0
            elif how == "nan":
                good(*args)
                out.reshape(-1)[0] = np.nan
            else:  # "zeros": claim the work without doing it
                out[...] = 0
        setattr(self, op, broken)


@pytest.mark.parametrize("how", ["zeros", "drop_largest", "nan"])
@pytest.mark.parametrize("op", kernels.OPS)
def test_reference_check_catches_a_wrong_kernel(monkeypatch, op, how):
    monkeypatch.setitem(backends._loaded, "numba", (_WrongBackend(op, how), None))
    cfg = kernels.KernelBenchConfig(ops=(op,), **TINY)
    timed = []
    real_time_call = harness.time_call
    monkeypatch.setattr(harness, "time_call", lambda fn, **kw: timed.append(1) or
                        real_time_call(fn, **kw))
    records = kernels.run_kernel_bench(cfg, ["numba", "reference"])
    wrong = [r for r in records if r["backend"] == "numba"]
    right = [r for r in records if r["backend"] == "reference"]
    assert wrong and all(r["status"].startswith("failed") for r in wrong)
    assert all(r["median_s"] is None and r["gflops"] is None for r in wrong)
    assert right and all(r["status"] == "ok" for r in right)
    assert len(timed) == len(right)  # a failed competitor is never timed


def test_run_records_fields_and_valid_json(tmp_path):
    competitors = ["reference", "scipy", "dense"] + (
        ["torch"] if peers.peer_available("torch") is None else [])
    cfg = kernels.KernelBenchConfig(**TINY)
    records = kernels.run_kernel_bench(cfg, competitors)
    assert len(records) == len(kernels.build_cases(cfg)) * 3 * len(competitors)
    for rec in records:
        assert all(k in rec for k in REQUIRED), set(REQUIRED) - set(rec)
        assert rec["status"] == "ok", rec["status"]
        assert rec["gflops"] == pytest.approx(2 * rec["nnz"] * rec["batch"] / rec["median_s"] / 1e9)
        assert rec["machine"]["cores"] >= 1 and "numpy" in rec["machine"]["versions"]
    scipy_spmm = [r for r in records if r["backend"] == "scipy" and r["op"] == "spmm"]
    assert all(r["speedup_vs_scipy"] == pytest.approx(1.0) for r in scipy_spmm)
    dense = [r for r in records if r["backend"] == "dense"]
    assert all(r["dense_gflops"] > r["gflops"] for r in dense)  # density < 1
    path = harness.write_json(records, tmp_path / "bench.json")
    loaded = json.loads(open(path).read(), parse_constant=lambda c: pytest.fail(c))
    assert isinstance(loaded, list) and len(loaded) == len(records)
    assert loaded[0]["op"] == "spmm"
    assert "op" in kernels.format_table(records).splitlines()[0]


def test_dense_peer_skipped_above_the_memory_cap():
    cfg = kernels.KernelBenchConfig(ops=("spmm",), dense_cap_bytes=1024, **TINY)
    records = kernels.run_kernel_bench(cfg, ["dense", "scipy"])
    dense = [r for r in records if r["backend"] == "dense"]
    assert dense and all(r["status"].startswith("skipped") and "cap" in r["status"]
                         for r in dense)
    assert all(r["fraction_of_dense"] is None for r in records)


def test_unavailable_backend_is_skipped_with_reason(monkeypatch):
    monkeypatch.setitem(backends._loaded, "native", (None, "not compiled here"))
    cfg = kernels.KernelBenchConfig(ops=("spmm",), **TINY)
    recs = kernels.run_kernel_bench(cfg, ["native"])
    assert all("not compiled here" in r["status"] for r in recs)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="ops must be"):
        kernels.run_kernel_bench(kernels.KernelBenchConfig(ops=("gemm",), **TINY), ["scipy"])
    with pytest.raises(ValueError, match="device"):
        kernels.run_kernel_bench(kernels.KernelBenchConfig(device="tpu", **TINY), ["scipy"])
    with pytest.raises(ValueError, match="competitor"):
        peers.make_runner("mkl", "spmm", None)


def _synthetic(op, backend, t, n=4096, series="grid", **extra):
    nnz = 41 * n if series != "grid" else int(0.01 * n * n)
    rec = dict(series=series, op=op, backend=backend, n_out=n, n_in=n, density=0.01,
               batch=128, dtype="float32", device="cpu", nnz=nnz, median_s=t, status="ok",
               gflops=2 * nnz * 128 / t / 1e9, ns_per_nnz=t / nnz * 1e9)
    rec.update(extra)
    return rec


def test_key_figures_verdicts():
    recs = [_synthetic("spmm", "numba", 1.0), _synthetic("spmm", "scipy", 4.0),
            _synthetic("spmm", "torch", 1.2), _synthetic("sddmm", "numba", 1.4),
            _synthetic("spmm_t", "numba", 1.5),
            _synthetic("spmm", "dense", 2.0, dense_gflops=100.0)]
    recs += [_synthetic("spmm", "numba", 0.01 * n / 1024, n=n, series="fixed_nnz_per_row")
             for n in (1024, 4096)]
    harness.add_ratios(recs)
    figs = kernels.key_figures(recs)
    got = {label.split(",")[0]: (value, met) for label, value, _, met in figs["figures"]}
    assert figs["best"] == "numba"
    assert got["spmm speedup vs scipy"] == (pytest.approx(4.0), True)
    assert got["spmm speedup vs torch CSR"] == (pytest.approx(1.2), False)
    assert got["sddmm time / spmm time"] == (pytest.approx(1.4), True)
    assert got["spmm_t time / spmm time"] == (pytest.approx(1.5), False)
    spread = [v for k, v in got.items() if k.startswith("spmm time per nonzero")][0]
    assert spread == (pytest.approx(1.0), True)
    assert "MISSED" in kernels.format_key_figures(figs)
    assert kernels.key_figures([_synthetic("spmm", "scipy", 1.0)]) is None


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks.plot import plot_kernels

    cfg = kernels.KernelBenchConfig(ops=("spmm", "sddmm"), **TINY)
    records = kernels.run_kernel_bench(cfg, ["reference", "scipy"])
    path = plot_kernels(records, str(tmp_path / "fig" / "k.png"), batch=8)
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no successful"):
        plot_kernels(records, str(tmp_path / "x.png"), batch=999)


def test_markdown_report_and_update(tmp_path):
    from benchmarks import report

    cfg = kernels.KernelBenchConfig(**TINY)
    records = kernels.run_kernel_bench(cfg, ["reference", "scipy", "dense"])
    text = report.markdown_report(records, n=64, density=0.05, batch=8)
    assert "### Machine" in text and "| spmm | scipy |" in text
    assert "max/min" in text  # the fixed-nnz-per-row table
    assert "reference" in text.split("### Targets")[1].split("###")[0]
    doc = tmp_path / "b.md"
    doc.write_text(f"intro\n{report.START}\nold\n{report.END}\noutro\n")
    report.update_markdown(doc, "NEW")
    assert doc.read_text() == f"intro\n{report.START}\nNEW\n{report.END}\noutro\n"
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        report.update_markdown(doc, "NEW")


def test_gpu_report_targets_and_markers(tmp_path):
    from benchmarks import report

    def gpu_rec(op, backend, t, batch):
        return _synthetic(op, backend, t, n=16384, batch=batch, device="cuda")

    recs = []
    for batch, ours in ((128, 1.0), (1024, 3.0)):
        recs += [gpu_rec("spmm", "cuda", ours, batch), gpu_rec("spmm", "cusparse", 2.5, batch),
                 gpu_rec("spmm", "dense", 4.0, batch), gpu_rec("sddmm", "cuda", 1.0, batch),
                 gpu_rec("sddmm", "dense", 1.2, batch)]
    for r in recs:
        r["machine"] = {"gpu": {"available": True, "gpu": "NVIDIA H100", "memory_gib": 79.1,
                                "devices": 1, "cupy": "13.6.0", "cuda_runtime": 12080,
                                "cuda_driver": 12080}}
    harness.add_ratios(recs)
    text = report.gpu_markdown_report(recs)
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line
            for line in text.splitlines() if line.startswith("| sp") or line.startswith("| sd")}
    assert "| 2.50 | 2 |" in rows[("spmm", "128")] and rows[("spmm", "128")].endswith("met |")
    assert "**missed**" in rows[("spmm", "1024")]  # 2.5 / 3.0 < 2
    assert "dense cuBLAS product" in rows[("sddmm", "128")]
    assert "**missed**" in rows[("sddmm", "128")]  # 1.2x < 1.5x
    assert rows[("spmm", "256")].endswith("not measured |")
    assert "- GPU: NVIDIA H100 (79.1 GiB)" in text
    doc = tmp_path / "b.md"
    doc.write_text(f"{report.START}\ncpu\n{report.END}\n{report.GPU_START}\nold\n"
                   f"{report.GPU_END}\n")
    report.update_markdown(doc, text, report.GPU_START, report.GPU_END)
    assert "cpu" in doc.read_text() and "old" not in doc.read_text()
    assert "none (no GPU description" in report.gpu_line([_synthetic("spmm", "cuda", 1.0)])


def test_thread_limits_set_and_restore():
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    with kernels.thread_limits(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_max_case_gflop_leaves_out_the_largest_cases():
    cfg = kernels.KernelBenchConfig(max_case_gflop=100.0)
    assert kernels.left_out(cfg) == [(16384, 512)]
    grid = [c for c in kernels.build_cases(cfg) if c.series == "grid"]
    assert len(grid) == 27 - 3 and not any(c.n == 16384 and c.batch == 512 for c in grid)
    assert kernels.left_out(kernels.KernelBenchConfig()) == []


# ----------------------------------------------------------------- the script
def test_bench_kernels_tiny_run_writes_json(tmp_path, capsys):
    path = tmp_path / "k.json"
    rc = kernels.main(TINY_ARGS + ["--backends", "reference,scipy,dense", "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    records = json.loads(path.read_text())
    assert len(records) == 3 * 3  # 1 case x 3 ops x 3 competitors
    assert {r["op"] for r in records} == {"spmm", "spmm_t", "sddmm"}
    assert all(r["status"] == "ok" and r["gflops"] > 0 for r in records)
    assert "GFLOP/s" in out and "[3/3]" in out


def test_bench_kernels_ops_subset(tmp_path, capsys):
    path = tmp_path / "k.json"
    assert kernels.main(TINY_ARGS + ["--ops", "sddmm", "--backends", "scipy",
                                     "--json", str(path)]) == 0
    assert [r["op"] for r in json.loads(path.read_text())] == ["sddmm"]


def test_bench_kernels_bad_options(capsys):
    assert kernels.main(TINY_ARGS + ["--ops", "gemm", "--backends", "scipy"]) == 1
    assert "ops must be among" in capsys.readouterr().err
    assert kernels.main(TINY_ARGS + ["--repeat", "0"]) == 1
    with pytest.raises(SystemExit):
        kernels.main(TINY_ARGS + ["--sizes", "big"])


def test_the_script_runs_from_a_checkout(tmp_path):
    """benchmarks/bench_kernels.py as documented: run by path, from any folder."""
    path = tmp_path / "k.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_kernels.py"),
                           *TINY_ARGS, "--ops", "spmm", "--backends", "scipy", "--json",
                           str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["op"] for r in json.loads(path.read_text())] == ["spmm"]
