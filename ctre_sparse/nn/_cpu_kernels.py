"""Compiled (numba) CPU kernels for the training-loop glue, NumPy arrays only.

Each kernel fuses NumPy passes the training loop made one after the other,
and runs in parallel over rows (or chunks) with numba's ``prange``. Every
output element is computed by the same arithmetic, in the same order, as the
NumPy formula it replaces, so results are bit-identical to the NumPy path
and do not depend on the thread count. (The bias gradient stays a BLAS row
sum in the layer: the generic array-module path uses the same one, and the
tests demand that both paths agree bit for bit.)

The kernels are ``None`` when numba is missing; callers then keep the NumPy
path (``AVAILABLE`` says which).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["AVAILABLE", "bias_left_relu_forward", "left_relu_backward",
           "gather_columns", "sgd_update"]

try:
    import numba
    from numba import prange
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None

AVAILABLE = numba is not None
if AVAILABLE:
    @numba.njit(parallel=True, cache=True, nogil=True)
    def bias_left_relu_forward(Y, b, slope, Z, A):  # pragma: no cover - compiled
        """``Z = Y + b[:, None]; A = max(slope * Z, Z)``; ``Z`` may be ``Y``.

        Same arithmetic as ``Y += b[:, None]`` then ``np.maximum(Z * slope, Z)``.
        """
        n, m = Y.shape
        for i in prange(n):
            bi = b[i]
            for j in range(m):
                z = Y[i, j] + bi
                Z[i, j] = z
                a = z * slope
                A[i, j] = z if z > a else a

    @numba.njit(parallel=True, cache=True, nogil=True)
    def left_relu_backward(Z, dA, slope, one_minus_slope, relu):  # pragma: no cover - compiled
        """``dA *= f'(Z)`` in place, parallel over rows.

        ``relu``: exactly ``dA * (Z > 0)``; otherwise exactly
        ``dA * ((Z > 0) * (1 - slope) + slope)`` as the NumPy left-slope path.
        """
        n, m = dA.shape
        for i in prange(n):
            for j in range(m):
                x = dA[i, j]
                if relu:
                    dA[i, j] = x if Z[i, j] > 0 else x * 0.0  # signed zero / NaN as NumPy
                else:  # (1 * (1 - s) + s) or (0 * (1 - s) + s), in the array dtype
                    dA[i, j] = x * ((one_minus_slope + slope) if Z[i, j] > 0 else slope)

    @numba.njit(parallel=True, cache=True, nogil=True)
    def gather_columns(X, idx, out):  # pragma: no cover - compiled
        """``out[:] = X[:, idx]`` for a C-contiguous ``X``; parallel over rows."""
        n = X.shape[0]
        m = idx.shape[0]
        for i in prange(n):
            for j in range(m):
                out[i, j] = X[i, idx[j]]

    @numba.njit(parallel=True, cache=True, nogil=True)
    def sgd_update(w, g, v, lr, mu, decay, nesterov):  # pragma: no cover - compiled
        """The fused SGD step of :class:`~ctre_sparse.nn.optim.SGD`, parallel over the entries.

        ``w[n], g[n], v[n]`` of one dtype, scalars of that dtype; mutates all
        three (``g`` receives the applied step, ``v`` the new momentum). Each
        entry's arithmetic is independent of the others and of the thread
        count. The branches are hoisted out of the loops so that each loop
        vectorizes. One kernel for every size: on 2 cores the parallel region
        costs about 1 us more than a serial loop below ~30,000 entries (a few
        ms per training epoch) and halves the time from ~2**18 entries on.
        """
        n = w.shape[0]
        if mu != 0 and nesterov:
            for i in prange(n):
                gi = g[i] + decay * w[i]
                vi = mu * v[i] + gi
                v[i] = vi
                step = lr * (gi + mu * vi)
                g[i] = step
                w[i] -= step
        elif mu != 0:
            for i in prange(n):
                gi = g[i] + decay * w[i]
                vi = mu * v[i] + gi
                v[i] = vi
                step = lr * vi
                g[i] = step
                w[i] -= step
        else:  # no momentum: v is left alone
            for i in prange(n):
                gi = g[i] + decay * w[i]
                vi = mu * v[i] + gi
                step = lr * (gi + mu * vi if nesterov else vi)
                g[i] = step
                w[i] -= step
else:  # pragma: no cover
    bias_left_relu_forward = left_relu_backward = None
    gather_columns = sgd_update = None
