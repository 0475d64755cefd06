"""Argument checks shared by the ops: dense operands, outputs, index arrays, counts.

Each check raises :class:`ValueError` saying what was expected and what
came, before any kernel sees the arguments. They are public so that code
building on the ops (the sketched top-k, the training step) checks its
arguments the same way.
"""

from __future__ import annotations

import numbers

import numpy as np

from .device import array_module
from .sparse import FLOAT_DTYPES
from .validation import check_output

__all__ = ["check_dense", "check_out", "check_index_array", "check_int", "check_choice",
           "check_activations",
           "check_slope"]


def check_dense(name, arr, *, ndim, dtype, rows=None, xp=None, contiguous=True, like="W"):
    """Check a dense operand: an array of ``xp`` with ``ndim`` dims, ``dtype``, ``rows`` rows.

    Parameters
    ----------
    name : str
        How the message calls the argument.
    arr : object
    ndim : int
    dtype : dtype or None
        Required dtype; None accepts float32 and float64.
    rows : int, optional
        Required ``arr.shape[0]``.
    xp : module, optional
        Required array module (the device of the other operands).
    contiguous : bool, default True
        Require C order.
    like : str, default "W"
        The operand that ``dtype`` and ``xp`` come from, for the message.

    Examples
    --------
    >>> check_dense("X", np.zeros((2, 3), np.float32), ndim=2, dtype=np.float32, rows=2)
    >>> check_dense("X", np.zeros((2, 3)), ndim=1, dtype=None)
    Traceback (most recent call last):
    ...
    ValueError: X must be 1-D, got shape (2, 3)
    """
    if _dense_ok(arr, ndim, dtype, rows, xp, contiguous):  # the common case, in one expression
        return
    if not hasattr(arr, "ndim") or not hasattr(arr, "dtype"):
        raise ValueError(f"{name} must be a NumPy or CuPy array, got {type(arr).__name__}")
    if xp is not None and array_module(arr) is not xp:
        raise ValueError(f"{name} is a {array_module(arr).__name__} array but {like} lives in "
                         f"{xp.__name__}; keep all operands on one device")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(arr.shape)}")
    if dtype is not None and arr.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype} (the dtype of {like}), got {arr.dtype}; "
                         f"cast it with {name}.astype(np.{dtype})")
    if dtype is None and arr.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {arr.dtype}")
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows (feature-major: (n_features, batch)), "
                         f"got shape {tuple(arr.shape)}")
    if contiguous and not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")


def _dense_ok(arr, ndim, dtype, rows, xp, contiguous):
    """True when ``arr`` passes every check of :func:`check_dense` (which explains a failure)."""
    try:
        return ((xp is None or type(arr) is xp.ndarray) and arr.ndim == ndim
                and (arr.dtype == dtype if dtype is not None else arr.dtype in FLOAT_DTYPES)
                and (rows is None or arr.shape[0] == rows)
                and (not contiguous or arr.flags.c_contiguous))
    except AttributeError:
        return False


def check_out(out, shape, dtype, xp, inputs=None, *, name="out", like="W"):
    """``out`` checked, or a new empty array when it is None.

    Checked: shape, dtype, device, C order, and, with ``inputs`` (a dict of
    name -> array), that it is writeable and overlaps none of them
    (:func:`ctre_sparse.validation.check_output`).
    """
    if out is None:
        return xp.empty(shape, dtype=dtype)
    check_dense(name, out, ndim=len(shape), dtype=dtype, xp=xp, like=like)
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if inputs is not None:
        check_output(out, inputs)
    return out


def check_index_array(name, arr, bound, xp):
    """Check a 1-D integer array of ``xp`` with values in ``[0, bound)`` (reads its min and max).

    Examples
    --------
    >>> check_index_array("rows", np.array([3]), 2, np)
    Traceback (most recent call last):
    ...
    ValueError: rows must lie in [0, 2), found values in [3, 3]
    """
    if not hasattr(arr, "dtype") or arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D integer array, got "
                         f"{getattr(arr, 'dtype', type(arr).__name__)} "
                         f"with shape {tuple(getattr(arr, 'shape', ()))}")
    if array_module(arr) is not xp:
        raise ValueError(f"{name} must live on the same device as the other operands")
    if arr.shape[0] and (int(arr.min()) < 0 or int(arr.max()) >= bound):
        raise ValueError(f"{name} must lie in [0, {bound}), found values in "
                         f"[{int(arr.min())}, {int(arr.max())}]")


def check_int(name, value, minimum):
    """``int(value)`` for an integer ``value >= minimum``, else a ValueError naming ``name``.

    Examples
    --------
    >>> check_int("k", np.int64(3), 0)
    3
    >>> check_int("k", 2.5, 0)
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer >= 0, got 2.5
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def check_choice(name, value, allowed):
    """``value`` if it is one of ``allowed``, else a ValueError naming ``name`` and the choices.

    Examples
    --------
    >>> check_choice("prune", "activity", ("magnitude", "activity"))
    'activity'
    >>> check_choice("prune", "size", ("magnitude", "activity"))
    Traceback (most recent call last):
    ...
    ValueError: prune must be one of ('magnitude', 'activity'), got 'size'
    """
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_activations(A, B):
    """Check two activation matrices for the cosine ops; return their array module.

    ``A`` (n_a, S) and ``B`` (n_b, S): one device, one float dtype, C order,
    the same number of samples S, finite values.
    """
    xp = array_module(A)
    check_dense("A", A, ndim=2, dtype=None, xp=xp, like="A")
    check_dense("B", B, ndim=2, dtype=A.dtype, xp=xp, like="A")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"A and B must have the same number of samples (columns), got "
                         f"{A.shape[1]} and {B.shape[1]}")
    for name, M in (("A", A), ("B", B)):
        if not bool(xp.all(xp.isfinite(M))):
            raise ValueError(f"{name} contains NaN or Inf values")
    return xp


def check_slope(slope):
    """The left slope of a ReLU-family activation as a float in [-1, 1].

    Examples
    --------
    >>> check_slope(-0.6)
    -0.6
    """
    try:
        value = float(slope)
    except (TypeError, ValueError):
        raise ValueError(f"slope must be a number in [-1, 1], got {slope!r}") from None
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"slope must lie in [-1, 1] (max(z, slope * z) is then the left-slope "
                         f"ReLU), got {slope!r}")
    return value
