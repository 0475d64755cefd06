"""The CSR weight container.

A layer's weight ``W`` has shape ``(n_out, n_in)`` and is stored as CSR over
its output rows: ``indptr[n_out + 1]``, ``indices[nnz]`` (column = input
neuron, sorted and unique within each row) and ``data[nnz]`` (float32 or
float64). The arrays may be NumPy or CuPy arrays; all three share one array
module.

The transpose needed by ``W.T @ G`` is cached as CSC arrays plus a
permutation into ``data`` (see :meth:`CSRMatrix.transpose_arrays`). It
depends only on the sparsity pattern, so updating ``data`` in place keeps it
valid; topology edits (:func:`ctre_sparse.ops.prune_magnitude`,
:func:`ctre_sparse.ops.insert`) return a new matrix with an empty cache.

Validation contract (what makes the compiled kernels safe): the O(nnz)
structure check (``indptr`` from 0, non-decreasing, ending at ``nnz``;
columns in range, sorted and unique within each row) runs once per matrix,
at its first op or :meth:`CSRMatrix.validate`, and is remembered. So that
nothing can change the arrays behind the remembered check, a validated
NumPy matrix holds its ``indices`` and ``indptr`` as private read-only
arrays: validation copies arrays that came from outside (the caller's
arrays stay theirs and stay writeable), and the arrays ctre_sparse made
itself (:meth:`CSRMatrix.random`, the results of ops) are made read-only
at once. Writing into them raises; assigning ``W.indices`` or ``W.indptr``
drops the check, which then runs again at the next op. ``data`` stays
shared and writeable (values cannot make a kernel go out of bounds).
CuPy arrays cannot be made read-only: editing a validated GPU matrix's
index arrays in place is not detected (assign new arrays instead).
"""

from __future__ import annotations

import logging

import numpy as np

from .device import array_module, check_device, device_of, module_for, row_of_entries, to_module
from .validation import (NOT_CANONICAL, check_allocation, check_convertible, check_structure,
                         checked_copy, read_only, structure_code)

logger = logging.getLogger(__name__)

__all__ = ["CSRMatrix", "get_index_dtype", "array_module", "FLOAT_DTYPES", "INDEX_DTYPES"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_INT32_MAX = np.iinfo(np.int32).max


def get_index_dtype(*sizes):
    """Return the index dtype policy's choice for the given sizes.

    Parameters
    ----------
    *sizes : int
        Largest values an index array must hold (``nnz``, ``n_out``, ``n_in``).

    Returns
    -------
    numpy.dtype
        ``int32`` when every size fits in it, else ``int64``.

    Examples
    --------
    >>> get_index_dtype(10, 2**20)
    dtype('int32')
    >>> get_index_dtype(2**31)
    dtype('int64')
    """
    biggest = max((int(s) for s in sizes), default=0)
    return np.dtype(np.int32) if biggest <= _INT32_MAX else np.dtype(np.int64)


class CSRMatrix:
    """Sparse weight matrix of shape ``(n_out, n_in)`` in CSR form.

    Parameters
    ----------
    data : array of float32 or float64, shape (nnz,)
        Values, aligned with ``indices``.
    indices : array of int32 or int64, shape (nnz,)
        Column (input neuron) of each value; sorted and unique within a row.
    indptr : array of int32 or int64, shape (n_out + 1,)
        Row pointers; ``indptr[0] == 0`` and ``indptr[-1] == nnz``.
    shape : tuple of int
        ``(n_out, n_in)``.
    full_check : bool, default False
        Also run the O(nnz) checks now (:meth:`validate`, and finite
        values). Otherwise only the O(1) checks (dtypes, lengths) run here
        and the structure is validated at the first op.

    Raises
    ------
    ValueError
        If the arrays do not form a valid CSR matrix; the message says what
        was expected and what came.

    Notes
    -----
    The arrays are wrapped, not copied. Validation (at the first op, or
    :meth:`validate`, or ``full_check=True``) then replaces ``indices`` and
    ``indptr`` by private read-only copies, so that the validated structure
    cannot change behind the matrix's back; ``data`` stays the caller's array.

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix(np.array([1.0, 2.0], dtype=np.float32),
    ...               np.array([0, 2], dtype=np.int32),
    ...               np.array([0, 1, 1, 2], dtype=np.int32), (3, 4))
    >>> W.nnz, W.shape
    (2, (3, 4))
    >>> W.toarray()[2]
    array([0., 0., 2., 0.], dtype=float32)
    """

    def __init__(self, data, indices, indptr, shape, *, full_check=False):
        self._data = data
        self._indices = indices
        self._indptr = indptr
        self._shape = (int(shape[0]), int(shape[1]))
        self._transpose = None
        self._rows = None
        self._valid = False  # structure checked (or built valid) and its index arrays private
        self.check_format(full_check=full_check)

    @classmethod
    def adopt(cls, data, indices, indptr, shape, *, valid):
        """Wrap index arrays that the caller has just made and hands over.

        With ``valid=True`` the caller promises that the structure is what
        :meth:`validate` checks and that nothing else refers to ``indices``
        or ``indptr``: they are made read-only and the O(nnz) check is
        skipped. UNSAFE when the promise is false, like ``check=False``.
        With ``valid=False`` this is the plain constructor. ctre_sparse's
        own factories and ops use it for the arrays they build.
        """
        W = cls(data, indices, indptr, shape)
        if valid:
            W._indices, W._indptr = read_only(W._indices), read_only(W._indptr)
            W._valid = True
        return W

    def __setstate__(self, state):
        """Unpickling and ``copy.deepcopy``: the arrays come back writeable; lock them again.

        A pickle made before the arrays became properties (plain ``data``,
        ``indices``, ``indptr``, ``shape`` attributes) loads unvalidated.
        """
        state = dict(state)
        for name in ("data", "indices", "indptr", "shape"):
            if name in state:
                state["_" + name] = state.pop(name)
        state.setdefault("_valid", False)
        self.__dict__.update(state)
        if self._valid:
            self._indices, self._indptr = read_only(self._indices), read_only(self._indptr)
            if self._transpose is not None:
                self._transpose = tuple(read_only(a) for a in self._transpose)
            if self._rows is not None:
                self._rows = read_only(self._rows)

    # ------------------------------------------------------------------ arrays
    @property
    def data(self):
        """Values, shape (nnz,), float32 or float64; shared with the caller, writeable."""
        return self._data

    @data.setter
    def data(self, value):
        old, self._data = self._data, value
        try:
            self.check_format()
        except ValueError:
            self._data = old
            raise

    @property
    def indices(self):
        """Column of every value, shape (nnz,); read-only once the matrix is validated."""
        return self._indices

    @indices.setter
    def indices(self, value):
        self._indices = value
        self.invalidate_cache()

    @property
    def indptr(self):
        """Row pointers, shape (n_out + 1,); read-only once the matrix is validated."""
        return self._indptr

    @indptr.setter
    def indptr(self, value):
        self._indptr = value
        self.invalidate_cache()

    @property
    def shape(self):
        """``(n_out, n_in)``."""
        return self._shape

    @shape.setter
    def shape(self, value):
        self._shape = (int(value[0]), int(value[1]))
        self.invalidate_cache()

    @property
    def validated(self):
        """True once the O(nnz) structure check has passed (see :meth:`validate`)."""
        return self._valid

    # ------------------------------------------------------------------ basics
    @property
    def nnz(self):
        """Number of stored connections."""
        return int(self.indices.shape[0])

    @property
    def n_out(self):
        """Number of rows (output neurons)."""
        return self.shape[0]

    @property
    def n_in(self):
        """Number of columns (input neurons)."""
        return self.shape[1]

    @property
    def dtype(self):
        """Value dtype (float32 or float64)."""
        return self.data.dtype

    @property
    def index_dtype(self):
        """Index dtype (int32 or int64), shared by ``indices`` and ``indptr``."""
        return self.indices.dtype

    @property
    def xp(self):
        """The array module of the stored arrays (numpy or cupy)."""
        return array_module(self.data)

    @property
    def density(self):
        """Fraction of the ``n_out * n_in`` positions that are stored."""
        total = self.shape[0] * self.shape[1]
        return self.nnz / total if total else 0.0

    def __repr__(self):
        return (f"CSRMatrix(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, "
                f"index_dtype={self.index_dtype}, device={device_of(self.data)})")

    # -------------------------------------------------------------- validation
    def check_format(self, full_check=False):
        """Check the CSR invariants.

        Parameters
        ----------
        full_check : bool, default False
            If True, also check (in O(nnz)) that indices are in bounds, sorted
            and unique within each row, that ``indptr`` is non-decreasing
            (both by :meth:`validate`, remembered) and that the values are
            finite (not remembered: values change).

        Raises
        ------
        ValueError
            On the first violated invariant.
        """
        n_out, n_in = self.shape
        if n_out < 0 or n_in < 0:
            raise ValueError(f"shape must be non-negative, got {self.shape}")
        for name in ("data", "indices", "indptr"):
            arr = getattr(self, name)
            if getattr(arr, "ndim", None) != 1:
                raise ValueError(f"CSR {name} must be a 1-D array, got {type(arr).__name__} "
                                 f"with ndim={getattr(arr, 'ndim', None)}")
            if not arr.flags.c_contiguous:
                raise ValueError(f"CSR {name} must be contiguous")
        if self.data.dtype not in FLOAT_DTYPES:
            raise ValueError(f"CSR data must be float32 or float64, got {self.data.dtype}")
        if self.indices.dtype not in INDEX_DTYPES:
            raise ValueError(f"CSR indices must be int32 or int64, got {self.indices.dtype}")
        if self.indptr.dtype != self.indices.dtype:
            raise ValueError(f"CSR indptr dtype {self.indptr.dtype} must equal indices dtype "
                             f"{self.indices.dtype}")
        if self.indptr.shape[0] != n_out + 1:
            raise ValueError(f"CSR indptr must have n_out + 1 = {n_out + 1} entries, "
                             f"got {self.indptr.shape[0]}")
        if self.data.shape[0] != self.indices.shape[0]:
            raise ValueError(f"CSR data ({self.data.shape[0]}) and indices "
                             f"({self.indices.shape[0]}) must have the same length")
        if self.indices.dtype == np.int32 and max(n_out, n_in, self.nnz) > _INT32_MAX:
            raise ValueError("int32 indices cannot address this matrix; use int64")
        if array_module(self.indices) is not array_module(self.data) or \
                array_module(self.indptr) is not array_module(self.data):
            raise ValueError("CSR data, indices and indptr must all be NumPy or all be CuPy arrays")
        if full_check:
            self.validate()
            if not bool(self.xp.all(self.xp.isfinite(self.data))):
                raise ValueError("CSR data contains NaN or Inf")

    def validate(self):
        """Check the index structure once (O(nnz)) and remember it; return ``self``.

        Checks that ``indptr`` starts at 0, never decreases and ends at
        ``nnz``, and that the columns of every row lie in ``[0, n_in)`` and
        strictly increase (sorted, no duplicates): what the compiled kernels
        rely on. Every op calls it (unless told ``check=False``); after the
        first call it costs nothing until ``indices`` or ``indptr`` is
        assigned again.

        For NumPy arrays the checked ``indices`` and ``indptr`` are private
        read-only copies (unless ctre_sparse made the arrays itself), taken
        before the check: the caller's own arrays, or views of them, cannot
        change what was checked. CuPy arrays are checked in place and cannot
        be locked (see the module notes).

        Raises
        ------
        ValueError
            Naming the first violation; the matrix is then left unchanged.
        """
        if self._valid:
            return self
        self.check_format()
        indptr, indices = self._indptr, self._indices
        if device_of(self.data) == "cpu":  # check private copies: no alias can change them
            code, indptr, indices = checked_copy(indptr, indices, self.n_in)
            check_structure(indptr, indices, self.n_in, code)
            indptr, indices = read_only(indptr), read_only(indices)
        else:
            check_structure(indptr, indices, self.n_in)
        self._indptr, self._indices = indptr, indices
        self._transpose = self._rows = None  # derived from the arrays before the check
        self._valid = True
        return self

    # -------------------------------------------------------------- derived
    def transpose_arrays(self, *, check=True):
        """Return the cached transpose ``(t_indptr, t_indices, t_perm)``.

        ``t_indptr[n_in + 1]`` and ``t_indices[nnz]`` describe ``W.T`` in CSR
        form (rows = input neurons, sorted output rows within each), and
        ``t_perm[nnz]`` maps each transposed entry to its position in
        ``data``: ``W.T`` has value ``data[t_perm[q]]`` at ``q``. Built once in
        O(nnz + n_in) and reused until the topology changes. Validates the
        matrix first (:meth:`validate`) unless ``check=False``, a promise by
        the caller that the structure is valid (unsafe otherwise); the
        arrays are read-only.
        """
        if check:
            self.validate()
        if self._transpose is None:
            self._transpose = tuple(read_only(a) for a in _build_transpose(self))
        return self._transpose

    def row_indices(self):
        """Return the row (output neuron) of every stored entry, shape (nnz,)."""
        if self._rows is None:
            self._rows = read_only(row_of_entries(self.indptr, self.nnz, self.index_dtype))
        return self._rows

    def invalidate_cache(self):
        """Drop cached derived arrays and the validation; call after editing indices in place.

        (A validated NumPy matrix's index arrays are read-only, so only an
        unvalidated one can be edited in place.)
        """
        self._transpose = None
        self._rows = None
        self._valid = False

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_scipy(cls, matrix, *, dtype=None, full_check=False, canonicalize=False):
        """Wrap a ``scipy.sparse`` matrix (or ``cupyx`` CSR) and validate its structure.

        A CSR input shares its ``data`` array with the result (unless
        ``dtype`` casts it), so positions in ``W.data`` (what
        :func:`~ctre_sparse.ops.sddmm` returns values for and
        :func:`~ctre_sparse.ops.prune_magnitude` reports as ``kept``) are
        positions in ``matrix.data``. Its structure is validated here, O(nnz)
        (:meth:`validate`: ``indices`` and ``indptr`` become private
        read-only copies). Other formats (CSC, COO, ...) are converted to a
        new canonical CSR matrix; CSC and COO are bounds-checked before
        scipy converts them.

        Parameters
        ----------
        matrix : scipy.sparse matrix or array, or cupyx.scipy.sparse matrix
        dtype : dtype, optional
            Cast values to this dtype (copies when it differs).
        full_check : bool, default False
            Also check that the values are finite.
        canonicalize : bool, default False
            A CSR input whose rows have unsorted or duplicate columns is
            refused with a ValueError unless this is True; then
            ``matrix.sum_duplicates()`` is called first, which sorts the rows
            and sums duplicates *in the caller's matrix*, in place, so that
            ``matrix.data`` and ``W.data`` stay aligned.

        Raises
        ------
        ValueError
            If the structure is malformed (``indptr``, column bounds), or not
            canonical and ``canonicalize`` is False.

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp
        >>> m = sp.csr_matrix((np.array([1., 2.]), np.array([1, 0]), np.array([0, 2])),
        ...                   shape=(1, 2))
        >>> CSRMatrix.from_scipy(m)
        Traceback (most recent call last):
        ...
        ValueError: CSR column indices must be sorted and unique within each row; unsorted index 0 \
at position 1; sort each row and merge duplicates first (for a scipy matrix: m.sum_duplicates(), \
or CSRMatrix.from_scipy(m, canonicalize=True))
        >>> W = CSRMatrix.from_scipy(m, canonicalize=True)
        >>> m.data, W.data is m.data
        (array([2., 1.]), True)
        """
        m = matrix
        if getattr(m, "format", None) != "csr":
            check_convertible(m)
            m = m.tocsr()
            m.sum_duplicates()  # a fresh matrix of our own: sorting it in place hides nothing
        W = cls._wrap_scipy(m, dtype)
        try:
            W.validate()
        except ValueError:
            if not canonicalize or structure_code(W.indptr, W.indices, W.n_in) != NOT_CANONICAL:
                raise
            m.sum_duplicates()  # safe: bounds and indptr are checked
            W = cls._wrap_scipy(m, dtype).validate()
        if full_check:
            W.check_format(full_check=True)
        return W

    @classmethod
    def _wrap_scipy(cls, m, dtype):
        """A CSRMatrix around a CSR matrix's arrays (cheap checks only)."""
        data = m.data
        if dtype is not None and data.dtype != np.dtype(dtype):
            data = data.astype(dtype)
        elif data.dtype not in FLOAT_DTYPES:
            raise ValueError(f"sparse matrix values must be float32 or float64, got {data.dtype} "
                             "(pass dtype=... to cast)")
        indices, indptr = m.indices, m.indptr
        if indices.dtype != indptr.dtype and indices.dtype.kind == indptr.dtype.kind == "i":
            idx = np.promote_types(indices.dtype, indptr.dtype)
            indices, indptr = indices.astype(idx), indptr.astype(idx)
        return cls(data, indices, indptr, m.shape)

    def to_scipy(self):
        """Return a ``scipy.sparse.csr_matrix`` (or ``cupyx`` one) sharing the arrays.

        The matrix is validated first (:meth:`validate`), so scipy gets a
        canonical structure; its index arrays are then read-only.
        """
        self.validate()
        if device_of(self.data) == "cpu":
            import scipy.sparse as sp

            m = sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape,
                              copy=False)
            # scipy downcasts int64 indices that fit in int32 (a copy): share ours instead
            m.indices, m.indptr = self.indices, self.indptr
            return m
        import cupyx.scipy.sparse as csp

        return csp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)

    @classmethod
    def from_dense(cls, dense, *, index_dtype=None):
        """Build from a dense 2-D array, storing its nonzeros (for tests and examples)."""
        xp = array_module(dense)
        dense = xp.asarray(dense)
        if dense.ndim != 2:
            raise ValueError(f"dense input must be 2-D, got shape {dense.shape}")
        rows, cols = xp.nonzero(dense)
        idx = np.dtype(index_dtype) if index_dtype is not None else get_index_dtype(
            rows.shape[0], *dense.shape)
        indptr = xp.zeros(dense.shape[0] + 1, dtype=idx)
        xp.cumsum(xp.bincount(rows, minlength=dense.shape[0]), out=indptr[1:])
        return cls.adopt(xp.ascontiguousarray(dense[rows, cols]), cols.astype(idx), indptr,
                         dense.shape, valid=True)

    def toarray(self):
        """Return the dense equivalent (tests and small examples only)."""
        xp = self.xp
        out = xp.zeros(self.shape, dtype=self.dtype)
        out[self.row_indices(), self.indices] = self.data
        return out

    def copy(self):
        """Return a deep copy (the transpose cache is not shared; the validation is)."""
        return CSRMatrix.adopt(self.data.copy(), self.indices.copy(), self.indptr.copy(),
                               self.shape, valid=self._valid)

    def astype(self, dtype=None, index_dtype=None):
        """Return a copy with other value and/or index dtypes."""
        data = self.data if dtype is None else self.data.astype(dtype)
        indices, indptr = self.indices, self.indptr
        if index_dtype is not None:
            indices, indptr = indices.astype(index_dtype), indptr.astype(index_dtype)
        return CSRMatrix.adopt(data.copy() if data is self.data else data,
                               indices.copy() if indices is self.indices else indices,
                               indptr.copy() if indptr is self.indptr else indptr, self.shape,
                               valid=self._valid)

    def to_device(self, device):
        """Return a copy on ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy); ``self`` when it is there.

        Parameters
        ----------
        device : {"cpu", "cuda"}
            ``"gpu"`` is an alias of ``"cuda"``; anything else raises ValueError.

        Returns
        -------
        CSRMatrix
            Validated where ``self`` was (the copy is made here).
        """
        device = check_device(device)
        if device_of(self.data) == device:
            return self
        xp = module_for(device)
        return CSRMatrix.adopt(to_module(self.data, xp), to_module(self.indices, xp),
                               to_module(self.indptr, xp), self.shape, valid=self._valid)

    # -------------------------------------------------------------- factories
    @classmethod
    def random(cls, n_out, n_in, density=None, *, nnz=None, random_state=None,
               dtype=np.float32, index_dtype=None, values="uniform"):
        """Draw a matrix with a uniformly random sparsity pattern.

        Exactly ``nnz`` (or ``round(density * n_out * n_in)``) distinct
        positions are drawn without ever materialising the dense matrix.

        Parameters
        ----------
        n_out, n_in : int
            Shape.
        density : float, optional
            Fraction of positions stored, in [0, 1].
        nnz : int, optional
            Number of positions stored (instead of ``density``).
        random_state : int, numpy.random.Generator or None
            Seed or generator.
        dtype : dtype, default float32
        index_dtype : dtype, optional
            Defaults to the index-dtype policy.
        values : {"uniform", "normal", "ones"} or callable
            How values are drawn; a callable gets ``(rng, size)``.

        Examples
        --------
        >>> W = CSRMatrix.random(100, 50, density=0.1, random_state=0)
        >>> W.nnz
        500
        """
        from ._random import check_random_state, sample_positions

        rng = check_random_state(random_state)
        total = int(n_out) * int(n_in)
        if nnz is None:
            if density is None or not 0.0 <= float(density) <= 1.0:
                raise ValueError(f"density must be in [0, 1], got {density}")
            nnz = int(round(float(density) * total))
        if not 0 <= nnz <= total:
            raise ValueError(f"nnz must be in [0, {total}], got {nnz}")
        # the draw of positions (about 26 bytes per connection), then columns and values
        check_allocation(32 * nnz, f"CSRMatrix.random with nnz={nnz}")
        keys = sample_positions(rng, total, nnz)  # sorted unique linear keys
        idx = np.dtype(index_dtype) if index_dtype is not None else get_index_dtype(
            nnz, n_out, n_in)
        # row r starts at the first key >= r * n_in (keys are sorted): no per-entry row array
        indptr = np.searchsorted(keys, np.arange(n_out + 1, dtype=np.int64) * n_in).astype(idx)
        np.remainder(keys, n_in, out=keys)  # the columns, in place
        cols = keys.astype(idx)
        del keys
        if callable(values):
            data = values(rng, nnz)
        elif values == "uniform":
            data = rng.uniform(-1.0, 1.0, nnz)
        elif values == "normal":
            data = rng.standard_normal(nnz)
        elif values == "ones":
            data = np.ones(nnz)
        else:
            raise ValueError(f"values must be 'uniform', 'normal', 'ones' or callable, got {values!r}")
        return cls.adopt(np.ascontiguousarray(data, dtype=dtype), cols, indptr, (n_out, n_in),
                         valid=True)


def _build_transpose(W):
    """CSC arrays of ``W`` plus the permutation into ``W.data`` (stable: rows stay sorted)."""
    xp = W.xp
    idx = W.index_dtype
    perm = xp.argsort(W.indices, kind="stable").astype(idx)
    t_indices = W.row_indices()[perm]
    t_indptr = xp.zeros(W.n_in + 1, dtype=idx)
    if W.nnz:
        xp.cumsum(xp.bincount(W.indices, minlength=W.n_in), out=t_indptr[1:])
    return t_indptr, xp.ascontiguousarray(t_indices), xp.ascontiguousarray(perm)
