"""The native extension: availability, graceful fallback, every ISA path vs the reference.

The general kernel-vs-reference grid lives in test_spmm.py & co.; here: what
only the native backend has (SIMD code paths chosen at run time, cache-line
alignment of the loads, the dispatch counter, thread control) and what happens
when the extension is missing.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ctre_sparse import ops
from ctre_sparse.backends import backend_status, native
from conftest import child_python
from ctre_sparse.testing import assert_allclose, random_csr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILT = native.unavailable_reason() is None
needs_ext = pytest.mark.skipif(not BUILT, reason="native extension not built "
                               "(python setup.py build_ext --inplace)")


def _isas():
    return native.extension().supported_isas() if BUILT else []


@pytest.fixture(params=_isas() or [pytest.param("none", marks=pytest.mark.skip(
    reason="native extension not built"))])
def isa(request):
    previous = native.extension().isa()
    native.extension().set_isa(request.param)
    yield request.param
    native.extension().set_isa(previous)


def _shifted(arr, shift):
    """A copy of ``arr`` whose data starts ``shift`` elements after a 64-byte line."""
    flat = np.empty(arr.size + 64, dtype=arr.dtype)
    start = (-flat.ctypes.data % 64) // arr.itemsize + shift
    out = flat[start:start + arr.size].reshape(arr.shape)
    out[...] = arr
    return out


@needs_ext
def test_native_reported_available():
    assert backend_status()["native"] is None
    assert native.unavailable_reason() is None
    assert native.isa() in ("generic", "avx2", "avx512")
    assert "generic" in native.extension().supported_isas()


@needs_ext
def test_best_isa_is_the_active_one_and_counted():
    nat = native.extension()
    assert nat.isa() == nat.best_isa() or os.environ.get("CTRE_SPARSE_ISA")
    W = random_csr(30, 20, 0.3, seed=1)
    X = np.ones((20, 16), np.float32)
    before = nat.isa_calls()[nat.isa()]
    ops.spmm(W, X, backend="native")
    assert nat.isa_calls()[nat.isa()] == before + 1


@needs_ext
def test_set_isa_rejects_unknown():
    with pytest.raises(ValueError, match="isa must be"):
        native.extension().set_isa("sse9")


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 5, 16, 33, 128, 144, 256, 400])
@pytest.mark.parametrize("shift", [0, 1, 4, 12])
def test_products_every_isa_alignment_and_batch(isa, dtype, batch, shift):
    W = random_csr(70, 50, 0.15, dtype=dtype, index_dtype=np.int64, seed=batch)
    rng = np.random.default_rng(shift)
    X = _shifted(rng.standard_normal((50, batch)).astype(dtype), shift)
    G = _shifted(rng.standard_normal((70, batch)).astype(dtype), shift)
    out_y = _shifted(np.full((70, batch), np.nan, dtype), (shift + 3) % 16)
    dense = W.toarray().astype(np.float64)
    scale = np.sqrt(batch)
    got = ops.spmm(W, X, out=out_y, backend="native")
    assert got is out_y
    assert_allclose(got, dense @ X, dtype=dtype, scale=scale)
    assert_allclose(ops.spmm_t(W, G, backend="native"), dense.T @ G, dtype=dtype, scale=scale)
    rows = W.row_indices()
    expect = np.einsum("ij,ij->i", G[rows].astype(np.float64), X[W.indices].astype(np.float64))
    assert_allclose(ops.sddmm(W, G, X, backend="native"), expect, dtype=dtype, scale=scale)


@needs_ext
def test_cosine_and_topology_every_isa(isa):
    rng = np.random.default_rng(3)
    W = random_csr(40, 30, 0.2, dtype=np.float64, seed=4)
    A = np.round(rng.standard_normal((30, 9)))  # ties in the scores
    B = np.round(rng.standard_normal((40, 9)))
    A[2] = 0.0
    for k in (1, 17, 40 * 30):
        got = ops.topk_cosine(A, B, k, exclude=W, block_bytes=200, backend="native")
        want = ops.topk_cosine(A, B, k, exclude=W, block_bytes=200, backend="reference")
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    r, c = rng.integers(0, 30, 500), rng.integers(0, 40, 500)
    assert_allclose(ops.cosine_pairs(A, B, r, c, backend="native"),
                    ops.cosine_pairs(A, B, r, c, backend="reference"))


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_exact_over_threads_and_blocks(dtype):
    # several blocks, each scanned by several threads; quantized activations make
    # many equal scores, so the (score, row, col) tie rule is exercised
    rng = np.random.default_rng(7)
    W = random_csr(300, 257, 0.05, dtype=dtype, seed=8)
    A = np.round(rng.standard_normal((257, 6))).astype(dtype)
    B = np.round(rng.standard_normal((300, 6))).astype(dtype)
    for k in (1, 999, 5000, 300 * 257):
        got = ops.topk_cosine(A, B, k, exclude=W, block_bytes=100 * 257 * 8, backend="native")
        want = ops.topk_cosine(A, B, k, exclude=W, block_bytes=100 * 257 * 8,
                               backend="reference")
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    assert got[0].shape[0] == 300 * 257 - W.nnz


@needs_ext
def test_threads_roundtrip():
    n = native.get_num_threads()
    try:
        native.set_num_threads(1)
        assert native.get_num_threads() == 1
        W = random_csr(300, 200, 0.1, seed=2)
        X = np.random.default_rng(0).standard_normal((200, 64)).astype(np.float32)
        assert_allclose(ops.spmm(W, X, backend="native"), ops.spmm(W, X, backend="reference"),
                        scale=8)
    finally:
        native.set_num_threads(n)
    with pytest.raises(ValueError, match=">= 1"):
        native.set_num_threads(0)


@needs_ext
def test_bindings_refuse_wrong_dtypes_instead_of_copying():
    W = random_csr(5, 4, 0.5, seed=0)
    X = np.ones((4, 3), np.float32)
    out64 = np.empty((5, 3), np.float64)  # a silently converted copy would lose the result
    with pytest.raises(TypeError, match="dtype"):
        native.extension().spmm(W.indptr, W.indices, W.data, X, out64)
    with pytest.raises(ValueError, match="out must have shape"):
        native.extension().spmm(W.indptr, W.indices, W.data, X, np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        native.extension().spmm(W.indptr, W.indices, W.data, np.ones((3, 4), np.float32).T,
                            np.empty((5, 3), np.float32)[:, :3])


_FALLBACK_SCRIPT = textwrap.dedent("""
    import json, logging, sys
    sys.modules["ctre_sparse._native"] = None  # the import of the extension fails
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)
    logging.getLogger("ctre_sparse").addHandler(Keep(level=logging.WARNING))
    logging.getLogger("ctre_sparse").setLevel(logging.WARNING)
    import numpy as np
    import ctre_sparse
    from ctre_sparse import ops
    from ctre_sparse.backends import backend_status, select_backend
    from ctre_sparse.testing import random_csr
    W = random_csr(50, 40, 0.2, seed=0)
    X = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    G = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    ok = []
    for _ in range(3):
        ok.append(bool(np.allclose(ops.spmm(W, X), W.toarray() @ X, atol=1e-4)))
        ok.append(bool(np.allclose(ops.spmm_t(W, G), W.toarray().T @ G, atol=1e-4)))
    print(json.dumps({
        "reason": backend_status()["native"],
        "auto": select_backend("auto", X).NAME,
        "numba_ok": backend_status()["numba"] is None,
        "ok": all(ok),
        "warnings": [r.getMessage() for r in records],
    }))
""")


def test_missing_extension_falls_back_with_one_warning():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["reason"] and "ctre_sparse._native" in res["reason"]
    assert res["auto"] == ("numba" if res["numba_ok"] else "reference")
    assert res["ok"]
    assert len(res["warnings"]) == 1, res["warnings"]
    assert "native extension unavailable" in res["warnings"][0]


def test_no_ext_env_skips_the_build():
    # setup.py must not declare the extension when CTRE_SPARSE_NO_EXT=1
    # pybind11 is a build requirement (pip puts it in the isolated build environment only):
    # without it here, a stand-in module declares the extension, so the switch is what is tested
    code = ("import sys, types, setuptools; captured = {}\n"
            "try:\n"
            "    import pybind11.setup_helpers\n"
            "except ImportError:\n"
            "    helpers = types.ModuleType('pybind11.setup_helpers')\n"
            "    helpers.Pybind11Extension = lambda name, sources, **kw: (name, sources)\n"
            "    sys.modules['pybind11'] = types.ModuleType('pybind11')\n"
            "    sys.modules['pybind11.setup_helpers'] = helpers\n"
            "setuptools.setup = lambda **kw: captured.update(kw)\n"
            "sys.argv = ['setup.py', '--version']\n"
            "exec(compile(open('setup.py').read(), 'setup.py', 'exec'), {'__file__': 'setup.py', "
            "'__name__': '__main__'})\n"
            "print(len(captured['ext_modules']))")
    for flag, expect in (("1", "0"), ("0", "1")):
        env = dict(os.environ, CTRE_SPARSE_NO_EXT=flag)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == expect


def test_spin_count_tuning_does_not_leak_or_override():
    code = ("import os, ctre_sparse.backends.native as n; "
            "print(os.environ.get('GOMP_SPINCOUNT'), n.unavailable_reason() is None)")
    child = child_python()
    child["env"].pop("GOMP_SPINCOUNT", None)
    child["env"].pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, **child)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "None"  # set only while libgomp loads
    child["env"]["GOMP_SPINCOUNT"] = "12345"  # a user's own setting is kept
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, **child)
    assert out.stdout.split()[0] == "12345"


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [16, 128, 1000, 1024])
def test_sddmm_bits_do_not_depend_on_alignment(isa, dtype, batch):
    # the same seed must give the same bits whatever address numpy gives the batch buffers:
    # the horizontal sums of sddmm once grouped columns by X's cache lines, so shifting X or G
    # by a few elements changed the rounding (batch 128 and 1024, AVX-512)
    W = random_csr(60, 40, 0.2, dtype=dtype, seed=batch)
    rng = np.random.default_rng(batch)
    G = rng.standard_normal((60, batch)).astype(dtype)
    X = rng.standard_normal((40, batch)).astype(dtype)
    results = [ops.sddmm(W, _shifted(G, sg), _shifted(X, sx), backend="native")
               for sg in (0, 1, 4, 8) for sx in (0, 1, 4, 8)]
    for got in results[1:]:
        assert np.array_equal(got, results[0])
