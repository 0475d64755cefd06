"""Numba kernels of the training-step ops (private; the contract is in ``reference``).

Memory-bound element-wise passes, parallel over rows (or entries) with
``prange``. Each output element is computed by the same arithmetic, in the
same order, as the reference's NumPy formula (no fast-math: no FMA
contraction, no re-association), so the results are bit-identical to the
reference and do not depend on the thread count. Compiled on first use per
dtype and cached on disk.
"""

from __future__ import annotations

from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def gather_columns_c(X, idx, out):  # pragma: no cover - compiled
    """``out[i, j] = X[i, idx[j]]`` for a C-ordered ``X[n, n_samples]``; parallel over rows i."""
    n = X.shape[0]
    m = idx.shape[0]
    for i in prange(n):
        for j in range(m):
            out[i, j] = X[i, idx[j]]


@njit(cache=True, nogil=True, parallel=True)
def bias_left_relu(Y, b, slope, Z, A):  # pragma: no cover - compiled
    """``Z = Y + b[:, None]; A = max(slope * Z, Z)``; ``Z`` may be ``Y``. Parallel over rows.

    Per element: ``z = y + b``, ``a = z * slope``, ``A = z if z > a else a``:
    the reference's ``np.add``, ``np.multiply``, ``np.maximum(a, z)`` bit for
    bit (signed zeros and NaN included).
    """
    n, m = Y.shape
    for i in prange(n):
        bi = b[i]
        for j in range(m):
            z = Y[i, j] + bi
            Z[i, j] = z
            a = z * slope
            A[i, j] = z if z > a else a


@njit(cache=True, nogil=True, parallel=True)
def left_relu_backward(Z, G, slope, one_minus_slope, relu, out):  # pragma: no cover - compiled
    """``out = G * f'(Z)`` for the left-slope ReLU; ``out`` may be ``G``. Parallel over rows.

    ``relu`` (slope 0): exactly ``G * (Z > 0)`` (``x * 0.0`` keeps NumPy's
    signed zero and NaN); otherwise exactly ``G * ((Z > 0) * (1 - slope) + slope)``.
    """
    n, m = G.shape
    for i in prange(n):
        for j in range(m):
            x = G[i, j]
            if relu:
                out[i, j] = x if Z[i, j] > 0 else x * 0.0
            else:  # (1 * (1 - s) + s) or (0 * (1 - s) + s), in the array dtype
                out[i, j] = x * ((one_minus_slope + slope) if Z[i, j] > 0 else slope)


@njit(cache=True, nogil=True, parallel=True)
def sgd_update(w, g, v, lr, mu, decay, nesterov):  # pragma: no cover - compiled
    """One SGD step on ``w[n]``, ``g[n]``, ``v[n]`` in place (see the reference contract).

    The branches are hoisted out of the loops so that each loop vectorizes;
    each entry's arithmetic is independent of the others and of the thread
    count.
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
