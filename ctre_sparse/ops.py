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

Index structure: no compiled kernel sees a CSR matrix whose structure was
not validated (``indptr`` from 0, non-decreasing, ending at ``nnz``; columns
in range, sorted and unique within each row): see
:meth:`CSRMatrix.validate <ctre_sparse.sparse.CSRMatrix.validate>`. The
check is O(nnz) once per matrix and remembered; a ``scipy.sparse`` input is
wrapped and checked at every call (wrap it once with
:meth:`CSRMatrix.from_scipy` to check it once), and one whose rows are
unsorted or hold duplicates is refused rather than silently copied, so
that positions in ``W.data`` always are the caller's positions.
``check=False`` skips the structure check of a ``CSRMatrix``: a promise by
the caller that it is valid, UNSAFE otherwise (a malformed structure can
then crash the process). An ``out`` array must be writeable and must not
overlap any input.

Denormals: the native backend's products (:func:`spmm`, :func:`spmm_t`,
:func:`sddmm`) run with flush-to-zero and denormals-are-zero on x86:
subnormal inputs count as 0 and subnormal results come out as 0 (float32:
below about 1.2e-38 in magnitude; float64: 2.2e-308). The other backends
keep IEEE subnormals, so results can differ there by at most a subnormal.

The element-wise ops of a training step (:func:`gather_columns`,
:func:`bias_activation`, :func:`activation_backward`, :func:`sgd_update`)
live in :mod:`ctre_sparse.training_ops` and are re-exported here.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .backends import select_backend
from .checks import check_activations as _check_activations
from .checks import check_dense as _check_dense
from .checks import check_int as _check_int
from .checks import check_index_array as _check_index_array
from .checks import check_out as _check_out
from .device import device_of
from .sparse import CSRMatrix
from .training_ops import activation_backward, bias_activation, gather_columns, sgd_update
from .validation import check_allocation

__all__ = ["as_csr", "spmm", "spmm_t", "sddmm", "cosine_pairs", "topk_cosine",
           "topk_abs_product", "prune_magnitude", "insert", "PruneResult", "InsertResult",
           "gather_columns",
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


def _csr_operand(W, check, name="W"):
    """``as_csr(W)``, its structure validated (remembered) unless ``check`` is False."""
    W = as_csr(W, name=name)
    if check:
        W.validate()
    return W


def _csr_inputs(W):
    """W's arrays by name, for the overlap check of an output.

    A validated NumPy matrix's index arrays are private and read-only from
    their creation on, so no writeable ``out`` can overlap them: only
    ``data`` is checked then (each check costs about half a microsecond).
    CuPy arrays cannot be locked: all are checked.
    """
    if W.validated and device_of(W.data) == "cpu":
        return {"W.data": W.data}
    return {"W.data": W.data, "W.indices": W.indices, "W.indptr": W.indptr}


def _check_finite_weights(W):
    if not bool(W.xp.all(W.xp.isfinite(W.data))):
        raise ValueError("W contains NaN or Inf values (training diverged or bad input)")


# ------------------------------------------------------------------ products
def spmm(W, X, *, out=None, backend="auto", check_finite=True, check=True):
    """Sparse times dense: ``W @ X``.

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in)
    X : ndarray, shape (n_in, batch), C-contiguous, dtype of W
    out : ndarray, shape (n_out, batch), optional
        Written in place and returned; writeable, not overlapping X or W.
    backend : str, default "auto"
    check_finite : bool, default True
        Reject NaN/Inf in ``W.data``.
    check : bool, default True
        Validate W's index structure (O(nnz) the first time, then
        remembered; see :meth:`CSRMatrix.validate`). False skips it: UNSAFE,
        a promise that the structure is valid.

    Returns
    -------
    ndarray, shape (n_out, batch)
        On the native backend subnormal values are flushed to zero (see the
        module notes).

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[1., 0.], [0., 2.]], dtype=np.float32))
    >>> spmm(W, np.ones((2, 3), dtype=np.float32))
    array([[1., 1., 1.],
           [2., 2., 2.]], dtype=float32)
    """
    W = _csr_operand(W, check)
    _check_dense("X", X, ndim=2, dtype=W.dtype, rows=W.n_in, xp=W.xp)
    out = _check_out(out, (W.n_out, X.shape[1]), W.dtype, W.xp, {"X": X, **_csr_inputs(W)})
    if check_finite:
        _check_finite_weights(W)
    select_backend(backend, W.data, X).spmm(W.indptr, W.indices, W.data, X, out)
    return out


def spmm_t(W, G, *, out=None, backend="auto", check_finite=True, check=True):
    """Transposed product ``W.T @ G`` through the cached transpose (no atomics).

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in)
    G : ndarray, shape (n_out, batch), C-contiguous, dtype of W
    out : ndarray, shape (n_in, batch), optional
        Writeable, not overlapping G or W.
    backend : str, default "auto"
    check_finite : bool, default True
    check : bool, default True
        Validate W's index structure (O(nnz) the first time, then
        remembered; see :meth:`CSRMatrix.validate`). False skips it: UNSAFE,
        a promise that the structure is valid.

    Returns
    -------
    ndarray, shape (n_in, batch)
        Subnormals flushed to zero on the native backend.

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[1., 0., 3.]], dtype=np.float32))
    >>> spmm_t(W, np.ones((1, 2), dtype=np.float32))
    array([[1., 1.],
           [0., 0.],
           [3., 3.]], dtype=float32)
    """
    W = _csr_operand(W, check)
    _check_dense("G", G, ndim=2, dtype=W.dtype, rows=W.n_out, xp=W.xp)
    t_indptr, t_indices, t_perm = W.transpose_arrays(check=check)
    inputs = {"G": G, **_csr_inputs(W)}
    if device_of(W.data) != "cpu":  # on the CPU the cached transpose is private and read-only
        inputs.update({"W.T indptr": t_indptr, "W.T indices": t_indices, "W.T perm": t_perm})
    out = _check_out(out, (W.n_in, G.shape[1]), W.dtype, W.xp, inputs)
    if check_finite:
        _check_finite_weights(W)
    select_backend(backend, W.data, G).spmm_t(t_indptr, t_indices, t_perm, W.data, G, out)
    return out


def sddmm(W, G, X, *, out=None, backend="auto", check=True):
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
        Writeable, not overlapping G, X or W.
    backend : str, default "auto"
    check : bool, default True
        Validate W's index structure (O(nnz) the first time, then
        remembered; see :meth:`CSRMatrix.validate`). False skips it: UNSAFE,
        a promise that the structure is valid.

    Returns
    -------
    ndarray, shape (nnz,)
        ``out[p]`` belongs to ``W.data[p]`` (for a scipy input: to its
        ``.data[p]``). Subnormals flushed to zero on the native backend.

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[0., 5.]], dtype=np.float32))
    >>> sddmm(W, np.array([[1., 2.]], np.float32), np.array([[9., 9.], [3., 4.]], np.float32))
    array([11.], dtype=float32)
    """
    W = _csr_operand(W, check)
    _check_dense("G", G, ndim=2, dtype=W.dtype, rows=W.n_out, xp=W.xp)
    _check_dense("X", X, ndim=2, dtype=W.dtype, rows=W.n_in, xp=W.xp)
    if G.shape[1] != X.shape[1]:
        raise ValueError(f"G and X must have the same batch size, got {G.shape[1]} and "
                         f"{X.shape[1]}")
    out = _check_out(out, (W.nnz,), W.dtype, W.xp, {"G": G, "X": X, **_csr_inputs(W)})
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
        Writeable, not overlapping the other operands.
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
    out = _check_out(out, (rows.shape[0],), A.dtype, xp, {"A": A, "B": B, "rows": rows,
                                                          "cols": cols})
    select_backend(backend, A, B).cosine_pairs(A, B, rows, cols, out)
    return out


def topk_cosine(A, B, k, *, exclude=None, block_bytes=TOPK_BLOCK_BYTES, backend="auto",
                check=True):
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
        How many pairs to return; fewer come back when fewer pairs are absent
        (a larger ``k`` is cut to that number before anything is allocated).
    exclude : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in), optional
        Existing connections, never returned.
    block_bytes : int, default 32 MiB
        Memory budget of one block of scores (at least one row of ``n_in``
        scores is formed at a time, at most all ``n_out`` rows).
    backend : str, default "auto"
    check : bool, default True
        Validate the structure of ``exclude`` (see :func:`spmm`); False is
        UNSAFE, a promise that it is valid.

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
    args = _topk_args(A, B, k, exclude, block_bytes, check, "topk_cosine")
    return select_backend(backend, A, B).topk_cosine(A, B, *args)


def topk_abs_product(A, B, k, *, exclude=None, block_bytes=TOPK_BLOCK_BYTES, backend="auto",
                     check=True):
    """The ``k`` absent pairs with the largest ``|B[row, :] . A[col, :]|``.

    :func:`topk_cosine` without the normalisation, by the same blocked
    products and streaming top-k: exact, memory O(block + k), nothing of size
    ``n_out * n_in``. With ``A`` a layer's inputs and ``B`` the gradient of
    the loss at its outputs (pre-activation), both over the same S samples,
    the score is ``|dL/dW[row, col]|`` summed over the samples, so this picks
    the absent connections with the largest gradient magnitude (RigL's
    growth, Evci et al. 2020) without forming the dense gradient ``B @ A.T``.

    Parameters
    ----------
    A : ndarray, shape (n_in, S)
    B : ndarray, shape (n_out, S), dtype of A
    k : int
    exclude : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in), optional
    block_bytes : int, default 32 MiB
    backend : str, default "auto"
    check : bool, default True
        As in :func:`topk_cosine`.

    Returns
    -------
    rows, cols : int64 ndarrays, shape (m,), m = min(k, absent pairs)
    scores : ndarray, shape (m,), dtype of A
        Score descending; ties by ``(row, col)`` ascending.

    Raises
    ------
    ValueError
        As :func:`topk_cosine`, and when a score could overflow the dtype
        (``S * max|A| * max|B|`` beyond its largest finite value).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1., 0.], [0., 2.]]); B = np.array([[3., 1.], [0., -1.]])
    >>> W = CSRMatrix.from_dense(np.array([[1., 0.], [0., 0.]]))
    >>> rows, cols, scores = topk_abs_product(A, B, 2, exclude=W)
    >>> list(zip(rows.tolist(), cols.tolist())), scores.tolist()
    ([(0, 1), (1, 1)], [2.0, 2.0])
    """
    args = _topk_args(A, B, k, exclude, block_bytes, check, "topk_abs_product")
    _check_no_overflow(A, B)
    return select_backend(backend, A, B).topk_abs_product(A, B, *args)


def _check_no_overflow(A, B):
    """Refuse products that could overflow: an Inf or NaN score would have no order."""
    if A.size == 0 or B.size == 0:
        return
    bound = (float(abs(A).max()) * float(abs(B).max())) * A.shape[1]
    if not bound < float(np.finfo(A.dtype).max):
        raise ValueError(f"A and B are too large for {np.dtype(A.dtype).name} scores: "
                         f"S * max|A| * max|B| = {bound:.3g} may overflow; scale them down")


def _topk_args(A, B, k, exclude, block_bytes, check, op):
    """Validated ``(k, indptr, indices, block_rows)`` of a blocked top-k over absent pairs."""
    xp = _check_activations(A, B)
    k = _check_int("k", k, 0)
    block_bytes = _check_int("block_bytes", block_bytes, 1)
    n_out, n_in = B.shape[0], A.shape[0]
    if exclude is None:
        indptr = xp.zeros(n_out + 1, dtype=np.int64)
        indices = xp.zeros(0, dtype=np.int64)
    else:
        W = _csr_operand(exclude, check, name="exclude")
        if W.shape != (n_out, n_in):
            raise ValueError(f"exclude must have shape (n_out, n_in) = {(n_out, n_in)} "
                             f"(B rows, A rows), got {W.shape}")
        indptr, indices = W.indptr, W.indices
    k = min(k, max(0, n_out * n_in - int(indices.shape[0])))  # the absent pairs (no repeats)
    row_bytes = max(1, n_in * A.dtype.itemsize)
    block_rows = min(max(1, block_bytes // row_bytes), max(1, n_out))
    # a block of scores, plus the running top and its merge buffers (key + score each)
    check_allocation(block_rows * row_bytes + 4 * k * (8 + A.dtype.itemsize),
                     f"{op} with k={k} and blocks of {block_rows} rows")
    return k, indptr, indices, block_rows


# ------------------------------------------------------------------ topology
def prune_magnitude(W, fraction, *, column_scale=None, backend="auto", check=True):
    """Remove the ``fraction`` of connections with the smallest ``|w|`` (or ``|w| * scale``).

    ``floor(fraction * nnz)`` entries go; among equal magnitudes (scores) the
    entry stored first goes first.

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR
    fraction : float in [0, 1]
    column_scale : ndarray, shape (n_in,), optional
        Finite, non-negative weights of the input neurons (columns), dtype
        and device of ``W``. Given, the entries with the smallest score
        ``|w_ij| * column_scale[j]`` go: with the inputs' standard deviations
        over some samples, the connections whose removal moves their outputs
        least (activity-aware pruning; docs/accuracy.md, step 9). None: ``|w|``.
    backend : str, default "auto"
    check : bool, default True
        Validate W's index structure (see :func:`spmm`); False is UNSAFE.

    Returns
    -------
    PruneResult
        ``(matrix, kept, removed_rows, removed_cols)``; ``kept`` are
        positions in ``W.data`` (for a scipy input, in its ``.data``).

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
    >>> prune_magnitude(W, 0.5, column_scale=np.array([100., 0.01])).matrix.toarray()
    array([[0.1, 0. ],
           [2. , 0. ]])
    """
    W = _csr_operand(W, check)
    fraction = _check_fraction(fraction)
    _check_finite_weights(W)
    xp = W.xp
    n_remove = int(np.floor(fraction * W.nnz))
    scores = W.data if column_scale is None else _pruning_scores(W, column_scale)
    kept = select_backend(backend, W.data).prune_magnitude(W.indptr, W.indices, scores, n_remove)
    keep_mask = xp.zeros(W.nnz, dtype=bool)
    keep_mask[kept] = True
    removed = xp.flatnonzero(~keep_mask)
    del keep_mask
    # rows of the removed entries only (no per-entry row array: O(removed) memory)
    removed_rows = xp.searchsorted(W.indptr, removed, side="right").astype(np.int64) - 1
    new_indptr = xp.zeros(W.n_out + 1, dtype=W.index_dtype)
    if W.nnz:
        xp.cumsum(xp.bincount(removed_rows, minlength=W.n_out), out=new_indptr[1:])
        xp.subtract(W.indptr, new_indptr, out=new_indptr)
    new = CSRMatrix.adopt(W.data[kept], W.indices[kept], new_indptr, W.shape,
                          valid=W.validated)
    return PruneResult(new, kept.astype(np.int64, copy=False), removed_rows,
                       W.indices[removed].astype(np.int64))


def _pruning_scores(W, scale):
    """``|w_ij| * scale[j]`` per stored entry, after checking ``scale`` (see prune_magnitude)."""
    _check_dense("column_scale", scale, ndim=1, dtype=W.dtype, rows=W.n_in, xp=W.xp,
                 contiguous=False)
    xp = W.xp
    if not bool(xp.all(xp.isfinite(scale) & (scale >= 0))):
        raise ValueError("column_scale must be finite and >= 0 (one weight per input neuron)")
    return xp.abs(W.data) * scale[W.indices]


def _check_fraction(fraction):
    if isinstance(fraction, bool) or not isinstance(fraction, (numbers.Real, np.floating,
                                                               np.integer)):
        raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}")
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return fraction


def insert(W, rows, cols, values, *, backend="auto", check=True):
    """Add new connections ``(rows[i], cols[i]) = values[i]``, keeping rows sorted.

    Parameters
    ----------
    W : CSRMatrix or scipy.sparse CSR, shape (n_out, n_in)
    rows, cols : int arrays, shape (m,)
        Positions to add: in range, distinct, and not already stored.
    values : array, shape (m,)
        Real numbers, cast to W's dtype; must be finite there (a value that
        overflows W's dtype, such as 1e300 for float32, is refused).
    backend : str, default "auto"
    check : bool, default True
        Validate W's index structure (see :func:`spmm`); False is UNSAFE.

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
    W = _csr_operand(W, check)
    xp = W.xp
    _check_index_array("rows", rows, W.n_out, xp)
    _check_index_array("cols", cols, W.n_in, xp)
    values = _insert_values(values, W.dtype, xp)
    if not rows.shape[0] == cols.shape[0] == values.shape[0]:
        raise ValueError(f"rows, cols and values must have the same length, got "
                         f"{rows.shape[0]}, {cols.shape[0]} and {values.shape[0]}")
    _check_insert_positions(W, rows, cols)
    indptr, indices, data, old_pos, new_pos = select_backend(backend, W.data).insert(
        W.indptr, W.indices, W.data, rows, cols, values, W.n_in)
    idx = W.index_dtype
    new = CSRMatrix.adopt(data, indices.astype(idx, copy=False),
                          indptr.astype(idx, copy=False), W.shape, valid=W.validated)
    return InsertResult(new, old_pos.astype(np.int64), new_pos.astype(np.int64))


def _insert_values(values, dtype, xp):
    """``values`` as a 1-D array of ``dtype``, refused if not finite there (overflow included)."""
    values = xp.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise ValueError(f"values must be a 1-D array of real numbers, got dtype {values.dtype} "
                         f"with shape {tuple(values.shape)}")
    if not bool(xp.all(xp.isfinite(values))):
        raise ValueError("values must be a 1-D array of finite numbers")
    with np.errstate(over="ignore"):
        cast = values.astype(dtype, copy=False)
    if not bool(xp.all(xp.isfinite(cast))):
        raise ValueError(f"values must fit in W's dtype {np.dtype(dtype).name} (largest "
                         f"magnitude {np.finfo(dtype).max:.4g}), got |value| up to "
                         f"{float(xp.abs(values).max()):.4g}")
    return cast


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
