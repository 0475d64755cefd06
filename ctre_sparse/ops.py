"""The public functional API: validated once, dispatched on the array type.

Every op accepts a :class:`~ctre_sparse.sparse.CSRMatrix` or a
``scipy.sparse`` CSR matrix (wrapped without copying when it is canonical),
and ``backend="auto" | "reference" | "numba" | "native" | "cuda"``. "auto"
follows the arrays: CuPy goes to ``cuda``, NumPy to the fastest CPU backend
built here. Dense operands are feature-major: ``X`` has shape
``(n_features, batch)``, C-contiguous, and the same float dtype as ``W``.

Errors: shapes, dtypes and contiguity are checked once here and reported as
:class:`ValueError` saying what was expected and what came. With
``check_finite=True`` (the default) the weights are checked for NaN/Inf,
which costs O(nnz), small beside the O(nnz * batch) product.

The element-wise ops of a training step (:func:`gather_columns`,
:func:`bias_activation`, :func:`activation_backward`, :func:`sgd_update`)
live in :mod:`ctre_sparse.training_ops` and are re-exported here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .backends import select_backend
from .checks import check_activations as _check_activations
from .checks import check_dense as _check_dense
from .checks import check_index_array as _check_index_array
from .checks import check_out as _check_out
from .sparse import CSRMatrix
from .training_ops import activation_backward, bias_activation, gather_columns, sgd_update

__all__ = ["as_csr", "spmm", "spmm_t", "sddmm", "cosine_pairs", "topk_cosine",
           "prune_magnitude", "insert", "PruneResult", "InsertResult", "gather_columns",
           "bias_activation", "activation_backward", "sgd_update"]

#: Default memory budget (bytes) for one block of scores in :func:`topk_cosine`.
TOPK_BLOCK_BYTES = 32 << 20


class PruneResult(NamedTuple):
    """What :func:`prune_magnitude` returns."""

    matrix: CSRMatrix
    """The pruned matrix (new object, empty transpose cache)."""
    kept: np.ndarray
    """Sorted positions (int64) in the old ``data`` of the entries kept, so that
    state aligned with ``data`` is carried over as ``state[kept]``."""
    removed_rows: np.ndarray
    """Rows (int64) of the removed connections."""
    removed_cols: np.ndarray
    """Columns (int64) of the removed connections."""


class InsertResult(NamedTuple):
    """What :func:`insert` returns."""

    matrix: CSRMatrix
    """The merged matrix (new object, empty transpose cache)."""
    old_positions: np.ndarray
    """Where each old entry now sits in the new ``data`` (int64, length old nnz)."""
    new_positions: np.ndarray
    """Where each inserted entry sits in the new ``data`` (int64, in input order)."""


# ---------------------------------------------------------------- validation
def as_csr(W, *, name="W"):
    """Return ``W`` as a :class:`CSRMatrix` (sharing arrays where possible).

    Accepts a ``CSRMatrix``, a ``scipy.sparse`` CSR matrix/array or a
    ``cupyx.scipy.sparse`` CSR matrix.
    """
    if isinstance(W, CSRMatrix):
        return W
    if getattr(W, "format", None) == "csr":
        return CSRMatrix.from_scipy(W)
    raise ValueError(f"{name} must be a ctre_sparse.CSRMatrix or a scipy.sparse CSR matrix, "
                     f"got {type(W).__name__}")


def _check_finite_weights(W):
    if not bool(W.xp.all(W.xp.isfinite(W.data))):
        raise ValueError("W contains NaN or Inf values (training diverged or bad input)")


# ------------------------------------------------------------------ products
def spmm(W, X, *, out=None, backend="auto", check_finite=True):
    """Sparse times dense: ``W @ X``.

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in)
    X : ndarray, shape (n_in, batch), C-contiguous, dtype of W
    out : ndarray, shape (n_out, batch), optional
        Written in place and returned.
    backend : str, default "auto"
    check_finite : bool, default True
        Reject NaN/Inf in ``W.data``.

    Returns
    -------
    ndarray, shape (n_out, batch)

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[1., 0.], [0., 2.]], dtype=np.float32))
    >>> spmm(W, np.ones((2, 3), dtype=np.float32))
    array([[1., 1., 1.],
           [2., 2., 2.]], dtype=float32)
    """
    W = as_csr(W)
    _check_dense("X", X, ndim=2, dtype=W.dtype, rows=W.n_in, xp=W.xp)
    out = _check_out(out, (W.n_out, X.shape[1]), W.dtype, W.xp)
    if check_finite:
        _check_finite_weights(W)
    select_backend(backend, W.data, X).spmm(W.indptr, W.indices, W.data, X, out)
    return out


def spmm_t(W, G, *, out=None, backend="auto", check_finite=True):
    """Transposed product ``W.T @ G`` through the cached transpose (no atomics).

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in)
    G : ndarray, shape (n_out, batch), C-contiguous, dtype of W
    out : ndarray, shape (n_in, batch), optional
    backend : str, default "auto"
    check_finite : bool, default True

    Returns
    -------
    ndarray, shape (n_in, batch)

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[1., 0., 3.]], dtype=np.float32))
    >>> spmm_t(W, np.ones((1, 2), dtype=np.float32))
    array([[1., 1.],
           [0., 0.],
           [3., 3.]], dtype=float32)
    """
    W = as_csr(W)
    _check_dense("G", G, ndim=2, dtype=W.dtype, rows=W.n_out, xp=W.xp)
    out = _check_out(out, (W.n_in, G.shape[1]), W.dtype, W.xp)
    if check_finite:
        _check_finite_weights(W)
    t_indptr, t_indices, t_perm = W.transpose_arrays()
    select_backend(backend, W.data, G).spmm_t(t_indptr, t_indices, t_perm, W.data, G, out)
    return out


def sddmm(W, G, X, *, out=None, backend="auto"):
    """Sampled dense-dense product: ``(G @ X.T)`` at W's pattern, aligned with ``W.data``.

    This is the weight gradient restricted to the existing connections:
    ``out[p] = dot(G[row(p), :], X[col(p), :])``.

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in)
        Only its pattern is read.
    G : ndarray, shape (n_out, batch)
    X : ndarray, shape (n_in, batch)
    out : ndarray, shape (nnz,), optional
    backend : str, default "auto"

    Returns
    -------
    ndarray, shape (nnz,)

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[0., 5.]], dtype=np.float32))
    >>> sddmm(W, np.array([[1., 2.]], np.float32), np.array([[9., 9.], [3., 4.]], np.float32))
    array([11.], dtype=float32)
    """
    W = as_csr(W)
    _check_dense("G", G, ndim=2, dtype=W.dtype, rows=W.n_out, xp=W.xp)
    _check_dense("X", X, ndim=2, dtype=W.dtype, rows=W.n_in, xp=W.xp)
    if G.shape[1] != X.shape[1]:
        raise ValueError(f"G and X must have the same batch size, got {G.shape[1]} and "
                         f"{X.shape[1]}")
    out = _check_out(out, (W.nnz,), W.dtype, W.xp)
    select_backend(backend, W.data, G, X).sddmm(W.indptr, W.indices, G, X, out)
    return out


# ------------------------------------------------------------------ cosine
def cosine_pairs(A, B, rows, cols, *, out=None, backend="auto"):
    """Absolute cosine similarity between ``A[rows[k], :]`` and ``B[cols[k], :]``.

    A pair where either vector is all zeros scores 0.

    Parameters
    ----------
    A : ndarray, shape (n_a, S)
    B : ndarray, shape (n_b, S), dtype of A
    rows : int array, shape (k,), values in [0, n_a)
    cols : int array, shape (k,), values in [0, n_b)
    out : ndarray, shape (k,), optional
    backend : str, default "auto"

    Returns
    -------
    ndarray, shape (k,), dtype of A

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1., 0.], [1., 1.]]); B = np.array([[-2., 0.]])
    >>> cosine_pairs(A, B, np.array([0, 1]), np.array([0, 0])).round(4)
    array([1.    , 0.7071])
    """
    xp = _check_activations(A, B)
    _check_index_array("rows", rows, A.shape[0], xp)
    _check_index_array("cols", cols, B.shape[0], xp)
    if rows.shape[0] != cols.shape[0]:
        raise ValueError(f"rows and cols must have the same length, got {rows.shape[0]} and "
                         f"{cols.shape[0]}")
    out = _check_out(out, (rows.shape[0],), A.dtype, xp)
    select_backend(backend, A, B).cosine_pairs(A, B, rows, cols, out)
    return out


def topk_cosine(A, B, k, *, exclude=None, block_bytes=TOPK_BLOCK_BYTES, backend="auto"):
    """The ``k`` absent connections whose two neurons are most alike.

    Scores every pair ``(row, col)`` not stored in ``exclude`` by
    ``|cos(B[row, :], A[col, :])|`` and returns the ``k`` best. Exact, in
    memory O(block + k): scores are formed a block of rows at a time by a
    dense product of the unit-normalised activations and merged into a
    streaming top-k; nothing of size ``n_out * n_in`` is allocated.

    Parameters
    ----------
    A : ndarray, shape (n_in, S)
        Input-side activations (one row per input neuron, S samples).
    B : ndarray, shape (n_out, S), dtype of A
        Output-side activations.
    k : int
        How many pairs to return; fewer come back when fewer pairs are absent.
    exclude : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in), optional
        Existing connections, never returned.
    block_bytes : int, default 32 MiB
        Memory budget of one block of scores.
    backend : str, default "auto"

    Returns
    -------
    rows : int64 ndarray, shape (m,), m = min(k, absent pairs)
    cols : int64 ndarray, shape (m,)
    scores : ndarray, shape (m,), dtype of A
        Ordered by score descending; ties broken by ``(row, col)`` ascending.
        Vectors of norm 0 score 0 with everything.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1., 0.], [0., 1.]]); B = np.array([[2., 0.1], [0., 3.]])
    >>> W = CSRMatrix.from_dense(np.array([[1., 0.], [0., 0.]]))
    >>> rows, cols, scores = topk_cosine(A, B, 2, exclude=W)
    >>> list(zip(rows.tolist(), cols.tolist()))
    [(1, 1), (0, 1)]
    """
    xp = _check_activations(A, B)
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n_out, n_in = B.shape[0], A.shape[0]
    if exclude is None:
        indptr = xp.zeros(n_out + 1, dtype=np.int64)
        indices = xp.zeros(0, dtype=np.int64)
    else:
        W = as_csr(exclude, name="exclude")
        if W.shape != (n_out, n_in):
            raise ValueError(f"exclude must have shape (n_out, n_in) = {(n_out, n_in)} "
                             f"(B rows, A rows), got {W.shape}")
        indptr, indices = W.indptr, W.indices
    block_rows = max(1, int(block_bytes) // max(1, n_in * A.dtype.itemsize))
    return select_backend(backend, A, B).topk_cosine(A, B, k, indptr, indices, block_rows)


# ------------------------------------------------------------------ topology
def prune_magnitude(W, fraction, *, backend="auto"):
    """Remove the ``fraction`` of connections with the smallest ``|w|``.

    ``floor(fraction * nnz)`` entries go; among equal magnitudes the entry
    stored first goes first.

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR
    fraction : float in [0, 1]
    backend : str, default "auto"

    Returns
    -------
    PruneResult
        ``(matrix, kept, removed_rows, removed_cols)``.

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[0.1, -3.], [2., -0.2]]))
    >>> res = prune_magnitude(W, 0.5)
    >>> res.matrix.toarray()
    array([[ 0., -3.],
           [ 2.,  0.]])
    >>> res.kept.tolist(), res.removed_rows.tolist(), res.removed_cols.tolist()
    ([1, 2], [0, 1], [0, 1])
    """
    W = as_csr(W)
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    _check_finite_weights(W)
    xp = W.xp
    n_remove = int(np.floor(fraction * W.nnz))
    kept = select_backend(backend, W.data).prune_magnitude(W.indptr, W.indices, W.data, n_remove)
    keep_mask = xp.zeros(W.nnz, dtype=bool)
    keep_mask[kept] = True
    rows = W.row_indices()
    new_indptr = xp.zeros(W.n_out + 1, dtype=W.index_dtype)
    if W.nnz:
        xp.cumsum(xp.bincount(rows[kept], minlength=W.n_out), out=new_indptr[1:])
    new = CSRMatrix(W.data[kept], W.indices[kept], new_indptr, W.shape)
    removed = ~keep_mask
    return PruneResult(new, kept.astype(np.int64), rows[removed].astype(np.int64),
                       W.indices[removed].astype(np.int64))


def insert(W, rows, cols, values, *, backend="auto"):
    """Add new connections ``(rows[i], cols[i]) = values[i]``, keeping rows sorted.

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in)
    rows, cols : int arrays, shape (m,)
        Positions to add: in range, distinct, and not already stored.
    values : array, shape (m,)
        Cast to W's dtype; must be finite.
    backend : str, default "auto"

    Returns
    -------
    InsertResult
        ``(matrix, old_positions, new_positions)``.

    Raises
    ------
    ValueError
        If a position is out of range, repeated, or already in W.

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[0., 1.], [0., 0.]]))
    >>> res = insert(W, np.array([1, 0]), np.array([0, 0]), np.array([7., 5.]))
    >>> res.matrix.toarray()
    array([[5., 1.],
           [7., 0.]])
    >>> res.old_positions.tolist(), res.new_positions.tolist()
    ([1], [2, 0])
    """
    W = as_csr(W)
    xp = W.xp
    _check_index_array("rows", rows, W.n_out, xp)
    _check_index_array("cols", cols, W.n_in, xp)
    values = xp.asarray(values)
    if not rows.shape[0] == cols.shape[0] == values.shape[0]:
        raise ValueError(f"rows, cols and values must have the same length, got "
                         f"{rows.shape[0]}, {cols.shape[0]} and {values.shape[0]}")
    if values.ndim != 1 or not bool(xp.all(xp.isfinite(values))):
        raise ValueError("values must be a 1-D array of finite numbers")
    _check_insert_positions(W, rows, cols)
    indptr, indices, data, old_pos, new_pos = select_backend(backend, W.data).insert(
        W.indptr, W.indices, W.data, rows, cols, values.astype(W.dtype, copy=False), W.n_in)
    idx = W.index_dtype
    new = CSRMatrix(data, indices.astype(idx, copy=False), indptr.astype(idx, copy=False), W.shape)
    return InsertResult(new, old_pos.astype(np.int64), new_pos.astype(np.int64))


def _check_insert_positions(W, rows, cols):
    xp = W.xp
    new_keys = rows.astype(np.int64) * W.n_in + cols.astype(np.int64)
    sorted_new = xp.sort(new_keys)
    if sorted_new.shape[0] > 1 and bool(xp.any(sorted_new[1:] == sorted_new[:-1])):
        dup = int(sorted_new[1:][sorted_new[1:] == sorted_new[:-1]][0])
        raise ValueError(f"insert positions must be distinct; ({dup // W.n_in}, "
                         f"{dup % W.n_in}) appears more than once")
    if W.nnz and sorted_new.shape[0]:
        old_keys = W.row_indices().astype(np.int64) * W.n_in + W.indices.astype(np.int64)
        pos = xp.minimum(xp.searchsorted(old_keys, sorted_new), W.nnz - 1)
        hit = old_keys[pos] == sorted_new
        if bool(xp.any(hit)):
            key = int(sorted_new[hit][0])
            raise ValueError(f"insert position ({key // W.n_in}, {key % W.n_in}) is already "
                             "stored in W")
