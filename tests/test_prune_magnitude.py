"""prune_magnitude: remove the smallest |w| (ties: lowest position first), on every backend."""

import numpy as np
import pytest

from conftest import csr_to_device
from ctre_sparse import CSRMatrix, prune_magnitude
from ctre_sparse.testing import awkward_csr, random_csr

AWKWARD = ["empty_rows", "nnz0", "one_col", "one_row", "full_row", "zero_shape"]


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _hand(dtype, index_dtype):
    # positions: 0:(0,0)=0.5  1:(0,3)=-0.1  2:(1,1)=0.1  3:(1,2)=2  4:(2,0)=-0.5  5:(2,2)=0.1
    return CSRMatrix(np.array([0.5, -0.1, 0.1, 2.0, -0.5, 0.1], dtype=dtype),
                     np.array([0, 3, 1, 2, 0, 2], dtype=index_dtype),
                     np.array([0, 2, 4, 6], dtype=index_dtype), (3, 4), full_check=True)


def _prune(W, fraction, backend):
    res = prune_magnitude(csr_to_device(W, backend), fraction, backend=backend)
    M = res.matrix.to_device("cpu")
    return M, _np(res.kept), _np(res.removed_rows), _np(res.removed_cols)


@pytest.mark.parametrize("fraction,kept,removed", [
    (0.0, [0, 1, 2, 3, 4, 5], []),
    (0.1, [0, 1, 2, 3, 4, 5], []),          # floor(0.6) = 0
    (0.34, [0, 3, 4, 5], [1, 2]),           # three-way tie at 0.1: the first two go
    (0.5, [0, 3, 4], [1, 2, 5]),
    (0.7, [3, 4], [0, 1, 2, 5]),            # tie at 0.5 between positions 0 and 4
    (0.9, [3], [0, 1, 2, 4, 5]),
    (1.0, [], [0, 1, 2, 3, 4, 5]),
])
def test_hand_case_exact(backend, dtype, index_dtype, fraction, kept, removed):
    W = _hand(dtype, index_dtype)
    M, got_kept, r_rows, r_cols = _prune(W, fraction, backend)
    rows = np.array([0, 0, 1, 1, 2, 2])
    assert got_kept.dtype == r_rows.dtype == r_cols.dtype == np.int64
    assert got_kept.tolist() == kept
    assert r_rows.tolist() == rows[removed].tolist()
    assert r_cols.tolist() == W.indices[removed].tolist()
    expected = W.toarray()
    expected[rows[removed], W.indices[removed]] = 0
    M.check_format(full_check=True)
    assert M.shape == W.shape and M.dtype == dtype and M.index_dtype == index_dtype
    assert M.nnz == len(kept)
    np.testing.assert_array_equal(M.toarray(), expected)
    np.testing.assert_array_equal(M.data, W.data[kept])


def _assert_consistent(W, M, kept, r_rows, r_cols, n_remove):
    M.check_format(full_check=True)
    assert kept.shape == (W.nnz - n_remove,) and r_rows.shape == r_cols.shape == (n_remove,)
    assert np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(M.data, W.data[kept])
    np.testing.assert_array_equal(M.indices, W.indices[kept])
    removed = np.setdiff1d(np.arange(W.nnz), kept)
    np.testing.assert_array_equal(r_rows, W.row_indices()[removed])
    np.testing.assert_array_equal(r_cols, W.indices[removed])
    # kept + removed rebuild W; every removed |w| <= every kept |w|
    rebuilt = M.toarray()
    rebuilt[r_rows, r_cols] += W.toarray()[r_rows, r_cols]
    np.testing.assert_array_equal(rebuilt, W.toarray())
    if n_remove and kept.size:
        assert np.abs(W.data[removed]).max() <= np.abs(W.data[kept]).min()
    assert M._transpose is None


@pytest.mark.parametrize("shape,density", [((1, 1), 1.0), ((20, 30), 0.1), ((50, 40), 0.5),
                                           ((3, 200), 0.3)])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.5, 0.99, 1.0])
def test_random_matches_reference(backend, dtype, index_dtype, shape, density, fraction):
    W = random_csr(*shape, density, dtype=dtype, index_dtype=index_dtype, seed=len(shape) + 7)
    saved = (W.data.copy(), W.indices.copy(), W.indptr.copy())
    M, kept, r_rows, r_cols = _prune(W, fraction, backend)
    _assert_consistent(W, M, kept, r_rows, r_cols, int(np.floor(fraction * W.nnz)))
    ref = prune_magnitude(W, fraction, backend="reference")
    np.testing.assert_array_equal(kept, ref.kept)
    for before, after in zip(saved, (W.data, W.indices, W.indptr)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("fraction", [0.1, 0.37, 0.5, 0.8])
def test_many_ties_match_reference(backend, dtype, index_dtype, fraction):
    # values from a tiny set with both signs: ties everywhere, decided by position
    W = CSRMatrix.random(40, 30, 0.3, random_state=5, dtype=dtype, index_dtype=index_dtype,
                         values=lambda rng, n: rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], n))
    M, kept, r_rows, r_cols = _prune(W, fraction, backend)
    n_remove = int(np.floor(fraction * W.nnz))
    _assert_consistent(W, M, kept, r_rows, r_cols, n_remove)
    order = np.lexsort((np.arange(W.nnz), np.abs(W.data)))  # by |w|, then position
    np.testing.assert_array_equal(kept, np.sort(order[n_remove:]))


@pytest.mark.parametrize("kind", AWKWARD)
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_awkward(backend, dtype, index_dtype, kind, fraction):
    W = awkward_csr(kind, dtype=dtype, index_dtype=index_dtype, seed=2)
    M, kept, r_rows, r_cols = _prune(W, fraction, backend)
    _assert_consistent(W, M, kept, r_rows, r_cols, int(np.floor(fraction * W.nnz)))


def test_scipy_input(backend, dtype):
    if backend == "cuda":
        pytest.skip("scipy.sparse input is host memory; the cuda backend takes cupyx/CuPy")
    W = random_csr(20, 20, 0.2, dtype=dtype, seed=3)
    res = prune_magnitude(W.to_scipy(), 0.25, backend=backend)
    _assert_consistent(W, res.matrix, res.kept, res.removed_rows, res.removed_cols,
                       int(np.floor(0.25 * W.nnz)))


def test_state_carried_with_kept(backend):
    """Optimizer state aligned with data follows the kept entries: state[kept]."""
    W = random_csr(30, 30, 0.2, dtype=np.float64, seed=4)
    momentum = W.data * 10.0
    M, kept, _, _ = _prune(W, 0.3, backend)
    np.testing.assert_array_equal(momentum[kept], M.data * 10.0)
