"""Helpers shared by the test-suite and the benchmarks: tolerances and random operands."""

from __future__ import annotations

import numpy as np

from .sparse import CSRMatrix

__all__ = ["TOLERANCES", "tolerance", "assert_allclose", "random_csr", "random_dense",
           "awkward_csr"]

#: (rtol, atol) per value dtype, for results of accumulating kernels.
TOLERANCES = {np.dtype(np.float32): (2e-5, 2e-5), np.dtype(np.float64): (1e-11, 1e-12)}


def tolerance(dtype):
    """Return ``(rtol, atol)`` for a value dtype."""
    return TOLERANCES[np.dtype(dtype)]


def _to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def assert_allclose(actual, desired, dtype=None, scale=1.0):
    """Assert closeness with the tolerance of ``dtype`` (default: ``desired.dtype``).

    ``scale`` multiplies the absolute tolerance (e.g. by the size of a sum).
    """
    actual, desired = _to_numpy(actual), _to_numpy(desired)
    rtol, atol = tolerance(dtype if dtype is not None else desired.dtype)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol * scale)


def random_csr(n_out, n_in, density, *, dtype=np.float32, index_dtype=np.int32, seed=0):
    """A seeded random CSR matrix with normal values."""
    return CSRMatrix.random(n_out, n_in, density, random_state=seed, dtype=dtype,
                            index_dtype=index_dtype, values="normal")


def random_dense(rows, cols, *, dtype=np.float32, seed=0):
    """A seeded random C-contiguous dense array, standard normal."""
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(dtype)


def awkward_csr(kind, *, dtype=np.float32, index_dtype=np.int32, seed=0):
    """Matrices that break careless kernels.

    kind : {"empty_rows", "nnz0", "one_col", "one_row", "full_row", "zero_shape"}
    """
    rng = np.random.default_rng(seed)
    if kind == "empty_rows":
        dense = rng.standard_normal((9, 7)) * (rng.random((9, 7)) < 0.4)
        dense[[0, 3, 8]] = 0.0
    elif kind == "nnz0":
        dense = np.zeros((6, 5))
    elif kind == "one_col":
        dense = rng.standard_normal((8, 1)) * (rng.random((8, 1)) < 0.6)
    elif kind == "one_row":
        dense = rng.standard_normal((1, 11)) * (rng.random((1, 11)) < 0.6)
    elif kind == "full_row":
        dense = rng.standard_normal((5, 6)) * (rng.random((5, 6)) < 0.3)
        dense[2] = rng.standard_normal(6) + 3.0
    elif kind == "zero_shape":
        dense = np.zeros((0, 4))
    else:
        raise ValueError(f"unknown awkward kind {kind!r}")
    return CSRMatrix.from_dense(dense.astype(dtype), index_dtype=index_dtype)
