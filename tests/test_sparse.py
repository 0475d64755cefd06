"""CSRMatrix: construction, checks, scipy round trips, index-dtype policy, transpose cache."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import ctre_sparse.sparse as sparse_mod
from ctre_sparse import CSRMatrix, get_index_dtype, insert, prune_magnitude, spmm_t
from ctre_sparse.testing import awkward_csr, random_csr

INT32_MAX = np.iinfo(np.int32).max


def _hand(dtype=np.float32, index_dtype=np.int32):
    # [[1, 0, 2, 0],
    #  [0, 0, 0, 0],
    #  [0, 3, 0, 4]]
    return CSRMatrix(np.array([1, 2, 3, 4], dtype=dtype),
                     np.array([0, 2, 1, 3], dtype=index_dtype),
                     np.array([0, 2, 2, 4], dtype=index_dtype), (3, 4))


HAND_DENSE = np.array([[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]], dtype=np.float64)


# ------------------------------------------------------------------ construction
def test_construction_and_properties(dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    assert W.shape == (3, 4) and W.n_out == 3 and W.n_in == 4
    assert W.nnz == 4
    assert W.dtype == dtype and W.index_dtype == index_dtype
    assert W.xp.__name__ == "numpy"
    assert W.density == pytest.approx(4 / 12)
    assert "shape=(3, 4)" in repr(W) and "nnz=4" in repr(W)
    np.testing.assert_array_equal(W.toarray(), HAND_DENSE.astype(dtype))
    assert W.toarray().dtype == dtype
    np.testing.assert_array_equal(W.row_indices(), [0, 0, 2, 2])
    assert W.row_indices().dtype == index_dtype


def test_construction_does_not_copy():
    data = np.array([1.0, 2.0], dtype=np.float32)
    indices = np.array([0, 1], dtype=np.int32)
    indptr = np.array([0, 1, 2], dtype=np.int32)
    W = CSRMatrix(data, indices, indptr, (2, 2))
    assert W.data is data and W.indices is indices and W.indptr is indptr


def test_density_of_zero_size():
    W = awkward_csr("zero_shape")
    assert W.shape == (0, 4) and W.nnz == 0 and W.density == 0.0
    assert W.toarray().shape == (0, 4)


def test_cheap_check_skips_o_nnz_checks_full_check_catches_them():
    # unsorted within a row: passes the O(1) checks, fails the O(nnz) ones
    args = (np.array([1.0, 2.0]), np.array([2, 0], dtype=np.int32),
            np.array([0, 2], dtype=np.int32), (1, 3))
    W = CSRMatrix(*args)  # cheap check only: accepted
    assert W.nnz == 2
    with pytest.raises(ValueError, match="sorted and unique"):
        W.check_format(full_check=True)
    with pytest.raises(ValueError, match="sorted and unique"):
        CSRMatrix(*args, full_check=True)
    # O(1) violations are caught without full_check
    with pytest.raises(ValueError, match="n_out \\+ 1"):
        CSRMatrix(np.array([1.0]), np.array([0], dtype=np.int32),
                  np.array([0, 1], dtype=np.int32), (2, 3))


def test_full_check_accepts_valid_matrices(dtype, index_dtype):
    for kind in ("empty_rows", "nnz0", "one_col", "one_row", "full_row", "zero_shape"):
        W = awkward_csr(kind, dtype=dtype, index_dtype=index_dtype)
        W.check_format(full_check=True)
    random_csr(30, 20, 0.3, dtype=dtype, index_dtype=index_dtype).check_format(full_check=True)


def test_full_check_allows_decrease_across_row_boundary_with_empty_rows():
    # row 0: [3], row 1: [], row 2: [0, 1] -> index drops 3 -> 0 at a row boundary: valid
    W = CSRMatrix(np.ones(3), np.array([3, 0, 1], dtype=np.int64),
                  np.array([0, 1, 1, 3], dtype=np.int64), (3, 4), full_check=True)
    np.testing.assert_array_equal(W.toarray(), [[0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]])


# ------------------------------------------------------------------ scipy
def test_from_scipy_shares_memory_when_canonical(dtype, index_dtype):
    m = sp.random(20, 15, density=0.3, format="csr", dtype=dtype, random_state=1)
    m.indices = m.indices.astype(index_dtype)
    m.indptr = m.indptr.astype(index_dtype)
    assert m.has_canonical_format
    W = CSRMatrix.from_scipy(m, full_check=True)
    assert W.data is m.data  # positions in W.data are positions in m.data
    # the validated structure is a private read-only copy; the caller's arrays stay writeable
    assert not np.shares_memory(W.indices, m.indices) and not W.indices.flags.writeable
    assert not np.shares_memory(W.indptr, m.indptr) and not W.indptr.flags.writeable
    assert m.indices.flags.writeable and m.indptr.flags.writeable
    np.testing.assert_array_equal(W.indices, m.indices)
    np.testing.assert_array_equal(W.indptr, m.indptr)
    assert W.index_dtype == index_dtype and W.dtype == dtype
    np.testing.assert_array_equal(W.toarray(), m.toarray())


def test_to_scipy_shares_memory(dtype, index_dtype):
    W = random_csr(12, 9, 0.4, dtype=dtype, index_dtype=index_dtype, seed=3)
    m = W.to_scipy()
    assert sp.issparse(m) and m.format == "csr" and m.shape == W.shape
    assert np.shares_memory(m.data, W.data)
    assert np.shares_memory(m.indices, W.indices)
    assert np.shares_memory(m.indptr, W.indptr)
    np.testing.assert_array_equal(m.toarray(), W.toarray())


def test_from_scipy_csr_array_is_accepted():
    m = sp.csr_array(HAND_DENSE)
    W = CSRMatrix.from_scipy(m)
    np.testing.assert_array_equal(W.toarray(), HAND_DENSE)
    assert np.shares_memory(W.data, m.data)


def test_from_scipy_unsorted_input_is_refused_or_canonicalised_in_place():
    data = np.array([2.0, 1.0, 4.0, 3.0])
    indices = np.array([2, 0, 3, 1], dtype=np.int32)
    indptr = np.array([0, 2, 2, 4], dtype=np.int32)
    m = sp.csr_matrix((data.copy(), indices.copy(), indptr.copy()), shape=(3, 4))
    # no hidden sorted copy whose positions the caller cannot see: refused...
    with pytest.raises(ValueError, match="unsorted index 0 at position 1.*canonicalize=True"):
        CSRMatrix.from_scipy(m)
    np.testing.assert_array_equal(m.indices, indices)  # the refused matrix is left as it was
    np.testing.assert_array_equal(m.data, data)
    # ...or sorted in the caller's own matrix, so that W.data is m.data
    W = CSRMatrix.from_scipy(m, canonicalize=True, full_check=True)
    np.testing.assert_array_equal(m.indices, [0, 2, 1, 3])
    np.testing.assert_array_equal(m.data, [1.0, 2.0, 3.0, 4.0])
    assert W.data is m.data
    np.testing.assert_array_equal(W.toarray(), HAND_DENSE)


def test_from_scipy_duplicates_are_refused_or_summed_in_place():
    data = np.array([1.0, 5.0, 2.0, 3.0, 4.0])
    indices = np.array([0, 0, 2, 1, 3], dtype=np.int32)   # (0, 0) twice: 1 + 5
    indptr = np.array([0, 3, 3, 5], dtype=np.int32)
    m = sp.csr_matrix((data.copy(), indices.copy(), indptr.copy()), shape=(3, 4))
    with pytest.raises(ValueError, match="duplicate index 0 at position 1"):
        CSRMatrix.from_scipy(m)
    assert m.nnz == 5
    W = CSRMatrix.from_scipy(m, canonicalize=True, full_check=True)
    assert W.nnz == m.nnz == 4 and W.data is m.data
    expected = HAND_DENSE.copy()
    expected[0, 0] = 6.0
    np.testing.assert_array_equal(W.toarray(), expected)
    np.testing.assert_array_equal(m.toarray(), expected)


def test_from_scipy_malformed_structure_is_refused_before_scipy_reads_it():
    m = sp.csr_matrix(HAND_DENSE)
    m.indptr = np.array([0, 2, 9, 4], dtype=m.indptr.dtype)  # scipy's own C code would read past
    with pytest.raises(ValueError, match="indptr must be non-decreasing"):
        CSRMatrix.from_scipy(m, canonicalize=True)


def test_from_scipy_other_formats_are_bounds_checked_before_conversion():
    c = sp.csc_matrix(HAND_DENSE)
    c.indices = c.indices.copy()
    c.indices[0] = 7
    with pytest.raises(ValueError, match="column indices must lie in \\[0, 3\\)"):
        CSRMatrix.from_scipy(c)
    o = sp.coo_matrix(HAND_DENSE)
    o.col = o.col.copy()
    o.col[1] = -3
    with pytest.raises(ValueError, match="COO col indices must lie in \\[0, 4\\)"):
        CSRMatrix.from_scipy(o)


@pytest.mark.parametrize("fmt", ["csc", "coo"])
def test_from_scipy_other_formats(fmt):
    m = sp.csr_matrix(HAND_DENSE).asformat(fmt)
    W = CSRMatrix.from_scipy(m, full_check=True)
    np.testing.assert_array_equal(W.toarray(), HAND_DENSE)


def test_from_scipy_dtype_cast_and_integer_rejection():
    m = sp.csr_matrix(HAND_DENSE.astype(np.int64))
    with pytest.raises(ValueError, match="float32 or float64"):
        CSRMatrix.from_scipy(m)
    W = CSRMatrix.from_scipy(m, dtype=np.float32)
    assert W.dtype == np.float32
    np.testing.assert_array_equal(W.toarray(), HAND_DENSE)
    W64 = CSRMatrix.from_scipy(sp.csr_matrix(HAND_DENSE.astype(np.float32)), dtype=np.float64)
    assert W64.dtype == np.float64


def test_from_scipy_mixed_index_dtypes_promoted():
    m = sp.csr_matrix(HAND_DENSE)
    m.indices = m.indices.astype(np.int32)
    m.indptr = m.indptr.astype(np.int64)
    W = CSRMatrix.from_scipy(m)
    assert W.indices.dtype == W.indptr.dtype == np.int64
    np.testing.assert_array_equal(W.toarray(), HAND_DENSE)


# ------------------------------------------------------------------ index dtype policy
def test_get_index_dtype_boundaries():
    assert get_index_dtype() == np.int32
    assert get_index_dtype(0) == np.int32
    assert get_index_dtype(INT32_MAX) == np.int32
    assert get_index_dtype(INT32_MAX + 1) == np.int64
    assert get_index_dtype(5, INT32_MAX + 1, 7) == np.int64
    assert get_index_dtype(np.int64(10), 3) == np.int32


def test_policy_applied_by_factories():
    assert CSRMatrix.random(10, 10, 0.2, random_state=0).index_dtype == np.int32
    assert CSRMatrix.from_dense(HAND_DENSE).index_dtype == np.int32
    # a dimension beyond int32 forces int64 (nnz stays tiny: nothing dense is allocated)
    W = CSRMatrix.random(2, INT32_MAX + 10, nnz=5, random_state=0)
    assert W.index_dtype == np.int64 and W.indptr.dtype == np.int64
    W.check_format(full_check=True)
    assert W.nnz == 5 and int(W.indices.max()) < INT32_MAX + 10


def test_int32_cannot_address_huge_dimension():
    with pytest.raises(ValueError, match="int32 indices cannot address"):
        CSRMatrix(np.zeros(0), np.zeros(0, np.int32), np.zeros(2, np.int32), (1, INT32_MAX + 1))
    # int64 is fine for the same shape
    CSRMatrix(np.zeros(0), np.zeros(0, np.int64), np.zeros(2, np.int64), (1, INT32_MAX + 1),
              full_check=True)


def test_explicit_index_dtype_respected(index_dtype):
    W = CSRMatrix.random(7, 5, 0.5, random_state=2, index_dtype=index_dtype)
    assert W.indices.dtype == W.indptr.dtype == index_dtype
    D = CSRMatrix.from_dense(HAND_DENSE, index_dtype=index_dtype)
    assert D.indices.dtype == D.indptr.dtype == index_dtype


# ------------------------------------------------------------------ transpose cache
def _count_builds(monkeypatch):
    calls = []
    real = sparse_mod._build_transpose

    def counting(W):
        calls.append(W)
        return real(W)

    monkeypatch.setattr(sparse_mod, "_build_transpose", counting)
    return calls


def test_transpose_arrays_correct(index_dtype):
    W = _hand(np.float64, index_dtype)
    t_indptr, t_indices, t_perm = W.transpose_arrays()
    # W.T = [[1,0,0],[0,0,3],[2,0,0],[0,0,4]]
    np.testing.assert_array_equal(t_indptr, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(t_indices, [0, 2, 0, 2])
    np.testing.assert_array_equal(W.data[t_perm], [1, 3, 2, 4])
    assert t_indptr.dtype == t_indices.dtype == t_perm.dtype == index_dtype
    WT = CSRMatrix(W.data[t_perm], t_indices, t_indptr, (4, 3), full_check=True)
    np.testing.assert_array_equal(WT.toarray(), HAND_DENSE.T)


def test_transpose_random_matches_dense():
    W = random_csr(40, 25, 0.2, dtype=np.float64, seed=5)
    t_indptr, t_indices, t_perm = W.transpose_arrays()
    WT = CSRMatrix(W.data[t_perm], t_indices, t_indptr, (25, 40), full_check=True)
    np.testing.assert_array_equal(WT.toarray(), W.toarray().T)


def test_transpose_cache_built_once_and_reused(monkeypatch):
    calls = _count_builds(monkeypatch)
    W = random_csr(30, 20, 0.2, dtype=np.float64, seed=1)
    first = W.transpose_arrays()
    assert len(calls) == 1
    assert W.transpose_arrays() is first
    G = np.ones((30, 3))
    spmm_t(W, G, backend="reference")
    spmm_t(W, G, backend="reference")
    assert len(calls) == 1
    # updating values in place keeps the (pattern-only) cache valid
    W.data *= 2.0
    np.testing.assert_allclose(spmm_t(W, G, backend="reference"), W.toarray().T @ G)
    assert len(calls) == 1


def test_transpose_cache_invalidated(monkeypatch):
    calls = _count_builds(monkeypatch)
    W = random_csr(30, 20, 0.3, dtype=np.float64, seed=2)
    W.transpose_arrays()
    W.invalidate_cache()
    W.transpose_arrays()
    assert len(calls) == 2


def test_topology_edits_return_fresh_cache():
    W = random_csr(30, 20, 0.3, dtype=np.float64, seed=3)
    G = np.random.default_rng(0).standard_normal((30, 4))
    W.transpose_arrays()
    pruned = prune_magnitude(W, 0.3, backend="reference").matrix
    assert pruned is not W and pruned._transpose is None
    np.testing.assert_allclose(spmm_t(pruned, G, backend="reference"),
                               pruned.toarray().T @ G, rtol=1e-12, atol=1e-12)
    r, c = np.argwhere(pruned.toarray() == 0)[0]
    res = insert(pruned, np.array([r]), np.array([c]), np.array([9.0]), backend="reference")
    assert res.matrix._transpose is None
    np.testing.assert_allclose(spmm_t(res.matrix, G, backend="reference"),
                               res.matrix.toarray().T @ G, rtol=1e-12, atol=1e-12)
    # the original keeps a valid cache
    np.testing.assert_allclose(spmm_t(W, G, backend="reference"), W.toarray().T @ G,
                               rtol=1e-12, atol=1e-12)


def test_row_indices_cached_and_invalidated():
    W = random_csr(10, 10, 0.3, seed=4)
    r = W.row_indices()
    assert W.row_indices() is r
    W.invalidate_cache()
    assert W.row_indices() is not r
    np.testing.assert_array_equal(W.row_indices(), np.nonzero(W.toarray())[0])


# ------------------------------------------------------------------ random()
@pytest.mark.parametrize("n_out,n_in,nnz", [(1, 1, 0), (1, 1, 1), (5, 7, 35), (50, 40, 17),
                                            (60, 30, 1500), (3, 1000, 2999)])
def test_random_exact_nnz(n_out, n_in, nnz, index_dtype):
    W = CSRMatrix.random(n_out, n_in, nnz=nnz, random_state=0, index_dtype=index_dtype)
    assert W.nnz == nnz and W.shape == (n_out, n_in)
    W.check_format(full_check=True)
    assert np.count_nonzero(W.toarray()) == nnz  # uniform values are nonzero a.s.


def test_random_density_rounds_to_nnz():
    assert CSRMatrix.random(100, 50, density=0.1, random_state=0).nnz == 500
    assert CSRMatrix.random(7, 3, density=0.5, random_state=0).nnz == round(0.5 * 21)
    assert CSRMatrix.random(7, 3, density=1.0, random_state=0).nnz == 21
    assert CSRMatrix.random(7, 3, density=0.0, random_state=0).nnz == 0


def test_random_is_reproducible_and_seed_dependent():
    a = CSRMatrix.random(30, 30, 0.1, random_state=7)
    b = CSRMatrix.random(30, 30, 0.1, random_state=7)
    c = CSRMatrix.random(30, 30, 0.1, random_state=8)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.toarray(), c.toarray())


def test_random_value_kinds(dtype):
    ones = CSRMatrix.random(10, 10, 0.3, random_state=0, values="ones", dtype=dtype)
    assert ones.dtype == dtype and np.all(ones.data == 1)
    uni = CSRMatrix.random(50, 50, 0.3, random_state=0, values="uniform")
    assert uni.data.min() >= -1 and uni.data.max() <= 1
    normal = CSRMatrix.random(50, 50, 0.3, random_state=0, values="normal")
    assert normal.data.std() == pytest.approx(1.0, abs=0.1)
    custom = CSRMatrix.random(10, 10, 0.3, random_state=0,
                              values=lambda rng, n: np.full(n, 3.0))
    assert np.all(custom.data == 3)
    with pytest.raises(ValueError, match="values must be"):
        CSRMatrix.random(10, 10, 0.3, values="cauchy")


def test_random_rejects_bad_density_and_nnz():
    with pytest.raises(ValueError, match="density must be in \\[0, 1\\]"):
        CSRMatrix.random(5, 5, 1.5)
    with pytest.raises(ValueError, match="density must be in \\[0, 1\\]"):
        CSRMatrix.random(5, 5)
    with pytest.raises(ValueError, match="nnz must be in \\[0, 25\\]"):
        CSRMatrix.random(5, 5, nnz=26)


def test_random_without_dense_allocation():
    n = 200_000  # a dense float32 mask/matrix would take 160 GB
    tracemalloc.start()
    try:
        W = CSRMatrix.random(n, n, nnz=20_000, random_state=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert W.nnz == 20_000
    W.check_format(full_check=True)
    # indptr (n + 1) int32 plus O(nnz) temporaries: a few MB
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"


# ------------------------------------------------------------------ dense / astype / copy
def test_from_dense_toarray_round_trip(dtype, index_dtype):
    rng = np.random.default_rng(0)
    dense = (rng.standard_normal((13, 9)) * (rng.random((13, 9)) < 0.3)).astype(dtype)
    dense[4] = 0
    W = CSRMatrix.from_dense(dense, index_dtype=index_dtype)
    W.check_format(full_check=True)
    assert W.dtype == dtype and W.nnz == np.count_nonzero(dense)
    np.testing.assert_array_equal(W.toarray(), dense)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 1)])
def test_from_dense_degenerate_shapes(shape):
    W = CSRMatrix.from_dense(np.zeros(shape))
    W.check_format(full_check=True)
    assert W.shape == shape and W.nnz == 0
    np.testing.assert_array_equal(W.toarray(), np.zeros(shape))


def test_from_dense_rejects_non_2d():
    with pytest.raises(ValueError, match="must be 2-D"):
        CSRMatrix.from_dense(np.zeros(4))


def test_astype(dtype, index_dtype):
    W = random_csr(10, 8, 0.4, dtype=np.float64, index_dtype=np.int64, seed=9)
    V = W.astype(dtype, index_dtype)
    assert V.dtype == dtype and V.indices.dtype == V.indptr.dtype == index_dtype
    np.testing.assert_array_equal(V.toarray(), W.toarray().astype(dtype))
    for name in ("data", "indices", "indptr"):
        assert not np.shares_memory(getattr(V, name), getattr(W, name))
    same = W.astype()
    np.testing.assert_array_equal(same.toarray(), W.toarray())
    for name in ("data", "indices", "indptr"):
        assert not np.shares_memory(getattr(same, name), getattr(W, name))


def test_copy_is_deep():
    W = random_csr(10, 8, 0.4, seed=9)
    C = W.copy()
    C.data[:] = 0
    assert np.any(W.data != 0)
    assert not np.shares_memory(C.indices, W.indices)


def test_to_device_cpu_and_bad_device():
    W = random_csr(4, 4, 0.5)
    assert W.to_device("cpu") is W
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        W.to_device("tpu")
