"""The validation contract: structure checked once and locked, outputs that alias, sizes, values.

Each defect of issue 10 (items 1, 5, 6) that can be shown without a crash
has a test here that fails on the code before the fix; the malformed
structures that made kernels read or write out of bounds are fed to every
op in a child process by test_fuzz_csr.py.
"""

import copy
import pickle
import platform

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctre_sparse.validation as validation
from conftest import CPU_BACKENDS
from fuzz_csr import valid_structure
from ctre_sparse import (CSRMatrix, cosine_pairs, insert, prune_magnitude, sddmm, spmm, spmm_t,
                         topk_cosine)

F32 = np.float32
# [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]]
ARRAYS = (np.array([1, 2, 3, 4], F32), np.array([0, 2, 1, 3], np.int32),
          np.array([0, 2, 2, 4], np.int32))


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request):
    return request.param


def _user_matrix():
    """A matrix around the caller's own (writeable) arrays, not validated yet."""
    data, indices, indptr = (a.copy() for a in ARRAYS)
    return CSRMatrix(data, indices, indptr, (3, 4)), (data, indices, indptr)


# ------------------------------------------------------------------ the validation flag
def test_validation_runs_once_and_is_remembered(monkeypatch, cpu_backend):
    calls = []
    monkeypatch.setattr("ctre_sparse.sparse.checked_copy",
                        lambda *a: calls.append(1) or validation.checked_copy(*a))
    W, _ = _user_matrix()
    assert not W.validated
    X, G = np.ones((4, 2), F32), np.ones((3, 2), F32)
    for _ in range(3):
        spmm(W, X, backend=cpu_backend)
        spmm_t(W, G, backend=cpu_backend)
        sddmm(W, G, X, backend=cpu_backend)
    assert W.validated and len(calls) == 1
    W.indices = W.indices.copy()  # assigning an index array drops the check...
    assert not W.validated
    spmm(W, X, backend=cpu_backend)  # ...which runs again at the next op
    assert W.validated and len(calls) == 2


def test_validated_index_arrays_are_private_and_read_only():
    W, (data, indices, indptr) = _user_matrix()
    W.validate()
    for arr in (W.indices, W.indptr, *W.transpose_arrays(), W.row_indices()):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 99
    # the caller's arrays are copied, not locked: theirs to change, without effect on W
    assert indices.flags.writeable and not np.shares_memory(W.indices, indices)
    indices[1] = 10**9
    np.testing.assert_array_equal(W.indices, [0, 2, 1, 3])
    assert W.data is data and W.data.flags.writeable  # values stay shared
    np.testing.assert_array_equal(spmm(W, np.eye(4, dtype=F32)), W.toarray())


def test_pickled_and_deep_copied_matrices_stay_locked():
    W = CSRMatrix.random(20, 30, density=0.2, random_state=0)
    W.transpose_arrays()
    W.row_indices()
    for V in (pickle.loads(pickle.dumps(W)), copy.deepcopy(W), copy.copy(W)):
        assert V.validated
        for arr in (V.indices, V.indptr, *V.transpose_arrays(), V.row_indices()):
            with pytest.raises(ValueError, match="read-only"):
                arr[0] = 10**9
        np.testing.assert_array_equal(V.toarray(), W.toarray())
    old_style = CSRMatrix.__new__(CSRMatrix)  # a pickle from before the arrays were properties
    old_style.__setstate__({"data": W.data.copy(), "indices": W.indices.copy(),
                            "indptr": W.indptr.copy(), "shape": W.shape, "_transpose": None,
                            "_rows": None})
    assert not old_style.validated
    np.testing.assert_array_equal(old_style.validate().toarray(), W.toarray())


def test_arrays_made_by_ctre_sparse_are_valid_and_locked_at_once(cpu_backend):
    W = CSRMatrix.random(20, 30, density=0.2, random_state=0)
    pruned = prune_magnitude(W, 0.3, backend=cpu_backend).matrix
    grown = insert(pruned, np.array([0]), np.array([int(np.setdiff1d(
        np.arange(30), pruned.indices[pruned.indptr[0]:pruned.indptr[1]])[0])]), np.ones(1),
        backend=cpu_backend).matrix
    for M in (W, CSRMatrix.from_dense(W.toarray()), W.copy(), W.astype(np.float64), pruned,
              grown):
        assert M.validated and not M.indices.flags.writeable and not M.indptr.flags.writeable
        M.check_format(full_check=True)  # and really valid


@pytest.mark.parametrize("growth", ["ctre_sim", "random"])
def test_training_never_validates_again(monkeypatch, growth):
    """Every matrix of a training run is made valid by ctre_sparse: O(nnz) checks cost nothing."""
    from sklearn.datasets import make_blobs

    from ctre_sparse import CTREClassifier

    calls = []
    monkeypatch.setattr("ctre_sparse.sparse.checked_copy",
                        lambda *a: calls.append(1) or validation.checked_copy(*a))
    X, y = make_blobs(n_samples=120, n_features=6, centers=3, random_state=0)
    clf = CTREClassifier(hidden_layer_sizes=(16, 8), epsilon=4, max_epochs=3, batch_size=20,
                         random_state=0, growth=growth).fit(X.astype(F32), y)
    assert clf.n_iter_ == 3 and calls == []


def test_adopt_locks_handed_over_arrays():
    data, indices, indptr = (a.copy() for a in ARRAYS)
    W = CSRMatrix.adopt(data, indices, indptr, (3, 4), valid=True)
    assert W.validated and W.indices is indices and not indices.flags.writeable
    V = CSRMatrix.adopt(data, np.array([0, 9, 1, 3], np.int32), indptr.copy(), (3, 4),
                        valid=False)  # no promise: checked at the first op
    with pytest.raises(ValueError, match="column indices must lie in \\[0, 4\\)"):
        spmm(V, np.ones((4, 1), F32))


def test_a_view_of_a_larger_buffer_is_copied_before_the_check():
    buf = np.arange(64, dtype=np.int32) % 4
    buf[:4] = ARRAYS[1]
    W = CSRMatrix(ARRAYS[0].copy(), buf[:4], ARRAYS[2].copy(), (3, 4)).validate()
    assert W.indices.base is None and not np.shares_memory(W.indices, buf)
    buf[:4] = 99  # the buffer stays the caller's
    np.testing.assert_array_equal(W.indices, ARRAYS[1])


def test_assigning_data_is_checked_at_once():
    W, _ = _user_matrix()
    W.validate()
    with pytest.raises(ValueError, match="data \\(3\\) and indices \\(4\\)"):
        W.data = np.ones(3, F32)
    assert W.data.shape == (4,) and W.validated  # left as it was
    W.data = np.full(4, 2.0, F32)  # same length: the structure check stands
    assert W.validated


def test_check_false_skips_the_structure_check(cpu_backend):
    W, _ = _user_matrix()
    X = np.eye(4, dtype=F32)
    np.testing.assert_array_equal(spmm(W, X, backend=cpu_backend, check=False), W.toarray())
    sddmm(W, np.ones((3, 2), F32), np.ones((4, 2), F32), backend=cpu_backend, check=False)
    assert not W.validated  # nothing was checked, nothing remembered


# ------------------------------------------------------------------ the structure check
@st.composite
def structures(draw):
    """Small index structures, valid or broken in one or more places."""
    n_rows, n_cols = draw(st.integers(0, 5)), draw(st.integers(0, 6))
    counts = draw(st.lists(st.integers(0, max(n_cols, 1)), min_size=n_rows, max_size=n_rows))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate([np.sort(draw(st.permutations(range(max(n_cols, c))))[:c])
                              for c in counts] + [np.zeros(0)]).astype(np.int64)
    for _ in range(draw(st.integers(0, 2))):  # break it (or not) at random places
        target = draw(st.sampled_from(["indptr", "indices"]))
        arr = indptr if target == "indptr" or indices.size == 0 else indices
        pos = draw(st.integers(0, arr.size - 1))
        arr[pos] = draw(st.integers(-3, n_cols + 3) | st.sampled_from([2**31 - 1, -2**31]))
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    return indptr.astype(dtype), indices.astype(dtype), n_cols


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structures())
def test_structure_check_agrees_with_a_plain_python_oracle(case):
    indptr, indices, n_cols = case
    ok = valid_structure(indptr, indices, n_cols)
    code = validation.structure_code(indptr, indices, n_cols)
    assert (code == validation.STRUCTURE_OK) == ok
    assert validation._diagnose(indptr, indices, n_cols)[0] == code  # CuPy's path
    _, indptr_copy, indices_copy = validation.checked_copy(indptr, indices, n_cols)
    assert np.array_equal(indptr_copy, indptr) and np.array_equal(indices_copy, indices)
    assert not np.shares_memory(indices_copy, indices)
    W = CSRMatrix(np.ones(indices.size), indices, indptr, (indptr.size - 1, n_cols))
    if ok:
        W.validate()
    else:
        with pytest.raises(ValueError, match="CSR (indptr|column indices)"):
            W.validate()
        assert not W.validated and W.indices is indices  # a refused matrix is left as it was


def test_checked_copy_without_numba_gives_the_same_codes(monkeypatch):
    cases = [(np.array([0, 2, 3]), np.array([0, 3, 1])), (np.array([0, 2, 7]), np.array([0, 3, 1])),
             (np.array([0, 2, 3]), np.array([0, 3, 9])), (np.array([0, 2, 3]), np.array([3, 0, 1])),
             (np.array([0]), np.zeros(0, np.int64)), (np.array([0, 3, 1]), np.array([0, 1, 2]))]
    with_numba = [validation.checked_copy(p, i, 4) for p, i in cases]
    monkeypatch.setattr(validation, "_kernel", False)
    for (p, i), (code, cp, ci) in zip(cases, with_numba):
        code2, cp2, ci2 = validation.checked_copy(p, i, 4)
        assert code2 == code and np.array_equal(cp2, cp) and np.array_equal(ci2, ci)
    assert [c for c, _, _ in with_numba] == [0, 1, 2, 3, 0, 1]


# ------------------------------------------------------------------ outputs (item 5, 6)
def test_out_aliasing_an_input_is_refused(cpu_backend):
    """``spmm(W, X, out=X)`` used to overwrite X while reading it (numba/native)."""
    W = CSRMatrix.from_dense(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 2]], F32))
    X = np.arange(9, dtype=F32).reshape(3, 3)
    before = X.copy()
    with pytest.raises(ValueError, match="out must not overlap X"):
        spmm(W, X, out=X, backend=cpu_backend)
    with pytest.raises(ValueError, match="out must not overlap G"):
        spmm_t(W, X, out=X, backend=cpu_backend)
    with pytest.raises(ValueError, match="out must not overlap W.data"):
        sddmm(W, X, X, out=W.data, backend=cpu_backend)
    buf = np.zeros(20, F32)
    with pytest.raises(ValueError, match="out must not overlap X"):  # a partial overlap
        spmm(W, buf[:9].reshape(3, 3), out=buf[6:15].reshape(3, 3), backend=cpu_backend)
    with pytest.raises(ValueError, match="out must not overlap A"):
        cosine_pairs(X, X, np.array([0]), np.array([1]), out=X.reshape(-1)[:1],
                     backend=cpu_backend)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_array_equal(spmm(W, X, backend=cpu_backend), W.toarray() @ X)


def test_read_only_out_is_a_value_error(cpu_backend):
    """numba used to raise its own TypingError for a read-only ``out``."""
    W, _ = _user_matrix()
    out = np.zeros((3, 2), F32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a writeable array"):
        spmm(W, np.ones((4, 2), F32), out=out, backend=cpu_backend)
    out = np.zeros(4, F32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a writeable array"):
        sddmm(W, np.ones((3, 2), F32), np.ones((4, 2), F32), out=out, backend=cpu_backend)


# ------------------------------------------------------------------ values, sizes (item 5, 6)
@pytest.mark.parametrize("value", [1e300, -1e39, 3.5e38])
def test_insert_refuses_values_that_overflow_the_dtype(cpu_backend, value):
    """``insert`` of 1e300 into float32 used to store inf."""
    W, _ = _user_matrix()
    with pytest.raises(ValueError, match="values must fit in W's dtype float32"):
        insert(W, np.array([1]), np.array([0]), np.array([value]), backend=cpu_backend)
    fine = insert(W, np.array([1]), np.array([0]), np.array([3.0e38]), backend=cpu_backend)
    assert np.all(np.isfinite(fine.matrix.data))
    W64 = W.astype(np.float64)
    assert insert(W64, np.array([1]), np.array([0]), np.array([1e300]),
                  backend=cpu_backend).matrix.data.max() == 1e300


def test_topk_cosine_caps_k_at_the_absent_pairs(cpu_backend):
    """k = 10**12 used to ask the native backend for 7 TiB of buffers."""
    rng = np.random.default_rng(0)
    A, B = rng.random((40, 6)).astype(F32), rng.random((30, 6)).astype(F32)
    W = CSRMatrix.random(30, 40, density=0.1, random_state=1)
    rows, cols, scores = topk_cosine(A, B, 10**12, exclude=W, backend=cpu_backend)
    assert rows.shape[0] == 30 * 40 - W.nnz
    ref = topk_cosine(A, B, 30 * 40 - W.nnz, exclude=W, backend="reference")
    np.testing.assert_array_equal(rows, ref[0])
    np.testing.assert_array_equal(cols, ref[1])
    # a huge block budget is one block of all rows, not a huge allocation
    assert topk_cosine(A, B, 5, block_bytes=10**18, backend=cpu_backend)[0].shape == (5,)


@pytest.mark.parametrize("kwargs,match", [
    ({"k": 1e12}, "k must be an integer >= 0, got 1000000000000.0"),
    ({"k": True}, "k must be an integer"),
    ({"k": 3, "block_bytes": 0}, "block_bytes must be >= 1"),
    ({"k": 3, "block_bytes": 2.5}, "block_bytes must be an integer"),
])
def test_topk_cosine_size_arguments(kwargs, match):
    A = np.ones((4, 3), F32)
    with pytest.raises(ValueError, match=match):
        topk_cosine(A, A, **kwargs)


def test_allocation_beyond_physical_memory_is_refused(monkeypatch):
    monkeypatch.setattr(validation, "physical_memory", lambda: 1 << 20)
    A = np.ones((2000, 3), F32)
    with pytest.raises(ValueError, match="topk_cosine with k=4000000 .* more than this machine"):
        topk_cosine(A, A, 4_000_000)
    with pytest.raises(ValueError, match="CSRMatrix.random with nnz=100000 would need"):
        CSRMatrix.random(10**6, 10**6, nnz=100_000)


# ------------------------------------------------------------------ scipy positions (item 5)
def _unsorted_scipy():
    # row 0 holds columns 2, 0 (unsorted); row 2 holds 3, 1
    return sp.csr_matrix((np.array([2, 1, 4, 3], F32), np.array([2, 0, 3, 1], np.int32),
                          np.array([0, 2, 2, 4], np.int32)), shape=(3, 4))


def test_unsorted_scipy_input_is_refused_not_silently_reordered(cpu_backend):
    """sddmm's output and prune's ``kept`` used to refer to a hidden sorted copy."""
    m = _unsorted_scipy()
    G, X = np.ones((3, 2), F32), np.arange(8, dtype=F32).reshape(4, 2)
    with pytest.raises(ValueError, match="unsorted index 0 at position 1"):
        sddmm(m, G, X, backend=cpu_backend)
    with pytest.raises(ValueError, match="sum_duplicates"):
        prune_magnitude(m, 0.5, backend=cpu_backend)


def test_canonicalised_scipy_input_keeps_positions_in_the_callers_data(cpu_backend):
    m = _unsorted_scipy()
    W = CSRMatrix.from_scipy(m, canonicalize=True)  # sorts m itself, in place
    G, X = np.ones((3, 2), F32), np.arange(8, dtype=F32).reshape(4, 2)
    grad = sddmm(W, G, X, backend=cpu_backend)
    rows = np.repeat(np.arange(3), np.diff(m.indptr))
    np.testing.assert_allclose(grad, [G[r] @ X[c] for r, c in zip(rows, m.indices)])
    kept = prune_magnitude(m, 0.5, backend=cpu_backend).kept  # m is canonical now
    np.testing.assert_array_equal(np.sort(np.abs(m.data[kept])), [3, 4])


# ------------------------------------------------------------------ denormals (item 5, docs)
@pytest.mark.skipif("native" not in CPU_BACKENDS or platform.machine().lower() not in (
    "x86_64", "amd64"), reason="native extension not built, or not x86 (no MXCSR)")
def test_native_products_flush_denormals_as_documented():
    tiny = np.float32(1e-39)  # subnormal in float32
    W = CSRMatrix.from_dense(np.array([[1.0]], F32))
    X = np.full((1, 8), tiny, F32)
    assert np.all(spmm(W, X, backend="reference") == tiny)
    assert np.all(spmm(W, X, backend="native") == 0)  # flush-to-zero, see ops' module notes
