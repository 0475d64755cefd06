"""What every op checks before a compiled kernel sees its operands.

The compiled kernels (numba, C++, CUDA, and scipy's own sparsetools under
the reference backend) trust their index arrays: an ``indptr`` that is not
monotone or a column index out of range makes them read or write out of
bounds. This module holds the checks that stand between user input and
those kernels:

* :func:`checked_copy` / :func:`check_structure`: the O(nnz) CSR structure
  check, in one pass that also copies the index arrays (a small numba
  kernel; vectorised NumPy/CuPy passes where numba is missing or the arrays
  live on the GPU). :class:`~ctre_sparse.sparse.CSRMatrix` keeps the
  checked copies and remembers the result (see
  :meth:`~ctre_sparse.sparse.CSRMatrix.validate`);
* :func:`check_output`: an ``out`` argument must be writeable and must not
  overlap any input (the kernels read inputs while writing ``out``);
* :func:`check_allocation`: a size argument must not ask for more memory
  than the machine has.

Every failure is a :class:`ValueError` saying what was expected and what came.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from .device import array_module

logger = logging.getLogger(__name__)

__all__ = ["STRUCTURE_OK", "BAD_INDPTR", "BAD_COLUMN", "NOT_CANONICAL", "structure_code",
           "checked_copy", "check_structure", "structure_error", "check_convertible", "read_only",
           "check_output", "check_allocation", "physical_memory"]

#: :func:`structure_code` results.
STRUCTURE_OK = 0
BAD_INDPTR = 1      # indptr not starting at 0, decreasing somewhere, or not ending at nnz
BAD_COLUMN = 2      # a column index outside [0, n_cols)
NOT_CANONICAL = 3   # memory-safe, but columns unsorted or repeated within a row

_kernel = None  # the numba kernel once compiled; False when numba cannot be imported


def _copy_kernel():
    """The numba kernel of :func:`checked_copy`, compiled (and disk-cached) on first use."""
    global _kernel
    if _kernel is None:
        try:
            from numba import njit
        except ImportError:  # pragma: no cover - numba is a core dependency
            logger.debug("numba unavailable: CSR structure checked with NumPy passes")
            _kernel = False
        else:
            _kernel = njit(cache=True, nogil=True)(_copy_and_check)
    return _kernel


def _copy_and_check(indptr, indices, n_cols, out_ptr, out_idx):  # pragma: no cover - numba
    """Copy both arrays and classify the copies, reading each input entry once.

    Every test is made on the value that was written to the copy (``c``,
    ``prev``), never on a second read of the input, so the copy is exactly
    what was checked even if the caller's arrays change meanwhile. Only
    in-bounds positions are read. The pass over ``indices`` has no branch
    (min, max and a count of non-increasing steps, which vectorizes); the
    steps across row boundaries are taken back out afterwards.
    """
    n_rows = indptr.shape[0] - 1
    nnz = indices.shape[0]
    for r in range(n_rows + 1):
        out_ptr[r] = indptr[r]
    lo = 0
    hi = 0
    steps = 0  # positions p >= 1 with column[p] <= column[p - 1]
    if nnz:
        prev = indices[0]
        out_idx[0] = prev
        lo = prev
        hi = prev
        for p in range(1, nnz):
            c = indices[p]
            out_idx[p] = c
            lo = min(lo, c)
            hi = max(hi, c)
            steps += c <= prev
            prev = c
    if n_rows < 0 or out_ptr[0] != 0 or out_ptr[n_rows] != nnz:
        return 1
    decreasing = 0
    for r in range(n_rows):
        decreasing += out_ptr[r + 1] < out_ptr[r]
    if decreasing:
        return 1
    if nnz == 0:
        return 0
    if lo < 0 or hi >= n_cols:
        return 2
    for r in range(1, n_rows):
        s = out_ptr[r]
        if out_ptr[r - 1] < s < nnz:  # a row starts at s, inside the array: 1 <= s < nnz
            steps -= out_idx[s] <= out_idx[s - 1]
    return 3 if steps else 0


def checked_copy(indptr, indices, n_cols):
    """Copy a CSR index structure and classify the copy, in one pass (NumPy arrays).

    Parameters
    ----------
    indptr : 1-D int ndarray, shape (n_rows + 1,)
    indices : 1-D int ndarray, shape (nnz,)
    n_cols : int

    Returns
    -------
    code : int
        :data:`STRUCTURE_OK` (0), :data:`BAD_INDPTR` (1), :data:`BAD_COLUMN` (2)
        or :data:`NOT_CANONICAL` (3), the first that applies in that order, of
        the *copies*; only a structure that is not ``BAD_*`` is safe to hand to
        a kernel.
    indptr_copy, indices_copy : ndarray
        New C-contiguous arrays of the input dtypes, nobody else's.

    Notes
    -----
    O(nnz + n_rows): one read of each input entry, one write. Checking the
    private copy (not the caller's array) is what lets
    :meth:`CSRMatrix.validate` remember the result: no alias of the
    caller's can change what was checked.

    Examples
    --------
    >>> import numpy as np
    >>> checked_copy(np.array([0, 2, 3]), np.array([0, 3, 1]), 4)[0]
    0
    >>> checked_copy(np.array([0, 2, 7]), np.array([0, 3, 1]), 4)[0]
    1
    >>> checked_copy(np.array([0, 2, 3]), np.array([0, 3, 9]), 4)[0]
    2
    >>> checked_copy(np.array([0, 2, 3]), np.array([3, 0, 1]), 4)[0]
    3
    """
    out_ptr, out_idx = np.empty_like(indptr, order="C"), np.empty_like(indices, order="C")
    kernel = _copy_kernel() if indptr.shape[0] > 0 else False
    if not kernel:
        out_ptr[...], out_idx[...] = indptr, indices
        return _diagnose(out_ptr, out_idx, int(n_cols))[0], out_ptr, out_idx
    # read-only views: one compiled kernel per dtype, whatever the caller passes
    code = kernel(_read_only_view(indptr), _read_only_view(indices), int(n_cols), out_ptr,
                  out_idx)
    return int(code), out_ptr, out_idx


def structure_code(indptr, indices, n_cols):
    """The code of :func:`checked_copy` for NumPy or CuPy arrays, without keeping a copy.

    Examples
    --------
    >>> import numpy as np
    >>> structure_code(np.array([0, 1, 1]), np.array([5]), 4)
    2
    """
    if isinstance(indptr, np.ndarray):
        return checked_copy(indptr, indices, n_cols)[0]
    return _diagnose(indptr, indices, int(n_cols))[0]


def _read_only_view(arr):
    view = arr.view()
    view.flags.writeable = False
    return view


def _diagnose(indptr, indices, n_cols):
    """``(code, message)`` of the first violation (``(0, None)`` if none), by NumPy/CuPy passes."""
    xp = array_module(indices)
    nnz = int(indices.shape[0])
    if indptr.shape[0] == 0:
        return BAD_INDPTR, "CSR indptr must have at least one entry"
    first, last = int(indptr[0]), int(indptr[-1])
    if first != 0 or last != nnz:
        return BAD_INDPTR, (f"CSR indptr must start at 0 and end at nnz={nnz}, got "
                            f"{first} .. {last}")
    if indptr.shape[0] > 1:
        drops = xp.flatnonzero(indptr[1:] < indptr[:-1])
        if drops.shape[0]:
            r = int(drops[0])
            return BAD_INDPTR, (f"CSR indptr must be non-decreasing; indptr[{r + 1}] = "
                                f"{int(indptr[r + 1])} < indptr[{r}] = {int(indptr[r])}")
    if nnz == 0:
        return STRUCTURE_OK, None
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= n_cols:
        return BAD_COLUMN, (f"CSR column indices must lie in [0, {n_cols}), found values in "
                            f"[{lo}, {hi}]")
    # within a row the columns must strictly increase; across a row boundary anything goes
    step = xp.diff(indices.astype(np.int64))
    starts = indptr[1:-1]
    starts = starts[(starts > 0) & (starts < nnz)]
    boundary = xp.zeros(nnz, dtype=bool)
    boundary[starts] = True
    bad = xp.flatnonzero((step <= 0) & ~boundary[1:])
    if bad.shape[0]:
        p = int(bad[0]) + 1
        kind = "duplicate" if int(step[p - 1]) == 0 else "unsorted"
        return NOT_CANONICAL, (f"CSR column indices must be sorted and unique within each row; "
                               f"{kind} index {int(indices[p])} at position {p}")
    return STRUCTURE_OK, None


def check_structure(indptr, indices, n_cols, code=None):
    """Raise ValueError unless ``(indptr, indices)`` is a canonical CSR structure.

    Canonical: ``indptr`` starts at 0, never decreases and ends at
    ``len(indices)``; every column lies in ``[0, n_cols)``; the columns of
    each row strictly increase (sorted, no duplicates). The caller has
    already checked dtypes and lengths (:meth:`CSRMatrix.check_format`).

    Parameters
    ----------
    indptr, indices : NumPy or CuPy arrays
    n_cols : int
    code : int, optional
        The :func:`structure_code` of these arrays, if known.

    Raises
    ------
    ValueError
        Naming the first violation (which entry, which value).
    """
    if code is None:
        code = structure_code(indptr, indices, n_cols)
    if code != STRUCTURE_OK:
        raise ValueError(structure_error(indptr, indices, n_cols))


def structure_error(indptr, indices, n_cols):
    """The message naming the first violation of a CSR structure (None if there is none)."""
    code, message = _diagnose(indptr, indices, int(n_cols))
    if code == NOT_CANONICAL:
        message += ("; sort each row and merge duplicates first (for a scipy matrix: "
                    "m.sum_duplicates(), or CSRMatrix.from_scipy(m, canonicalize=True))")
    return message


def read_only(arr):
    """``arr`` made read-only (a CuPy array, which cannot be, comes back as is).

    A view of another NumPy array is copied first: its base, reachable as
    ``arr.base``, would stay writeable.
    """
    if isinstance(arr, np.ndarray):
        if isinstance(arr.base, np.ndarray):
            arr = arr.copy()
        arr.flags.writeable = False
    return arr


def _index_vector(name, arr):
    if getattr(arr, "ndim", None) != 1 or arr.dtype.kind != "i":
        raise ValueError(f"{name} must be a 1-D signed integer array, got "
                         f"{getattr(arr, 'dtype', type(arr).__name__)} with shape "
                         f"{tuple(getattr(arr, 'shape', ()))}")


def check_convertible(m):
    """Bounds-check a scipy CSC or COO matrix before scipy's own C code converts it to CSR.

    CSC has the structure of a CSR matrix with rows and columns swapped
    (unsorted rows are fine here: the conversion sorts); COO's coordinates
    must lie in the shape. Other formats are left to scipy.
    """
    fmt = getattr(m, "format", None)
    if fmt is None:
        raise ValueError(f"expected a scipy.sparse or cupyx sparse matrix, got {type(m).__name__}")
    n_rows, n_cols = m.shape
    if fmt == "csc":
        _index_vector("CSC indptr", m.indptr)
        _index_vector("CSC indices", m.indices)
        if m.indptr.shape[0] != n_cols + 1 or m.data.shape != m.indices.shape:
            raise ValueError(f"CSC indptr must have n_cols + 1 = {n_cols + 1} entries and data "
                             "one value per index")
        if structure_code(m.indptr, m.indices, n_rows) != NOT_CANONICAL:
            check_structure(m.indptr, m.indices, n_rows)
    elif fmt == "coo":
        for name, coords, bound in (("row", m.row, n_rows), ("col", m.col, n_cols)):
            _index_vector(f"COO {name}", coords)
            if coords.shape[0] and (int(coords.min()) < 0 or int(coords.max()) >= bound):
                raise ValueError(f"COO {name} indices must lie in [0, {bound}), found values in "
                                 f"[{int(coords.min())}, {int(coords.max())}]")


def check_output(out, inputs):
    """Raise ValueError if ``out`` is read-only or shares memory with an input.

    Parameters
    ----------
    out : ndarray
        An output array the kernel will write.
    inputs : dict of str to ndarray or None
        The arrays the kernel reads while it writes ``out``, by name.

    Notes
    -----
    The overlap test compares memory bounds (``may_share_memory``), O(1);
    every operand is contiguous, so bounds that overlap mean shared memory.
    """
    flags = out.flags
    if not getattr(flags, "writeable", True):
        raise ValueError("out must be a writeable array, got a read-only one")
    xp = array_module(out)
    for name, arr in inputs.items():
        if arr is not None and xp.may_share_memory(out, arr):
            raise ValueError(f"out must not overlap {name}: the kernel reads {name} while it "
                             "writes out; pass a separate output array")


def physical_memory():
    """Bytes of physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
        return None


def check_allocation(nbytes, what):
    """Raise ValueError if ``nbytes`` exceeds this machine's physical memory.

    A size argument (a ``k``, a block size) that asks for more memory than
    the machine has is refused before anything is allocated, instead of
    failing in the allocator or waking the out-of-memory killer.

    Parameters
    ----------
    nbytes : int
        Bytes the call would allocate.
    what : str
        What asks for them, for the message.
    """
    limit = physical_memory()
    if limit is not None and nbytes > limit:
        raise ValueError(f"{what} would need {nbytes / 2**30:.1f} GiB, more than this "
                         f"machine's {limit / 2**30:.1f} GiB of memory")
