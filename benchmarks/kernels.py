"""The kernel benchmark: spmm, spmm_t and sddmm, our backends beside their peers.

Grid (default): square layers ``n_out = n_in = n`` for n in {1024, 4096,
16384}, density in {0.1%, 1%, 4%}, batch in {32, 128, 512}, float32; plus a
"fixed nnz per row" series (41 nonzeros per row, batch 128, same n) that
holds the work per row constant while n grows. ``quick`` is a subset
(n in {1024, 4096}, density 1%, batch 128) that runs in well under a minute.

For every case and op, each competitor (see :mod:`benchmarks.peers`)
is first checked against the reference backend, then timed
(:func:`benchmarks.harness.time_call`). A mismatch marks the record
``failed`` and it gets no timing. Usage::

    python benchmarks/bench_kernels.py --quick
    python benchmarks/bench_kernels.py --json docs/results/bench_kernels_cpu.json
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ctre_sparse import ops
from ctre_sparse.backends import BackendUnavailableError, available_backends
from ctre_sparse.sparse import CSRMatrix
from . import harness
from .machine import machine_block, usable_cores
from .peers import (DEFAULT_DENSE_CAP_BYTES, PEER_NAMES, Operands, SkipCase, make_runner,
                    peer_available)

logger = logging.getLogger(__name__)

__all__ = ["OPS", "KernelBenchConfig", "Case", "build_cases", "default_competitors",
           "run_kernel_bench", "format_table", "key_figures", "add_arguments",
           "config_from_args", "main"]

OPS = ("spmm", "spmm_t", "sddmm")
FULL_GRID = {"sizes": (1024, 4096, 16384), "densities": (0.001, 0.01, 0.04),
             "batches": (32, 128, 512)}
#: A checked call slower than this (seconds) is warm-up enough: no extra warm-up call.
_LONG_CALL_S = 1.0
QUICK_GRID = {"sizes": (1024, 4096), "densities": (0.01,), "batches": (128,)}


@dataclass(frozen=True)
class KernelBenchConfig:
    """What to measure and how. ``backends=None`` means our fast backends plus all peers."""

    ops: tuple = OPS
    sizes: tuple = FULL_GRID["sizes"]
    densities: tuple = FULL_GRID["densities"]
    batches: tuple = FULL_GRID["batches"]
    fixed_nnz_per_row: int = 41
    fixed_batch: int = 128
    dtype: str = "float32"
    device: str = "cpu"
    backends: tuple = None
    max_repeat: int = 20
    min_time: float = 0.2
    warmup: int = 1
    seed: int = 0
    pause: float = 0.05
    threads: int = None
    dense_cap_bytes: int = DEFAULT_DENSE_CAP_BYTES
    max_case_gflop: float = None

    @classmethod
    def quick(cls, **kw):
        """The quick subset (n in {1024, 4096}, density 1%, batch 128)."""
        return cls(**{**QUICK_GRID, **kw})


@dataclass(frozen=True)
class Case:
    """One matrix and batch: ``series`` is "grid" or "fixed_nnz_per_row"."""

    series: str
    n: int
    nnz: int
    batch: int
    density: float = field(default=None)

    @property
    def label(self):
        return f"n={self.n} nnz/row={self.nnz / self.n:.1f} batch={self.batch}"


def build_cases(config):
    """The list of cases of ``config``, grouped so that one matrix serves its batches.

    The small fixed-nnz-per-row series comes first and the grid runs from the
    cheapest cases to the most expensive, so a run cut short keeps the most.
    """
    cases = []
    if config.fixed_nnz_per_row:
        k = int(config.fixed_nnz_per_row)
        for n in config.sizes:
            if k <= n:
                cases.append(Case("fixed_nnz_per_row", n, k * n, config.fixed_batch, k / n))
    for n in config.sizes:
        for d in config.densities:
            nnz = int(round(float(d) * n * n))
            cases += [Case("grid", n, nnz, b, float(d)) for b in config.batches
                      if not _too_big(config, n, b)]
    return cases


def _too_big(config, n, batch):
    """True when the dense-equivalent product ``2 n^2 batch`` exceeds ``max_case_gflop``."""
    return config.max_case_gflop is not None and 2.0 * n * n * batch / 1e9 > config.max_case_gflop


def left_out(config):
    """``(n, batch)`` pairs of the grid that ``max_case_gflop`` leaves out."""
    return [(n, b) for n in config.sizes for b in config.batches if _too_big(config, n, b)]


def default_competitors(device="cpu"):
    """Our fast backends on ``device`` (not ``reference``) followed by the peers available."""
    ours = [b for b in available_backends(device) if b != "reference"]
    peers = [p for p in PEER_NAMES if peer_available(p, device) is None]
    return ours + peers


# ------------------------------------------------------------------ threads
def _thread_setters():
    """``{name: (get, set)}`` for the thread pools we control directly (not BLAS)."""
    from ctre_sparse.backends import backend_status, get_backend

    setters = {}
    try:
        import numba

        cap = numba.config.NUMBA_NUM_THREADS
        setters["numba"] = (numba.get_num_threads, lambda n: numba.set_num_threads(min(n, cap)))
    except Exception as exc:  # numba is a dependency; report rather than crash
        logger.warning("cannot control numba threads: %s", exc)
    if backend_status()["native"] is None:
        native = get_backend("native")
        if hasattr(native, "set_num_threads") and hasattr(native, "get_num_threads"):
            setters["native"] = (native.get_num_threads, native.set_num_threads)
    if peer_available("torch") is None:
        import torch

        setters["torch"] = (torch.get_num_threads, torch.set_num_threads)
    return setters


@contextlib.contextmanager
def thread_limits(threads):
    """Run numba, the native backend, torch and BLAS with ``threads`` threads; restore after."""
    setters = _thread_setters()
    before = {name: get() for name, (get, _) in setters.items()}
    try:
        for _, set_ in setters.values():
            set_(threads)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            logger.warning("threadpoolctl missing: BLAS thread count not controlled")
            yield
            return
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        for name, (_, set_) in setters.items():
            set_(before[name])


# ------------------------------------------------------------------ operands
def make_matrix(case, dtype, seed):
    """Seeded W (n x n, ``case.nnz`` standard normal values); independent of the batch."""
    rng = np.random.default_rng([seed, case.n, case.nnz])
    return CSRMatrix.random(case.n, case.n, nnz=case.nnz, random_state=rng, dtype=dtype,
                            values="normal")


def make_operands(case, dtype, seed, device="cpu", W=None):
    """Seeded W (unless given), X and G (n x batch), on ``device``."""
    if W is None:
        W = make_matrix(case, dtype, seed)
    rng_b = np.random.default_rng([seed, case.n, case.nnz, case.batch])
    X = rng_b.standard_normal((case.n, case.batch)).astype(dtype)
    G = rng_b.standard_normal((case.n, case.batch)).astype(dtype)
    if device == "cuda":
        import cupy

        return Operands(W.to_device("cuda"), cupy.asarray(X), cupy.asarray(G), "cuda")
    return Operands(W, X, G, "cpu")


def reference_result(op, operands):
    """The reference backend's answer (NumPy), the oracle every competitor must match."""
    W = operands.W.to_device("cpu")
    X, G = (harness.as_numpy(a) for a in (operands.X, operands.G))
    if op == "spmm":
        return ops.spmm(W, X, backend="reference")
    if op == "spmm_t":
        return ops.spmm_t(W, G, backend="reference")
    return ops.sddmm(W, G, X, backend="reference")


# ------------------------------------------------------------------ measuring
def _base_record(case, op, name, config, W):
    return {"series": case.series, "op": op, "backend": name, "device": config.device,
            "n_out": W.n_out, "n_in": W.n_in, "density": case.density,
            "nnz_per_row": W.nnz / W.n_out, "batch": case.batch, "dtype": config.dtype,
            "index_dtype": str(W.index_dtype), "nnz": W.nnz, "median_s": None, "min_s": None,
            "max_s": None, "n_repeats": 0, "gflops": None, "dense_gflops": None,
            "ns_per_nnz": None, "check_error": None, "status": "ok", "note": ""}


def measure(name, op, case, operands, expected, config):
    """Check then time competitor ``name`` on one op; returns its record."""
    rec = _base_record(case, op, name, config, operands.W)
    try:
        runner = make_runner(name, op, operands, dense_cap_bytes=config.dense_cap_bytes)
        rec["note"] = runner.note
        t0 = time.perf_counter()
        result = runner.fn()  # the checked call is also the first warm-up (JIT compiles here)
        if runner.sync:
            runner.sync()
        first_s = time.perf_counter() - t0
        rec["check_error"] = harness.check_result(result, expected, config.dtype,
                                                  what=f"{name} {op}")
        del result
        time.sleep(config.pause)  # let other pools' spinning threads (BLAS, OpenMP) go idle
        warmup = config.warmup if first_s < _LONG_CALL_S else 0
        timing = harness.time_call(runner.fn, warmup=warmup, min_time=config.min_time,
                                   max_repeat=config.max_repeat, sync=runner.sync)
    except (SkipCase, BackendUnavailableError) as exc:
        rec["status"] = f"skipped: {exc}"
        return rec
    except harness.ResultMismatchError as exc:
        logger.error("%s %s (%s): %s", name, op, case.label, exc)
        rec["status"] = f"failed: {exc}"
        return rec
    W = operands.W
    rec.update(median_s=timing.median_s, min_s=timing.min_s, max_s=timing.max_s,
               n_repeats=timing.n_repeats, ns_per_nnz=timing.median_s / max(W.nnz, 1) * 1e9,
               gflops=harness.gflops(W.nnz, case.batch, timing.median_s))
    if name == "dense":
        rec["dense_gflops"] = 2.0 * W.n_out * W.n_in * case.batch / timing.median_s / 1e9
    return rec


def _nothing_to_measure(device):
    from ctre_sparse.backends import backend_status

    raise RuntimeError(f"nothing to measure on device {device!r}: backend cuda: "
                       f"{backend_status()['cuda']}; peers: {peer_available('cusparse', device)}")


def run_kernel_bench(config, competitors=None, on_group=None):
    """Measure every case x op x competitor of ``config``.

    Parameters
    ----------
    config : KernelBenchConfig
    competitors : list of str, optional
        Defaults to ``config.backends`` or :func:`default_competitors`.
    on_group : callable, optional
        Called as ``on_group(records_of_one_case_and_op, done, total)`` after
        each case and op (progress output).

    Returns
    -------
    list of dict
        One record per case x op x competitor, ratio fields filled in,
        each with a ``machine`` block.
    """
    if config.device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {config.device!r}")
    unknown = [op for op in config.ops if op not in OPS]
    if unknown:
        raise ValueError(f"ops must be among {OPS}, got {unknown}")
    competitors = list(competitors or config.backends or default_competitors(config.device))
    if not competitors:
        _nothing_to_measure(config.device)
    threads = config.threads or usable_cores()
    config = replace(config, threads=threads)
    machine = machine_block(threads=threads, device=config.device)
    machine["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine["left_out_n_batch"] = left_out(config)
    cases = build_cases(config)
    total, done, records = len(cases) * len(config.ops), 0, []
    dtype = np.dtype(config.dtype)
    W, W_key = None, None
    with thread_limits(threads):
        for case in cases:
            if W_key != (case.n, case.nnz):  # one matrix serves all its batches
                W, W_key = None, None
                W, W_key = make_matrix(case, dtype, config.seed), (case.n, case.nnz)
            operands = make_operands(case, dtype, config.seed, config.device, W=W)
            for op in config.ops:
                expected = reference_result(op, operands)
                group = [measure(name, op, case, operands, expected, config)
                         for name in competitors]
                for rec in group:
                    rec["seed"], rec["machine"] = config.seed, machine
                records += group
                harness.add_ratios(records)
                done += 1
                if on_group:
                    on_group(group, done, total)
            del operands
    machine["loadavg_end"] = machine_block()["loadavg"]  # shared by every record
    return records


# ------------------------------------------------------------------ reporting
_OURS = ("native", "numba", "cuda", "reference")
_HEADER = (f"{'op':7} {'series':6} {'n':>6} {'density':>8} {'batch':>5} {'nnz':>9} "
           f"{'backend':9} {'median ms':>10} {'min ms':>9} {'GFLOP/s':>8} {'vs scipy':>8} {'vs torch':>8} "
           f"{'of dense':>8} {'t/spmm':>6}  status")


def _fmt(value, spec, suffix=""):
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_row(rec):
    """One table line for a record."""
    series = "grid" if rec["series"] == "grid" else "fixed"
    status = rec["status"] if rec["status"] == "ok" else rec["status"][:60]
    ms = None if rec["median_s"] is None else rec["median_s"] * 1e3
    min_ms = None if rec["min_s"] is None else rec["min_s"] * 1e3
    return (f"{rec['op']:7} {series:6} {rec['n_out']:>6} {rec['density']:>8.4f} "
            f"{rec['batch']:>5} {rec['nnz']:>9} {rec['backend']:9} {_fmt(ms, '10.3f')} {_fmt(min_ms, '9.3f')} "
            f"{_fmt(rec['gflops'], '8.2f')} {_fmt(rec['speedup_vs_scipy'], '7.2f', 'x')} "
            f"{_fmt(rec['speedup_vs_torch'], '7.2f', 'x')} "
            f"{_fmt(rec['fraction_of_dense'], '7.1%')} {_fmt(rec['time_vs_spmm'], '6.2f')}  "
            f"{status}")


def format_table(records):
    """The whole table (a header and one line per record) as a string."""
    return "\n".join([_HEADER] + [format_row(r) for r in records])


def _find(records, **where):
    return [r for r in records if all(r.get(k) == v for k, v in where.items())
            and r.get("status") == "ok"]


def _fixed_spread(records, backend, op):
    rows = _find(records, series="fixed_nnz_per_row", backend=backend, op=op)
    per_nnz = [r["ns_per_nnz"] for r in rows]
    if len(per_nnz) < 2:
        return None, None
    return max(per_nnz) / min(per_nnz), sorted(r["n_out"] for r in rows)


def key_figures(records, n=4096, density=0.01, batch=128):
    """The issue's targets at one case, for the fastest of our backends on spmm.

    Returns
    -------
    dict or None
        ``{"case", "best", "figures": [(name, value, target, met)]}``;
        ``met`` is None when the value was not measured. None when none of
        our backends has an spmm record at this case.
    """
    at = {"series": "grid", "n_out": n, "density": density, "batch": batch}
    spmm = [r for r in _find(records, op="spmm", **at) if r["backend"] in _OURS]
    if not spmm:
        return None
    best = min(spmm, key=lambda r: r["median_s"])
    name = best["backend"]

    def ratio(op):
        rows = _find(records, op=op, backend=name, **at)
        return rows[0]["time_vs_spmm"] if rows else None

    spread, sizes = _fixed_spread(records, name, "spmm")
    figures = [
        ("spmm speedup vs scipy", best["speedup_vs_scipy"], (">=", 3.0)),
        ("spmm speedup vs torch CSR", best["speedup_vs_torch"], (">=", 1.5)),
        ("sddmm time / spmm time", ratio("sddmm"), ("<=", 1.5)),
        ("spmm_t time / spmm time", ratio("spmm_t"), ("<=", 1.3)),
        (f"spmm time per nonzero, max/min over n={sizes} at fixed nnz/row", spread, ("<=", 1.3)),
        ("spmm GFLOP/s / dense sgemm GFLOP/s", best["fraction_of_dense"], (">=", 0.25)),
    ]
    out = []
    for label, value, (cmp, bound) in figures:
        met = None if value is None else (value >= bound if cmp == ">=" else value <= bound)
        out.append((label, value, f"{cmp} {bound:g}", met))
    return {"case": at, "best": name, "spmm_gflops": best["gflops"], "figures": out}


def format_key_figures(figs):
    """Readable lines for :func:`key_figures`' result."""
    if figs is None:
        return "key figures: none of our backends measured spmm at n=4096, density 1%, batch 128"
    c = figs["case"]
    lines = [f"key figures at n={c['n_out']}, density={c['density']}, batch={c['batch']} "
             f"(fastest of ours on spmm: {figs['best']}, {figs['spmm_gflops']:.2f} GFLOP/s):"]
    for label, value, target, met in figs["figures"]:
        verdict = "not measured" if met is None else ("met" if met else "MISSED")
        lines.append(f"  {label:<62} {_fmt(value, '8.3f')}  target {target:<7} {verdict}")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
def _csv(kind):
    def parse(text):
        try:
            return tuple(kind(t) for t in text.split(",") if t.strip())
        except ValueError as exc:
            raise ValueError(f"expected a comma-separated list of {kind.__name__}, "
                             f"got {text!r}") from exc
    return parse


def add_arguments(parser):
    """Add the kernel benchmark's options to an argparse parser."""
    parser.add_argument("--quick", action="store_true",
                        help="small subset: n in {1024, 4096}, density 1%%, batch 128")
    parser.add_argument("--json", metavar="PATH", help="write the records to PATH (a JSON list)")
    parser.add_argument("--ops", type=_csv(str), default=OPS, help="comma list (default: all)")
    parser.add_argument("--backends", type=_csv(str), default=None,
                        help="comma list of our backends and peers (scipy, torch, dense, "
                             "cusparse); default: our fast backends and every peer available")
    parser.add_argument("--repeat", type=int, default=20, help="most timed calls per case")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds of timed calls to aim for per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--sizes", type=_csv(int), default=None, help="override n values")
    parser.add_argument("--densities", type=_csv(float), default=None, help="override densities")
    parser.add_argument("--batches", type=_csv(int), default=None, help="override batch sizes")
    parser.add_argument("--fixed-nnz-per-row", type=int, default=41,
                        help="nnz per row of the fixed-work series (0: leave it out)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every backend and peer (default: usable cores)")
    parser.add_argument("--dense-cap-gib", type=float, default=DEFAULT_DENSE_CAP_BYTES / 2**30,
                        help="skip the dense peer when an n x n array exceeds this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-case-gflop", type=float, default=None,
                        help="leave out grid cases whose dense-equivalent product 2*n*n*batch "
                             "exceeds this many GFLOP (to bound the run time)")
    parser.add_argument("--pause", type=float, default=0.05,
                        help="seconds to sleep before timing each competitor (idle thread pools)")
    return parser


def config_from_args(args):
    """Build a :class:`KernelBenchConfig` from parsed arguments."""
    grid = dict(QUICK_GRID if args.quick else FULL_GRID)
    for key in ("sizes", "densities", "batches"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    if args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    return KernelBenchConfig(
        ops=tuple(args.ops), fixed_nnz_per_row=args.fixed_nnz_per_row, dtype=args.dtype,
        device=args.device, backends=tuple(args.backends) if args.backends else None,
        max_repeat=args.repeat, min_time=args.min_time, warmup=args.warmup, seed=args.seed,
        pause=args.pause, max_case_gflop=args.max_case_gflop,
        threads=args.threads, dense_cap_bytes=int(args.dense_cap_gib * 2**30), **grid)


def run_from_args(args, stream=None):
    """Run the benchmark for parsed arguments, printing progress; returns the exit code."""
    stream = stream or sys.stdout
    config = config_from_args(args)
    competitors = list(config.backends or default_competitors(config.device))
    if not competitors:
        _nothing_to_measure(config.device)
    for n, b in left_out(config):
        print(f"left out (--max-case-gflop {config.max_case_gflop:g}): n={n}, batch={b}",
              file=stream)
    n_cases = len(build_cases(config)) * len(config.ops)
    print(f"kernel benchmark: {n_cases} case x op groups, competitors {competitors}, "
          f"{config.dtype}, device {config.device}", file=stream)
    load = machine_block()["loadavg"]
    if load and load[0] > 0.5:
        print(f"WARNING: load average {load[0]:.2f} before starting: other processes share "
              "the CPU and the timings will be noisy", file=stream)
    print(_HEADER, file=stream, flush=True)

    so_far = []

    def progress(group, done, total):
        for rec in group:
            print(format_row(rec), file=stream)
        print(f"  [{done}/{total}]", file=stream, flush=True)
        so_far.extend(group)
        if args.json:  # a run cut short still leaves what it measured
            harness.write_json(so_far, args.json)

    t0 = time.perf_counter()
    records = run_kernel_bench(config, competitors, on_group=progress)
    print(f"done in {time.perf_counter() - t0:.1f} s", file=stream)
    print(format_key_figures(key_figures(records)), file=stream)
    if args.json:
        harness.write_json(records, args.json)
        print(f"wrote {len(records)} records to {args.json}", file=stream)
    failed = [r for r in records if r["status"].startswith("failed")]
    if failed:
        print(f"{len(failed)} result check(s) FAILED", file=stream)
    return 1 if failed else 0


def main(argv=None):
    """Entry point of ``benchmarks/bench_kernels.py``; returns the exit code (1 with a one-line error)."""
    return harness.command_main(__doc__, add_arguments, run_from_args, argv)
