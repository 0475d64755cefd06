"""The CUDA backend without a GPU: every kernel compiles, and "unavailable" says why.

Every ``csrc/cuda/*.cu`` file is compiled by ``nvcc`` for sm_80 and sm_90 the
way CuPy will see it (local includes inlined by
:func:`ctre_sparse.backends.cuda.load_source`), with every template
instantiation the backend asks for (:func:`~ctre_sparse.backends.cuda.name_expressions`)
forced, so a kernel that does not compile fails here even on a machine with no
GPU. When an NVRTC library is found (``$CTRE_SPARSE_NVRTC``, ``$CUDA_HOME/lib64``
or the loader's path) the same text also goes through NVRTC, the compiler
``cupy.RawModule`` uses at run time. Running the kernels needs a GPU: the kernel
tests cover the ``cuda`` backend automatically where one is present.
"""

import concurrent.futures
import ctypes
import ctypes.util
import glob
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from ctre_sparse import ops
from ctre_sparse.backends import BackendUnavailableError, backend_status, select_backend
from ctre_sparse.backends import cuda as cuda_backend
from ctre_sparse.sparse import CSRMatrix
from ctre_sparse.testing import random_csr, random_dense, tolerance

from cuda_emu import NumpyAsCupy  # NumPy posing as CuPy (stable sorts; kernels replaced below)

ARCHS = ("sm_80", "sm_90")
STEMS = sorted(cuda_backend.KERNELS)


def _find_nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
            return os.path.join(home, "bin", "nvcc")
    return None


NVCC = _find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH, in $CUDA_HOME/bin "
                                "or /usr/local/cuda/bin: the CUDA kernels were NOT compile-checked")


def instantiation_source(stem):
    """``<stem>.cu`` as NVRTC gets it, plus a table taking the address of every instantiation."""
    names = cuda_backend.name_expressions(stem)
    table = "\n".join(f"    reinterpret_cast<const void*>(&{n})," for n in names)
    return (cuda_backend.load_source(stem) +
            f"\n// every instantiation the backend uses\nconst void* ctre_instances_{stem}[] = {{\n"
            f"{table}\n}};\n")


def _nvcc_compile(workdir, stem, arch):
    src = os.path.join(workdir, f"{stem}_{arch}.cu")
    cubin = os.path.join(workdir, f"{stem}_{arch}.cubin")
    with open(src, "w") as fh:
        fh.write(instantiation_source(stem))
    cmd = [NVCC, "-std=c++17", f"-arch={arch}", "--cubin", "-o", cubin, src]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return proc.returncode, " ".join(cmd) + "\n" + proc.stdout + proc.stderr, cubin


@pytest.fixture(scope="module")
def nvcc_results(tmp_path_factory):
    """Compile every (stem, arch) once, a few processes at a time (the whole grid in ~20 s)."""
    workdir = str(tmp_path_factory.mktemp("cuda_compile"))
    jobs = [(stem, arch) for arch in ARCHS for stem in STEMS]
    workers = max(1, min(len(jobs), os.cpu_count() or 1, 4))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {job: pool.submit(_nvcc_compile, workdir, *job) for job in jobs}
        return {job: f.result() for job, f in futures.items()}


def test_every_cu_file_is_registered():
    """A .cu file the backend does not know about would never be compile-checked."""
    on_disk = {os.path.basename(p)[:-3] for p in glob.glob(str(cuda_backend.source_dir() / "*.cu"))}
    assert on_disk == set(cuda_backend.KERNELS)


def test_name_expressions_cover_every_type_combination():
    assert len(cuda_backend.name_expressions("spmm")) == 2 * 2 * 2 * len(cuda_backend.VECTOR_WIDTHS)
    assert "ctre::sddmm_group<long long, double>" in cuda_backend.name_expressions("sddmm")
    assert "ctre::row_norms<float>" in cuda_backend.name_expressions("cosine")


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("stem", STEMS)
def test_nvcc_compiles_every_instantiation(nvcc_results, stem, arch):
    rc, log, cubin = nvcc_results[(stem, arch)]
    assert rc == 0, f"nvcc failed for {stem}.cu on {arch}:\n{log}"
    with open(cubin, "rb") as fh:
        kernels = set(re.findall(rb"\.text\.(_ZN4ctre[A-Za-z0-9_]+)", fh.read()))
    assert len(kernels) == len(cuda_backend.name_expressions(stem)), (
        f"{stem}.cu on {arch}: {len(kernels)} kernels in the cubin, expected "
        f"{len(cuda_backend.name_expressions(stem))}")


# -------------------------------------------------------------------- NVRTC
def _find_nvrtc():
    candidates = [os.environ.get("CTRE_SPARSE_NVRTC")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    candidates.append(ctypes.util.find_library("nvrtc"))
    for path in candidates:
        if path:
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def _nvrtc_compile(lib, source, name, names, options):
    """Compile with NVRTC as cupy.RawModule does; return (ok, log, lowered names)."""
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0,
                                  None, None) == 0
    try:
        for n in names:
            assert lib.nvrtcAddNameExpression(prog, n.encode()) == 0
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        rc = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        lowered = []
        if rc == 0:
            for n in names:
                out = ctypes.c_char_p()
                assert lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(out)) == 0
                lowered.append(out.value.decode())
        return rc == 0, log.value.decode(errors="replace"), lowered
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


NVRTC = _find_nvrtc()
# what cupy.RawModule adds to our options (CuPy 13/14, cupy/cuda/compiler.py), plus an arch
CUPY_ADDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space", "-arch=compute_80")


@pytest.mark.skipif(NVRTC is None, reason="no libnvrtc found (set CTRE_SPARSE_NVRTC=/path/to/"
                    "libnvrtc.so); the nvcc test above still checks the kernels compile")
@pytest.mark.parametrize("stem", STEMS)
def test_nvrtc_compiles_what_rawmodule_gets(stem):
    names = cuda_backend.name_expressions(stem)
    ok, log, lowered = _nvrtc_compile(NVRTC, cuda_backend.load_source(stem), f"{stem}.cu", names,
                                      cuda_backend.NVRTC_OPTIONS + CUPY_ADDED_OPTIONS)
    assert ok, f"NVRTC failed on {stem}.cu:\n{log}"
    assert len(set(lowered)) == len(names)


# ----------------------------------------------------------- sources and sizes
def test_load_source_inlines_local_includes_once(tmp_path):
    (tmp_path / "common.cuh").write_text("#pragma once\nint common_marker;\n")
    (tmp_path / "extra.cuh").write_text('#include "common.cuh"\nint extra_marker;\n')
    (tmp_path / "op.cu").write_text('#include "common.cuh"\n#include "extra.cuh"\nint op;\n')
    text = cuda_backend.load_source("op", tmp_path)
    assert text.count("common_marker") == 1 and "extra_marker" in text and "int op;" in text
    assert '#include "' not in text


def test_vector_width_covers_the_batch():
    for batch, width in [(1, 1), (32, 1), (33, 2), (64, 2), (65, 4), (128, 4), (129, 8),
                         (4096, 8)]:
        assert cuda_backend.vector_width(batch) == width


# ------------------------------------------------------------- availability
class _FakeRuntime:
    def __init__(self, count=None, error=None):
        self.count, self.error = count, error

    def getDeviceCount(self):  # noqa: N802 (CuPy's name)
        if self.error is not None:
            raise self.error
        return self.count


class _FakeCupy:
    def __init__(self, runtime):
        self.cuda = type("cuda", (), {"runtime": runtime})()


def test_reason_when_cupy_missing(monkeypatch):
    def missing():
        raise ImportError("No module named 'cupy'")

    monkeypatch.setattr(cuda_backend, "_import_cupy", missing)
    reason = cuda_backend.unavailable_reason()
    assert reason.startswith("CuPy is not installed") and "cupy-cuda12x" in reason


def test_reason_when_driver_fails(monkeypatch):
    fake = _FakeCupy(_FakeRuntime(error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device")))
    monkeypatch.setattr(cuda_backend, "_import_cupy", lambda: fake)
    reason = cuda_backend.unavailable_reason()
    assert reason.startswith("no CUDA device") and "cudaErrorNoDevice" in reason


def test_reason_when_zero_devices(monkeypatch):
    monkeypatch.setattr(cuda_backend, "_import_cupy", lambda: _FakeCupy(_FakeRuntime(count=0)))
    assert cuda_backend.unavailable_reason().startswith("no CUDA device")


def test_reason_when_sources_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(cuda_backend, "_import_cupy", lambda: _FakeCupy(_FakeRuntime(count=1)))
    monkeypatch.setattr(cuda_backend, "_source_candidates", lambda: [tmp_path])
    assert "sources not found" in cuda_backend.unavailable_reason()


def test_available_with_a_device_and_sources(monkeypatch):
    monkeypatch.setattr(cuda_backend, "_import_cupy", lambda: _FakeCupy(_FakeRuntime(count=1)))
    assert cuda_backend.unavailable_reason() is None


def test_cuda_backend_on_numpy_arrays_raises_clearly():
    status = backend_status()["cuda"]
    W = CSRMatrix.from_dense(np.eye(3, dtype=np.float32))
    X = np.ones((3, 2), dtype=np.float32)
    for call in (lambda: select_backend("cuda", X), lambda: ops.spmm(W, X, backend="cuda")):
        with pytest.raises((BackendUnavailableError, ValueError)) as info:
            call()
        if status is None:  # a GPU is here: the device mismatch is the error
            assert isinstance(info.value, ValueError) and "NumPy" in str(info.value)
        else:  # no GPU: the backend says why it cannot run
            assert isinstance(info.value, BackendUnavailableError)
            assert "'cuda' is not available" in str(info.value) and status in str(info.value)


# ------------------------------------- host-side algorithms, NumPy standing in for CuPy
@pytest.fixture
def numpy_cuda(monkeypatch):
    from ctre_sparse.backends import reference

    monkeypatch.setattr(cuda_backend, "_import_cupy", NumpyAsCupy)
    monkeypatch.setattr(cuda_backend, "row_norms", reference._row_norms)  # same rounding
    monkeypatch.setattr(cuda_backend, "_mask_block", lambda indptr, indices, r0, r1, n, S:
                        reference.mask_block(S, r0, r1, indptr, indices))
    return cuda_backend


@pytest.mark.parametrize("k", [0, 1, 7, 60, 10_000])
@pytest.mark.parametrize("block_rows", [1, 3, 40])
def test_topk_selection_matches_reference(numpy_cuda, k, block_rows):
    from ctre_sparse.backends import reference

    rng = np.random.default_rng(k + block_rows)
    # few distinct values, so ties are everywhere; zero rows score 0 with everything
    A = rng.integers(-2, 3, size=(23, 4)).astype(np.float64)
    B = rng.integers(-2, 3, size=(40, 4)).astype(np.float64)
    A[3] = 0.0
    W = CSRMatrix.random(40, 23, density=0.3, random_state=k, dtype=np.float64)
    got = numpy_cuda.topk_cosine(A, B, k, W.indptr, W.indices, block_rows)
    want = reference.topk_cosine(A, B, k, W.indptr, W.indices, block_rows)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_topk_sampled_threshold_path_is_exact(numpy_cuda, monkeypatch):
    """Blocks far larger than k go through the sampled pre-threshold; still exact."""
    from ctre_sparse.backends import reference

    monkeypatch.setattr(cuda_backend, "_TOPK_SAMPLE", 64)
    rng = np.random.default_rng(5)
    A = rng.standard_normal((300, 6)).astype(np.float32)
    B = rng.standard_normal((200, 6)).astype(np.float32)
    B[7] = B[9]  # exact ties between rows
    W = CSRMatrix.random(200, 300, density=0.05, random_state=1, dtype=np.float32)
    for k in (5, 100, 2000):
        got = numpy_cuda.topk_cosine(A, B, k, W.indptr, W.indices, 200)
        want = reference.topk_cosine(A, B, k, W.indptr, W.indices, 200)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_prune_and_insert_match_reference(numpy_cuda):
    from ctre_sparse.backends import reference

    rng = np.random.default_rng(3)
    W = CSRMatrix.random(30, 20, density=0.2, random_state=2,
                         values=lambda r, n: r.integers(-3, 4, n).astype(float))  # many ties
    for n_remove in (0, 1, 17, W.nnz):
        np.testing.assert_array_equal(
            numpy_cuda.prune_magnitude(W.indptr, W.indices, W.data, n_remove),
            reference.prune_magnitude(W.indptr, W.indices, W.data, n_remove))
    absent = np.flatnonzero(W.toarray().ravel() == 0)
    for m in (0, 1, 25):
        keys = rng.choice(absent, size=m, replace=False)
        rows, cols = keys // 20, keys % 20
        values = rng.standard_normal(m)
        got = numpy_cuda.insert(W.indptr, W.indices, W.data, rows, cols, values, 20)
        want = reference.insert(W.indptr, W.indices, W.data, rows, cols, values, 20)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
            assert g.dtype == w.dtype


def test_row_block_choice():
    assert not cuda_backend.use_row_blocks(100_000, 2_000_000, 4)  # many short rows: warp/row
    assert cuda_backend.use_row_blocks(100_000, 100_000 * 300, 4)  # long rows
    assert cuda_backend.use_row_blocks(10, 10 * 100, 4)  # 10-row output layer
    assert not cuda_backend.use_row_blocks(10, 10 * 5, 4)  # ... unless rows are tiny


# ------------------------- GPU-only: the launch paths the generic kernel tests may miss
_CUDA_STATUS = backend_status()["cuda"]
requires_gpu = pytest.mark.skipif(_CUDA_STATUS is not None,
                                  reason=f"needs the cuda backend ({_CUDA_STATUS})")


def _dense_product_bound(Wd, Xd, dtype):
    rtol, atol = tolerance(dtype)
    return rtol * (np.abs(Wd) @ np.abs(Xd)) + atol


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape,density,batch", [
    ((5, 3000), 0.5, 7),                    # few long rows: block per row
    ((2000, 300), 0.05, 300),               # V = 8 and two batch tiles
    ((40000, 20), 0.1, 33),                 # many short rows, V = 2
    ((64, 64), 0.2, 1),                     # batch 1
])
@pytest.mark.parametrize("cusparse", [False, True])
def test_gpu_products_on_every_launch_path(shape, density, batch, cusparse, dtype, index_dtype,
                                           monkeypatch):
    import cupy

    monkeypatch.setitem(cuda_backend.USE_CUSPARSE, "spmm", cusparse)
    monkeypatch.setitem(cuda_backend.USE_CUSPARSE, "spmm_t", cusparse)
    W = random_csr(*shape, density, dtype=dtype, index_dtype=index_dtype, seed=batch)
    X = random_dense(shape[1], batch, dtype=dtype, seed=1)
    G = random_dense(shape[0], batch, dtype=dtype, seed=2)
    Wg = W.to_device("cuda")
    Wd = W.toarray().astype(np.float64)
    Y = ops.spmm(Wg, cupy.asarray(X)).get()
    assert np.all(np.abs(Y - Wd @ X) <= _dense_product_bound(Wd, X, dtype))
    Z = ops.spmm_t(Wg, cupy.asarray(G)).get()
    assert np.all(np.abs(Z - Wd.T @ G) <= _dense_product_bound(Wd.T, G, dtype))
    S = ops.sddmm(Wg, cupy.asarray(G), cupy.asarray(X)).get()
    rows, cols = np.repeat(np.arange(W.n_out), np.diff(W.indptr)), W.indices
    Gr, Xc = G[rows].astype(np.float64), X[cols].astype(np.float64)
    rtol, atol = tolerance(dtype)
    bound = rtol * np.einsum("ij,ij->i", np.abs(Gr), np.abs(Xc)) + atol
    assert np.all(np.abs(S - np.einsum("ij,ij->i", Gr, Xc)) <= bound)


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("k", [1, 50, 5000])
def test_gpu_topk_exact_ties(k, dtype, index_dtype):
    """Scores exactly 0 or 1 (scaled one-hot rows): the tie rule must match bit for bit,
    through the sampled-threshold path (one block of 6e6 scores)."""
    import cupy

    from ctre_sparse.backends import reference

    rng = np.random.default_rng(k)
    S = 16
    A = np.zeros((3000, S), dtype=dtype)
    A[np.arange(3000), rng.integers(0, S, 3000)] = rng.integers(1, 8, 3000)
    B = np.zeros((2000, S), dtype=dtype)
    B[np.arange(2000), rng.integers(0, S, 2000)] = -rng.integers(1, 8, 2000)
    B[5] = 0.0
    W = CSRMatrix.random(2000, 3000, density=0.01, random_state=k, dtype=dtype,
                         index_dtype=index_dtype)
    rows, cols, scores = ops.topk_cosine(cupy.asarray(A), cupy.asarray(B), k,
                                         exclude=W.to_device("cuda"))
    want = reference.topk_cosine(A, B, k, W.indptr, W.indices, 2000)
    for got, ref in zip((rows, cols, scores), want):
        np.testing.assert_array_equal(got.get(), ref)


@requires_gpu
@pytest.mark.gpu
def test_gpu_cosine_pairs_any_int_dtype(dtype):
    import cupy

    from ctre_sparse.backends import reference

    rng = np.random.default_rng(0)
    A = rng.standard_normal((50, 300)).astype(dtype)
    B = rng.standard_normal((40, 300)).astype(dtype)
    B[3] = 0.0
    rows = rng.integers(0, 50, 1000).astype(np.uint32)
    cols = rng.integers(0, 40, 1000).astype(np.int16)
    got = ops.cosine_pairs(cupy.asarray(A), cupy.asarray(B), cupy.asarray(rows),
                           cupy.asarray(cols)).get()
    want = np.empty(1000, dtype=dtype)
    reference.cosine_pairs(A, B, rows, cols, want)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-13)
