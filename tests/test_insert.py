"""insert: merge new (row, col, value) entries keeping rows sorted, on every backend."""

import numpy as np
import pytest

from conftest import csr_to_device, to_device
from ctre_sparse import CSRMatrix, insert, prune_magnitude
from ctre_sparse.testing import awkward_csr, random_csr

AWKWARD = ["empty_rows", "nnz0", "one_col", "one_row", "full_row"]


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _insert(W, rows, cols, values, backend):
    res = insert(csr_to_device(W, backend), to_device(np.asarray(rows), backend),
                 to_device(np.asarray(cols), backend), to_device(np.asarray(values), backend),
                 backend=backend)
    return res.matrix.to_device("cpu"), _np(res.old_positions), _np(res.new_positions)


def _assert_merged(W, rows, cols, values, M, old_pos, new_pos):
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    values = np.asarray(values).astype(W.dtype)
    M.check_format(full_check=True)
    assert M.shape == W.shape and M.dtype == W.dtype and M.index_dtype == W.index_dtype
    assert M.nnz == W.nnz + rows.shape[0]
    expected = W.toarray()
    expected[rows, cols] = values
    np.testing.assert_array_equal(M.toarray(), expected)
    assert old_pos.dtype == new_pos.dtype == np.int64
    assert old_pos.shape == (W.nnz,) and new_pos.shape == rows.shape
    np.testing.assert_array_equal(np.sort(np.concatenate([old_pos, new_pos])), np.arange(M.nnz))
    np.testing.assert_array_equal(M.data[old_pos], W.data)
    np.testing.assert_array_equal(M.indices[old_pos], W.indices)
    np.testing.assert_array_equal(M.row_indices()[old_pos], W.row_indices())
    np.testing.assert_array_equal(M.data[new_pos], values)
    np.testing.assert_array_equal(M.indices[new_pos], cols)
    np.testing.assert_array_equal(M.row_indices()[new_pos], rows)
    assert M._transpose is None


def _hand(dtype, index_dtype):
    # [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]]
    return CSRMatrix(np.array([1, 2, 3, 4], dtype=dtype), np.array([0, 2, 1, 3], dtype=index_dtype),
                     np.array([0, 2, 2, 4], dtype=index_dtype), (3, 4), full_check=True)


def test_hand_case_exact(backend, dtype, index_dtype):
    W = _hand(dtype, index_dtype)
    # add (2,2)=7, (0,1)=5, (1,3)=6, (0,3)=8, in that (unsorted) order
    M, old_pos, new_pos = _insert(W, [2, 0, 1, 0], [2, 1, 3, 3], [7, 5, 6, 8], backend)
    np.testing.assert_array_equal(M.indptr, [0, 4, 5, 8])
    np.testing.assert_array_equal(M.indices, [0, 1, 2, 3, 3, 1, 2, 3])
    np.testing.assert_array_equal(M.data, np.array([1, 5, 2, 8, 6, 3, 7, 4], dtype=dtype))
    assert old_pos.tolist() == [0, 2, 5, 7]
    assert new_pos.tolist() == [6, 1, 4, 3]
    assert M.indices.dtype == M.indptr.dtype == index_dtype


@pytest.mark.parametrize("shape,density,m", [((1, 1), 0.0, 1), ((10, 8), 0.2, 5),
                                             ((30, 40), 0.1, 100), ((50, 20), 0.6, 300),
                                             ((4, 100), 0.5, 200)])
def test_random(backend, dtype, index_dtype, shape, density, m):
    W = random_csr(*shape, density, dtype=dtype, index_dtype=index_dtype, seed=m)
    rng = np.random.default_rng(m)
    absent = np.argwhere(W.toarray() == 0)
    pick = absent[rng.permutation(len(absent))[:m]]  # random order, not sorted
    rows, cols = pick[:, 0], pick[:, 1]
    values = rng.uniform(-1, 1, len(rows))  # float64 values, cast to W's dtype
    saved = (W.data.copy(), W.indices.copy(), W.indptr.copy())
    M, old_pos, new_pos = _insert(W, rows, cols, values, backend)
    _assert_merged(W, rows, cols, values, M, old_pos, new_pos)
    ref = insert(W, rows, cols, values, backend="reference")
    np.testing.assert_array_equal(M.indptr, ref.matrix.indptr)
    np.testing.assert_array_equal(M.indices, ref.matrix.indices)
    np.testing.assert_array_equal(M.data, ref.matrix.data)
    for before, after in zip(saved, (W.data, W.indices, W.indptr)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("kind", AWKWARD)
def test_awkward(backend, dtype, index_dtype, kind):
    W = awkward_csr(kind, dtype=dtype, index_dtype=index_dtype, seed=6)
    absent = np.argwhere(W.toarray() == 0)
    pick = absent[::2]
    values = np.arange(1, len(pick) + 1, dtype=np.float64)
    M, old_pos, new_pos = _insert(W, pick[:, 0], pick[:, 1], values, backend)
    _assert_merged(W, pick[:, 0], pick[:, 1], values, M, old_pos, new_pos)


def test_insert_nothing(backend, dtype, index_dtype):
    W = random_csr(6, 5, 0.4, dtype=dtype, index_dtype=index_dtype, seed=1)
    empty = np.zeros(0, dtype=np.int64)
    M, old_pos, new_pos = _insert(W, empty, empty, np.zeros(0), backend)
    _assert_merged(W, empty, empty, np.zeros(0), M, old_pos, new_pos)
    Z = awkward_csr("zero_shape", dtype=dtype, index_dtype=index_dtype)
    M, old_pos, new_pos = _insert(Z, empty, empty, np.zeros(0), backend)
    assert M.shape == (0, 4) and M.nnz == 0


def test_fill_every_gap(backend, dtype):
    W = random_csr(7, 9, 0.3, dtype=dtype, seed=2)
    absent = np.argwhere(W.toarray() == 0)[::-1]
    M, old_pos, new_pos = _insert(W, absent[:, 0], absent[:, 1], np.ones(len(absent)), backend)
    assert M.nnz == 63
    _assert_merged(W, absent[:, 0], absent[:, 1], np.ones(len(absent)), M, old_pos, new_pos)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 1.0])
def test_round_trip_prune_then_insert_restores(backend, dtype, index_dtype, fraction):
    W = random_csr(25, 35, 0.2, dtype=dtype, index_dtype=index_dtype, seed=3)
    res = prune_magnitude(csr_to_device(W, backend), fraction, backend=backend)
    removed = np.setdiff1d(np.arange(W.nnz), _np(res.kept))
    M, old_pos, new_pos = _insert(res.matrix.to_device("cpu"), _np(res.removed_rows),
                                  _np(res.removed_cols), W.data[removed], backend)
    np.testing.assert_array_equal(M.indptr, W.indptr)
    np.testing.assert_array_equal(M.indices, W.indices)
    np.testing.assert_array_equal(M.data, W.data)
    np.testing.assert_array_equal(old_pos, _np(res.kept))
    np.testing.assert_array_equal(new_pos, removed)


def test_scipy_input(backend, dtype):
    if backend == "cuda":
        pytest.skip("scipy.sparse input is host memory; the cuda backend takes cupyx/CuPy")
    W = random_csr(10, 10, 0.3, dtype=dtype, seed=4)
    r, c = np.argwhere(W.toarray() == 0)[:4].T
    res = insert(W.to_scipy(), r, c, np.full(4, 2.5), backend=backend)
    _assert_merged(W, r, c, np.full(4, 2.5), res.matrix, res.old_positions, res.new_positions)


def test_state_realigned(backend):
    """Optimizer state moves with old_positions; new entries start at 0."""
    W = random_csr(12, 12, 0.3, dtype=np.float64, seed=5)
    momentum = W.data * 3.0
    r, c = np.argwhere(W.toarray() == 0)[:10].T
    M, old_pos, new_pos = _insert(W, r, c, np.ones(10), backend)
    new_m = np.zeros(M.nnz)
    new_m[old_pos] = momentum
    np.testing.assert_array_equal(new_m[old_pos], M.data[old_pos] * 3.0)
    assert np.all(new_m[new_pos] == 0)
