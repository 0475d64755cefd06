"""Bad inputs raise ValueError saying what was expected; a rejected call changes nothing."""

import contextlib

import numpy as np
import pytest

import ctre_sparse.backends as backends
from conftest import CPU_BACKENDS
from ctre_sparse import (BackendUnavailableError, CSRMatrix, cosine_pairs, insert,
                         prune_magnitude, sddmm, spmm, spmm_t, topk_cosine)

F32, F64 = np.float32, np.float64


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request):
    return request.param


def _W(dtype=F32, index_dtype=np.int32):
    # [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]]
    return CSRMatrix(np.array([1, 2, 3, 4], dtype=dtype), np.array([0, 2, 1, 3], dtype=index_dtype),
                     np.array([0, 2, 2, 4], dtype=index_dtype), (3, 4), full_check=True)


@contextlib.contextmanager
def rejected(match, *operands, exc=ValueError):
    """Expect ``exc`` matching ``match``; afterwards every operand's arrays are unchanged."""
    def snapshot(x):
        if isinstance(x, CSRMatrix):
            return [x.data.copy(), x.indices.copy(), x.indptr.copy()]
        return [np.array(x, copy=True)]

    def arrays(x):
        return [x.data, x.indices, x.indptr] if isinstance(x, CSRMatrix) else [x]

    before = [snapshot(x) for x in operands]
    with pytest.raises(exc, match=match):
        yield
    for x, saved in zip(operands, before):
        for a, b in zip(arrays(x), saved):
            np.testing.assert_array_equal(a, b)  # loses nothing


# ------------------------------------------------------------------ spmm / spmm_t / sddmm
def test_spmm_bad_operands(cpu_backend):
    W, b = _W(), cpu_backend
    X = np.ones((4, 2), F32)
    with rejected("W must be a ctre_sparse.CSRMatrix or a scipy.sparse CSR", X):
        spmm(W.toarray(), X, backend=b)
    with rejected("X must be 2-D, got shape \\(4,\\)", W):
        spmm(W, np.ones(4, F32), backend=b)
    with rejected("X must have 4 rows .* got shape \\(3, 2\\)", W):
        spmm(W, np.ones((3, 2), F32), backend=b)
    with rejected("X must have dtype float32 \\(the dtype of W\\), got float64", W):
        spmm(W, np.ones((4, 2), F64), backend=b)
    with rejected("X must have dtype float32 .* got int64", W):
        spmm(W, np.ones((4, 2), np.int64), backend=b)
    with rejected("X must have dtype float64 .* got int32", W):
        spmm(_W(F64), np.ones((4, 2), np.int32), backend=b)
    with rejected("X must be C-contiguous", W):
        spmm(W, np.ones((4, 6), F32)[:, ::2], backend=b)
    with rejected("X must be C-contiguous", W):
        spmm(W, np.asfortranarray(np.ones((4, 3), F32)), backend=b)
    with rejected("X must be a NumPy or CuPy array, got list", W):
        spmm(W, [[1.0, 2.0]] * 4, backend=b)


def test_out_wrong(cpu_backend):
    W, b = _W(), cpu_backend
    X = np.ones((4, 2), F32)
    with rejected("out must have shape \\(3, 2\\), got \\(2, 3\\)", W, X):
        spmm(W, X, out=np.zeros((2, 3), F32), backend=b)
    with rejected("out must have dtype float32 .* got float64", W, X):
        spmm(W, X, out=np.zeros((3, 2), F64), backend=b)
    with rejected("out must be C-contiguous", W, X):
        spmm(W, X, out=np.zeros((3, 4), F32)[:, ::2], backend=b)
    with rejected("out must have shape \\(4, 2\\)", W):
        spmm_t(W, np.ones((3, 2), F32), out=np.zeros((3, 2), F32), backend=b)
    with rejected("out must have shape \\(4,\\), got \\(5,\\)", W):
        sddmm(W, np.ones((3, 2), F32), X, out=np.zeros(5, F32), backend=b)
    with rejected("out must have dtype float32", W):
        cosine_pairs(np.ones((2, 2), F32), np.ones((2, 2), F32), np.array([0]), np.array([1]),
                     out=np.zeros(1, F64), backend=b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(cpu_backend, bad):
    W, b = _W(), cpu_backend
    W.data[2] = bad
    with rejected("W contains NaN or Inf", W):
        spmm(W, np.ones((4, 2), F32), backend=b)
    with rejected("W contains NaN or Inf", W):
        spmm_t(W, np.ones((3, 2), F32), backend=b)
    with rejected("W contains NaN or Inf", W):
        prune_magnitude(W, 0.5, backend=b)
    # check_finite=False skips the O(nnz) scan: the call goes through
    Y = spmm(W, np.ones((4, 2), F32), backend=b, check_finite=False)
    assert np.all(np.isfinite(Y[0])) and not np.all(np.isfinite(Y[2]))


def test_spmm_t_and_sddmm_bad_operands(cpu_backend):
    W, b = _W(), cpu_backend
    with rejected("G must have 3 rows", W):
        spmm_t(W, np.ones((4, 2), F32), backend=b)
    with rejected("G must have dtype float32", W):
        spmm_t(W, np.ones((3, 2), F64), backend=b)
    with rejected("G must be C-contiguous", W):
        spmm_t(W, np.ones((3, 4), F32)[:, 1::2], backend=b)
    with rejected("G must have 3 rows", W):
        sddmm(W, np.ones((4, 2), F32), np.ones((4, 2), F32), backend=b)
    with rejected("X must have 4 rows", W):
        sddmm(W, np.ones((3, 2), F32), np.ones((3, 2), F32), backend=b)
    with rejected("G and X must have the same batch size, got 2 and 3", W):
        sddmm(W, np.ones((3, 2), F32), np.ones((4, 3), F32), backend=b)
    with rejected("X must have dtype float32 .* got float64", W):
        sddmm(W, np.ones((3, 2), F32), np.ones((4, 2), F64), backend=b)


# ------------------------------------------------------------------ CSR format
def _csr(data, indices, indptr, shape, full_check=True):
    return CSRMatrix(np.asarray(data), np.asarray(indices), np.asarray(indptr), shape,
                     full_check=full_check)


I32 = np.int32


@pytest.mark.parametrize("args,match", [
    ((np.ones(2), np.array([2, 0], I32), np.array([0, 2], I32), (1, 3)),
     "sorted and unique within each row; unsorted index 0 at position 1"),
    ((np.ones(3), np.array([0, 2, 2], I32), np.array([0, 3], I32), (1, 3)),
     "sorted and unique within each row; duplicate index 2 at position 2"),
    ((np.ones(2), np.array([0, 4], I32), np.array([0, 2], I32), (1, 4)),
     "column indices must lie in \\[0, 4\\), found values in \\[0, 4\\]"),
    ((np.ones(2), np.array([-1, 2], I32), np.array([0, 2], I32), (1, 4)),
     "column indices must lie in \\[0, 4\\)"),
    ((np.ones(2), np.array([0, 1], I32), np.array([1, 2], I32), (1, 4)),
     "indptr must start at 0 and end at nnz=2, got 1 .. 2"),
    ((np.ones(2), np.array([0, 1], I32), np.array([0, 1], I32), (1, 4)),
     "indptr must start at 0 and end at nnz=2"),
    ((np.ones(2), np.array([0, 1], I32), np.array([0, 2, 1, 2], I32), (3, 4)),
     "indptr must be non-decreasing"),
    ((np.array([1.0, np.nan]), np.array([0, 1], I32), np.array([0, 2], I32), (1, 4)),
     "CSR data contains NaN or Inf"),
])
def test_full_check_violations(args, match):
    _csr(*args, full_check=False)  # the cheap checks let these through
    with pytest.raises(ValueError, match=match):
        _csr(*args)


@pytest.mark.parametrize("args,match", [
    ((np.ones(1), np.zeros(1, I32), np.array([0, 1], I32), (3, 4)),
     "indptr must have n_out \\+ 1 = 4 entries, got 2"),
    ((np.ones(1), np.zeros(1, I32), np.array([0, 1], np.int64), (1, 4)),
     "indptr dtype int64 must equal indices dtype int32"),
    ((np.ones(1, np.int64), np.zeros(1, I32), np.array([0, 1], I32), (1, 4)),
     "data must be float32 or float64, got int64"),
    ((np.ones(1, np.float16), np.zeros(1, I32), np.array([0, 1], I32), (1, 4)),
     "data must be float32 or float64, got float16"),
    ((np.ones(1), np.zeros(1, np.float64), np.array([0, 1], np.float64), (1, 4)),
     "indices must be int32 or int64, got float64"),
    ((np.ones(1), np.zeros(1, np.int16), np.array([0, 1], np.int16), (1, 4)),
     "indices must be int32 or int64, got int16"),
    ((np.ones(2), np.zeros(1, I32), np.array([0, 1], I32), (1, 4)),
     "data \\(2\\) and indices \\(1\\) must have the same length"),
    ((np.ones((1, 1)), np.zeros(1, I32), np.array([0, 1], I32), (1, 4)),
     "data must be a 1-D array"),
    ((np.ones(4)[::2], np.zeros(2, I32), np.array([0, 2], I32), (1, 4)),
     "data must be contiguous"),
    ((np.ones(0), np.zeros(0, I32), np.zeros(1, I32), (-1, 4)),
     "shape must be non-negative"),
])
def test_cheap_check_violations(args, match):
    with pytest.raises(ValueError, match=match):
        _csr(*args, full_check=False)


def test_check_format_on_edited_matrix():
    W = _W()  # validated: its index arrays are read-only, its values are not
    with pytest.raises(ValueError, match="read-only"):
        W.indices[1] = 9
    with pytest.raises(ValueError, match="read-only"):
        W.indptr[1] = 9
    W.data[1] = 7.0
    # an unvalidated matrix may be edited in place; the check then sees the edit
    indices = np.array([0, 2, 1, 3], dtype=I32)
    W = CSRMatrix(W.data, indices, W.indptr.copy(), W.shape)
    indices[1] = 9
    with pytest.raises(ValueError, match="column indices must lie in \\[0, 4\\)"):
        W.check_format(full_check=True)


# ------------------------------------------------------------------ cosine ops
def test_cosine_pairs_bad_inputs(cpu_backend):
    b = cpu_backend
    A, B = np.ones((4, 3), F32), np.ones((5, 3), F32)
    r, c = np.array([0, 3]), np.array([4, 0])
    cosine_pairs(A, B, r, c, backend=b)  # valid
    bad = A.copy()
    bad[1, 1] = np.nan
    with rejected("A contains NaN or Inf", bad, B, r, c):
        cosine_pairs(bad, B, r, c, backend=b)
    badb = B.copy()
    badb[0, 0] = np.inf
    with rejected("B contains NaN or Inf", A, badb):
        cosine_pairs(A, badb, r, c, backend=b)
    with rejected("rows must lie in \\[0, 4\\), found values in \\[0, 4\\]"):
        cosine_pairs(A, B, np.array([0, 4]), c, backend=b)
    with rejected("cols must lie in \\[0, 5\\), found values in \\[-1, 0\\]"):
        cosine_pairs(A, B, r, np.array([-1, 0]), backend=b)
    with rejected("rows must be a 1-D integer array, got float64"):
        cosine_pairs(A, B, np.array([0.0, 1.0]), c, backend=b)
    with rejected("rows and cols must have the same length, got 2 and 1"):
        cosine_pairs(A, B, r, np.array([0]), backend=b)
    with rejected("A and B must have the same number of samples \\(columns\\), got 3 and 2"):
        cosine_pairs(A, np.ones((5, 2), F32), r, c, backend=b)
    with rejected("B must have dtype float32"):
        cosine_pairs(A, B.astype(F64), r, c, backend=b)
    with rejected("A must be float32 or float64, got int64"):
        cosine_pairs(A.astype(np.int64), B.astype(np.int64), r, c, backend=b)
    with rejected("A must be 2-D"):
        cosine_pairs(np.ones(4, F32), B, r, c, backend=b)
    with rejected("A must be C-contiguous"):
        cosine_pairs(np.ones((4, 6), F32)[:, ::2], B, r, c, backend=b)


def test_topk_cosine_bad_inputs(cpu_backend):
    b = cpu_backend
    A, B = np.ones((4, 3), F32), np.ones((3, 3), F32)
    W = _W()
    topk_cosine(A, B, 2, exclude=W, backend=b)  # valid
    with rejected("k must be >= 0, got -1", W):
        topk_cosine(A, B, -1, exclude=W, backend=b)
    with rejected("exclude must have shape \\(n_out, n_in\\) = \\(4, 4\\) "
                  "\\(B rows, A rows\\), got \\(3, 4\\)", W):
        topk_cosine(A, np.ones((4, 3), F32), 2, exclude=W, backend=b)
    with rejected("exclude must be a ctre_sparse.CSRMatrix or a scipy.sparse CSR", W):
        topk_cosine(A, B, 2, exclude=W.toarray(), backend=b)
    bad = A.copy()
    bad[0, 0] = np.nan
    with rejected("A contains NaN or Inf", bad, W):
        topk_cosine(bad, B, 2, exclude=W, backend=b)
    with rejected("B contains NaN or Inf", W):
        topk_cosine(A, np.full((3, 3), np.inf, F32), 2, exclude=W, backend=b)
    with rejected("same number of samples", W):
        topk_cosine(A, np.ones((3, 2), F32), 2, exclude=W, backend=b)


# ------------------------------------------------------------------ topology
@pytest.mark.parametrize("fraction", [-0.1, 1.01, 2, float("nan")])
def test_prune_fraction_out_of_range(cpu_backend, fraction):
    W = _W()
    with rejected("fraction must be in \\[0, 1\\]", W):
        prune_magnitude(W, fraction, backend=cpu_backend)


def test_insert_bad_positions(cpu_backend):
    W, b = _W(), cpu_backend
    v2 = np.ones(2)
    with rejected("insert position \\(2, 3\\) is already stored in W", W):
        insert(W, np.array([1, 2]), np.array([0, 3]), v2, backend=b)
    with rejected("insert position \\(0, 0\\) is already stored", W):
        insert(W, np.array([0]), np.array([0]), np.ones(1), backend=b)
    with rejected("insert positions must be distinct; \\(1, 2\\) appears more than once", W):
        insert(W, np.array([1, 1]), np.array([2, 2]), v2, backend=b)
    with rejected("rows must lie in \\[0, 3\\), found values in \\[1, 3\\]", W):
        insert(W, np.array([1, 3]), np.array([0, 0]), v2, backend=b)
    with rejected("cols must lie in \\[0, 4\\), found values in \\[-2, 1\\]", W):
        insert(W, np.array([1, 1]), np.array([-2, 1]), v2, backend=b)
    with rejected("rows, cols and values must have the same length, got 2, 2 and 3", W):
        insert(W, np.array([1, 1]), np.array([0, 1]), np.ones(3), backend=b)
    with rejected("values must be a 1-D array of finite numbers", W):
        insert(W, np.array([1, 1]), np.array([0, 1]), np.array([1.0, np.nan]), backend=b)
    with rejected("rows must be a 1-D integer array", W):
        insert(W, np.array([1.0, 1.0]), np.array([0, 1]), v2, backend=b)
    with rejected("cols must be a 1-D integer array", W):
        insert(W, np.array([1, 1]), [0, 1], v2, backend=b)


# ------------------------------------------------------------------ backends
def test_unknown_backend_name():
    W = _W()
    with rejected("backend must be one of \\('auto', 'reference', 'numba', 'native', 'cuda'\\), "
                  "got 'fortran'", W):
        spmm(W, np.ones((4, 2), F32), backend="fortran")


def test_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setitem(backends._loaded, "native", (None, "extension not compiled (test)"))
    W = _W()
    with rejected("backend 'native' is not available: extension not compiled \\(test\\)", W,
                  exc=BackendUnavailableError):
        spmm(W, np.ones((4, 2), F32), backend="native")
    assert backends.backend_status()["native"] == "extension not compiled (test)"
    assert "native" not in backends.available_backends("cpu")


@pytest.mark.parametrize("name", [n for n, r in backends.backend_status().items() if r])
def test_really_unavailable_backends_raise(name):
    reason = backends.backend_status()[name]
    with pytest.raises(BackendUnavailableError, match=f"backend '{name}' is not available"):
        spmm(_W(), np.ones((4, 2), F32), backend=name)
    assert reason


def test_cuda_backend_on_numpy_arrays():
    W = _W()
    if "cuda" in backends.available_backends("cuda"):
        with rejected("backend 'cuda' cannot run on NumPy \\(CPU\\) arrays", W):
            spmm(W, np.ones((4, 2), F32), backend="cuda")
    else:
        with rejected("backend 'cuda' is not available", W, exc=BackendUnavailableError):
            spmm(W, np.ones((4, 2), F32), backend="cuda")
