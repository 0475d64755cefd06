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
"""

from __future__ import annotations

import logging

import numpy as np

from .device import array_module, check_device, device_of, module_for, row_of_entries, to_module

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
        Also run the O(nnz) checks (bounds, sorted rows, no duplicates,
        finite values). The O(1) checks (dtypes, lengths) always run.

    Raises
    ------
    ValueError
        If the arrays do not form a valid CSR matrix; the message says what
        was expected and what came.

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
        self.data = data
        self.indices = indices
        self.indptr = indptr
        self.shape = (int(shape[0]), int(shape[1]))
        self._transpose = None
        self._rows = None
        self.check_format(full_check=full_check)

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
            and unique within each row, that ``indptr`` is non-decreasing and
            that the values are finite.

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
            self._full_check()

    def _full_check(self):
        xp = self.xp
        n_out, n_in = self.shape
        indptr, indices = self.indptr, self.indices
        if int(indptr[0]) != 0 or int(indptr[-1]) != self.nnz:
            raise ValueError(f"CSR indptr must start at 0 and end at nnz={self.nnz}, "
                             f"got {int(indptr[0])} .. {int(indptr[-1])}")
        if n_out and bool(xp.any(xp.diff(indptr) < 0)):
            raise ValueError("CSR indptr must be non-decreasing")
        if self.nnz:
            lo, hi = int(indices.min()), int(indices.max())
            if lo < 0 or hi >= n_in:
                raise ValueError(f"CSR column indices must lie in [0, {n_in}), "
                                 f"found values in [{lo}, {hi}]")
            # within a row the keys must strictly increase; across a row boundary anything goes
            step = xp.diff(indices.astype(xp.int64))
            boundary = xp.zeros(self.nnz, dtype=bool)
            starts = indptr[1:-1]
            starts = starts[(starts > 0) & (starts < self.nnz)]
            boundary[starts] = True
            bad = (step <= 0) & ~boundary[1:]
            if bool(xp.any(bad)):
                p = int(xp.flatnonzero(bad)[0]) + 1
                kind = "duplicate" if int(step[p - 1]) == 0 else "unsorted"
                raise ValueError(f"CSR column indices must be sorted and unique within each row; "
                                 f"{kind} index {int(indices[p])} at position {p}")
        if not bool(xp.all(xp.isfinite(self.data))):
            raise ValueError("CSR data contains NaN or Inf")

    # -------------------------------------------------------------- derived
    def transpose_arrays(self):
        """Return the cached transpose ``(t_indptr, t_indices, t_perm)``.

        ``t_indptr[n_in + 1]`` and ``t_indices[nnz]`` describe ``W.T`` in CSR
        form (rows = input neurons, sorted output rows within each), and
        ``t_perm[nnz]`` maps each transposed entry to its position in
        ``data``: ``W.T`` has value ``data[t_perm[q]]`` at ``q``. Built once in
        O(nnz + n_in) and reused until the topology changes.
        """
        if self._transpose is None:
            self._transpose = _build_transpose(self)
        return self._transpose

    def row_indices(self):
        """Return the row (output neuron) of every stored entry, shape (nnz,)."""
        if self._rows is None:
            self._rows = row_of_entries(self.indptr, self.nnz, self.index_dtype)
        return self._rows

    def invalidate_cache(self):
        """Drop cached derived arrays; call after editing indices in place."""
        self._transpose = None
        self._rows = None

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_scipy(cls, matrix, *, dtype=None, full_check=False):
        """Wrap a ``scipy.sparse`` matrix (or ``cupyx`` CSR), copying only if needed.

        The arrays are shared when the input is CSR with canonical format
        (sorted, unique indices) and float32/float64 data; otherwise a
        canonical copy is made (CSC/COO converted, duplicates summed,
        rows sorted).

        Parameters
        ----------
        matrix : scipy.sparse matrix or array, or cupyx.scipy.sparse matrix
        dtype : dtype, optional
            Cast values to this dtype (copies when it differs).
        full_check : bool, default False
            Run the O(nnz) checks as well.
        """
        m = matrix
        if getattr(m, "format", None) != "csr":
            m = m.tocsr()
        if not m.has_canonical_format:
            m = m.copy()
            m.sum_duplicates()
        data = m.data
        if dtype is not None and data.dtype != np.dtype(dtype):
            data = data.astype(dtype)
        elif data.dtype not in FLOAT_DTYPES:
            raise ValueError(f"sparse matrix values must be float32 or float64, got {data.dtype} "
                             "(pass dtype=... to cast)")
        indices, indptr = m.indices, m.indptr
        if indices.dtype != indptr.dtype:
            idx = np.promote_types(indices.dtype, indptr.dtype)
            indices, indptr = indices.astype(idx), indptr.astype(idx)
        return cls(data, indices, indptr, m.shape, full_check=full_check)

    def to_scipy(self):
        """Return a ``scipy.sparse.csr_matrix`` (or ``cupyx`` one) sharing the arrays."""
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
        return cls(xp.ascontiguousarray(dense[rows, cols]), cols.astype(idx), indptr, dense.shape)

    def toarray(self):
        """Return the dense equivalent (tests and small examples only)."""
        xp = self.xp
        out = xp.zeros(self.shape, dtype=self.dtype)
        out[self.row_indices(), self.indices] = self.data
        return out

    def copy(self):
        """Return a deep copy (the transpose cache is not shared)."""
        return CSRMatrix(self.data.copy(), self.indices.copy(), self.indptr.copy(), self.shape)

    def astype(self, dtype=None, index_dtype=None):
        """Return a copy with other value and/or index dtypes."""
        data = self.data if dtype is None else self.data.astype(dtype)
        indices, indptr = self.indices, self.indptr
        if index_dtype is not None:
            indices, indptr = indices.astype(index_dtype), indptr.astype(index_dtype)
        return CSRMatrix(data.copy() if data is self.data else data,
                         indices.copy() if indices is self.indices else indices,
                         indptr.copy() if indptr is self.indptr else indptr, self.shape)

    def to_device(self, device):
        """Return a copy on ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy); ``self`` when it is there.

        Parameters
        ----------
        device : {"cpu", "cuda"}
            ``"gpu"`` is an alias of ``"cuda"``; anything else raises ValueError.

        Returns
        -------
        CSRMatrix
        """
        device = check_device(device)
        if device_of(self.data) == device:
            return self
        xp = module_for(device)
        return CSRMatrix(to_module(self.data, xp), to_module(self.indices, xp),
                         to_module(self.indptr, xp), self.shape)

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
        keys = sample_positions(rng, total, nnz)  # sorted unique linear keys
        idx = np.dtype(index_dtype) if index_dtype is not None else get_index_dtype(
            nnz, n_out, n_in)
        rows = keys // n_in
        cols = (keys % n_in).astype(idx)
        indptr = np.zeros(n_out + 1, dtype=idx)
        np.cumsum(np.bincount(rows, minlength=n_out), out=indptr[1:])
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
        return cls(np.ascontiguousarray(data, dtype=dtype), cols, indptr, (n_out, n_in))


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
