"""The one test grid: value dtypes, index dtypes and the backends present here.

GPU cases appear only where CuPy finds a device. Import the lists from here
(``from conftest import ...`` works because pytest puts tests/ on sys.path).
"""

import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import ctre_sparse
from ctre_sparse.backends import available_backends

REPO_ROOT = str(Path(__file__).resolve().parents[1])
# the benchmarks are a package of the repository (not installed): appended, so that an
# installed ctre_sparse still comes first
sys.path.append(REPO_ROOT)

#: The folder holding the ctre_sparse this test process imported: site-packages for an
#: installed package, the checkout for an editable or in-place build.
PACKAGE_PARENT = str(Path(ctre_sparse.__file__).resolve().parents[1])


def child_python(*, benchmarks=False, **env):
    """``cwd`` and ``env`` for a child ``python -c`` that imports the same ctre_sparse as here.

    ``python -c`` puts its working folder first on ``sys.path``: run from the
    checkout, the child would import the source tree (without the compiled
    extension, when the package was installed with ``pip install .``).
    The child runs in :data:`PACKAGE_PARENT` instead, with the checkout
    appended for the ``benchmarks`` package when ``benchmarks`` is true.
    """
    path = [PACKAGE_PARENT] + ([REPO_ROOT] if benchmarks else [])
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {"cwd": PACKAGE_PARENT, "env": dict(os.environ, PYTHONPATH=os.pathsep.join(path), **env)}

DTYPES = [np.float32, np.float64]
INDEX_DTYPES = [np.int32, np.int64]
CPU_BACKENDS = available_backends("cpu")       # always includes "reference"
GPU_BACKENDS = available_backends("cuda")      # empty without a GPU
FAST_BACKENDS = [b for b in CPU_BACKENDS + GPU_BACKENDS if b != "reference"]
ALL_BACKENDS = CPU_BACKENDS + GPU_BACKENDS


def pytest_report_header(config):
    from ctre_sparse.backends import backend_status

    lines = []
    for name, reason in backend_status().items():
        lines.append(f"ctre_sparse backend {name}: " + ("available" if reason is None else
                                                         f"unavailable ({reason})"))
    return lines


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(params=INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
def index_dtype(request):
    return np.dtype(request.param)


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=FAST_BACKENDS or [pytest.param("none", marks=pytest.mark.skip(
    reason="no fast backend available on this machine"))])
def fast_backend(request):
    return request.param


def to_device(arr, backend_name):
    """Move a NumPy array to the device the backend runs on."""
    if backend_name == "cuda":
        import cupy

        return cupy.asarray(arr)
    return arr


def csr_to_device(W, backend_name):
    return W.to_device("cuda" if backend_name == "cuda" else "cpu")


def vm_hwm_kib():
    """Peak resident memory of this process (VmHWM, KiB), or None where /proc has no such line."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_hwm():
    """Reset VmHWM to the current resident size (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_within_memory(fn, *, traced_bytes, resident_bytes=None):
    """Run ``fn()``; assert its Python-heap peak (tracemalloc) and resident-set growth.

    The resident-set high-water mark (VmHWM) catches what tracemalloc cannot see
    (C++ and numba allocations); it is checked where ``resident_bytes`` is given
    and /proc allows resetting it. Returns ``(fn's result, seconds)``.
    """
    hwm_ok = reset_hwm()
    hwm0 = vm_hwm_kib()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    hwm1 = vm_hwm_kib()
    assert peak < traced_bytes, f"tracemalloc peak {peak / 2**20:.0f} MiB"
    if resident_bytes is not None and hwm_ok and hwm0 is not None:
        grown = (hwm1 - hwm0) * 1024
        assert grown < resident_bytes, f"resident set grew by {grown / 2**20:.0f} MiB"
    return result, elapsed


def to_host(arr):
    """A NumPy array from a NumPy or CuPy array."""
    return arr.get() if hasattr(arr, "get") else np.asarray(arr)


def call_topk(op, A, B, k, exclude, backend, **kw):
    """A top-k op (``topk_cosine``, ``topk_abs_product``, ...) on ``backend``'s device.

    Returns host ``(rows, cols, scores)`` after checking their dtypes (int64
    indices, scores of ``A``'s dtype).
    """
    ex = None if exclude is None else csr_to_device(exclude, backend)
    out = op(to_device(A, backend), to_device(B, backend), k, exclude=ex, backend=backend, **kw)
    rows, cols, scores = (to_host(a) for a in out)
    assert rows.dtype == np.int64 and cols.dtype == np.int64 and scores.dtype == A.dtype
    return rows, cols, scores


def assert_exact_topk(result, S, best_rows, best_cols, k, exclude_dense, tol):
    """A top-k result against its float64 dense oracle, exact up to ``tol``.

    ``S`` holds every pair's score; ``best_rows, best_cols`` are the absent
    pairs in (-score, row, col) order. Checked: the length, no excluded pair,
    no pair twice, the scores of the pairs returned and their optimality, the
    order (score descending, exact ties by (row, col)), and, where the
    oracle's scores are well separated, the oracle's very pair list.
    """
    rows, cols, scores = result
    m = min(k, best_rows.shape[0])
    assert rows.shape == cols.shape == scores.shape == (m,)
    if exclude_dense is not None and m:
        assert not np.any(exclude_dense[rows, cols] != 0), "an excluded pair was returned"
    assert len(set(zip(rows.tolist(), cols.tolist()))) == m, "a pair was returned twice"
    np.testing.assert_allclose(scores, S[rows, cols], rtol=0, atol=tol)
    np.testing.assert_allclose(scores, S[best_rows[:m], best_cols[:m]], rtol=0, atol=tol)
    assert np.all(np.diff(scores) <= 0)
    tie = np.flatnonzero(scores[1:] == scores[:-1])
    assert np.all((rows[tie] < rows[tie + 1]) |
                  ((rows[tie] == rows[tie + 1]) & (cols[tie] < cols[tie + 1])))
    top = S[best_rows[:m + 1], best_cols[:m + 1]]
    if m and np.all(np.abs(np.diff(top)) > 10 * tol):
        np.testing.assert_array_equal(rows, best_rows[:m])
        np.testing.assert_array_equal(cols, best_cols[:m])


def brute_cosine(A, B, exclude_dense=None):
    """Float64 |cos(B[r], A[c])| for all pairs, and the absent pairs in (-score, row, col) order."""
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    na, nb = np.linalg.norm(A64, axis=1), np.linalg.norm(B64, axis=1)
    den = np.outer(nb, na)
    S = np.abs(B64 @ A64.T) / np.where(den > 0, den, 1)
    S[den == 0] = 0.0
    absent = np.ones(S.shape, bool) if exclude_dense is None else exclude_dense == 0
    r, c = np.nonzero(absent)
    order = np.lexsort((c, r, -S[r, c]))
    return S, r[order], c[order]


def brute_abs_product(A, B, exclude_dense=None):
    """Float64 |B @ A.T| (the dense oracle) and the absent pairs in (-score, row, col) order."""
    S = np.abs(B.astype(np.float64) @ A.astype(np.float64).T)
    absent = np.ones(S.shape, bool) if exclude_dense is None else exclude_dense == 0
    r, c = np.nonzero(absent)
    order = np.lexsort((c, r, -S[r, c]))
    return S, r[order], c[order]


def assert_topk_cosine(result, A, B, k, exclude):
    """A ``topk_cosine`` result, exact up to rounding (:func:`assert_exact_topk`)."""
    from ctre_sparse.testing import tolerance

    ex = None if exclude is None else exclude.toarray()
    S, br, bc = brute_cosine(A, B, ex)
    rtol, atol = tolerance(A.dtype)
    assert_exact_topk(result, S, br, bc, k, ex, 4 * (atol + rtol) * max(1, A.shape[1] / 8))


def assert_topk_abs_product(result, A, B, k, exclude):
    """A ``topk_abs_product`` result, exact up to rounding (:func:`assert_exact_topk`)."""
    from ctre_sparse.testing import tolerance

    ex = None if exclude is None else exclude.toarray()
    S, br, bc = brute_abs_product(A, B, ex)
    rtol, atol = tolerance(A.dtype)
    scale = max(1.0, float(np.abs(A).max(initial=0) * np.abs(B).max(initial=0) * A.shape[1]))
    assert_exact_topk(result, S, br, bc, k, ex, 4 * (atol + rtol) * scale)
