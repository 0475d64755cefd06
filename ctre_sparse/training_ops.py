"""The fused pieces of one training step, as ops (re-exported by :mod:`ctre_sparse.ops`).

A mini-batch of a sparse MLP is, per layer: gather the batch's columns of
the data (:func:`gather_columns`), ``W @ X`` (:func:`~ctre_sparse.ops.spmm`),
bias plus activation (:func:`bias_activation`), and on the way back the
activation's derivative (:func:`activation_backward`), ``W.T @ G`` and the
weight gradient at the nonzeros (:func:`~ctre_sparse.ops.spmm_t`,
:func:`~ctre_sparse.ops.sddmm`), then the optimizer step on the nonzeros
(:func:`sgd_update`). The ops here are the element-wise ones, each one
parallel pass over memory instead of several NumPy passes.

Like every op they take NumPy or CuPy arrays and ``backend="auto" |
"reference" | "numba" | "native" | "cuda"``, validate their arguments once
(a :class:`ValueError` saying what was expected) and reach a compiled
kernel only through the backend registry. The CPU backends compute each
element with the reference's arithmetic, so they agree bit for bit.

The activation is the left-slope ReLU family, ``f(z) = z`` for ``z > 0``
and ``slope * z`` otherwise with ``|slope| <= 1``: ReLU (slope 0), leaky
ReLU (0.01) and the alternating All-ReLU (-0.6 / +0.6). Other activations
are array expressions in :mod:`ctre_sparse.nn.activations`.
"""

from __future__ import annotations

import math

from .backends import select_backend
from .checks import check_dense, check_index_array, check_out, check_slope
from .device import array_module, device_of

__all__ = ["gather_columns", "bias_activation", "activation_backward", "sgd_update"]


def gather_columns(X, idx, *, out=None, backend="auto"):
    """The columns ``idx`` of ``X``, as a C-contiguous array: ``X[:, idx]``.

    Gathers a mini-batch from feature-major data. ``X`` may be C- or
    F-ordered; an F-ordered ``X`` (the transpose of a C-ordered sample-major
    array, no copy) is gathered by whole sample rows, which is the faster
    of the two.

    Parameters
    ----------
    X : ndarray, shape (n_features, n_samples), float32 or float64
    idx : int ndarray, shape (m,)
        Columns to take, in ``[0, n_samples)``. Checked on the host; for
        CuPy arrays the range is not read back from the device (that would
        wait for the GPU): out-of-range indices wrap around, as in
        ``cupy.take``.
    out : ndarray, shape (n_features, m), C-contiguous, dtype of X, optional
    backend : str, default "auto"

    Returns
    -------
    ndarray, shape (n_features, m)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> gather_columns(X, np.array([2, 0]))
    array([[2., 0.],
           [5., 3.]], dtype=float32)
    """
    xp = array_module(X)
    check_dense("X", X, ndim=2, dtype=None, xp=xp, contiguous=False, like="X")
    if not (X.flags.c_contiguous or X.flags.f_contiguous):
        raise ValueError("X must be C- or F-contiguous; pass np.ascontiguousarray(X)")
    if device_of(idx) == "cpu":
        check_index_array("idx", idx, X.shape[1], xp)
    elif idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ValueError(f"idx must be a 1-D integer array, got {idx.dtype} with shape "
                         f"{tuple(idx.shape)}")
    out = check_out(out, (X.shape[0], idx.shape[0]), X.dtype, xp, like="X")
    select_backend(backend, X, idx).gather_columns(X, idx, out)
    return out


def bias_activation(Y, b, *, slope=0.0, out=None, preactivation=None, backend="auto"):
    """Bias and left-slope ReLU in one pass: ``Z = Y + b[:, None]``, ``A = max(Z, slope * Z)``.

    Parameters
    ----------
    Y : ndarray, shape (n, m), C-contiguous
        A layer's ``W @ X``.
    b : ndarray, shape (n,), dtype of Y
        The bias.
    slope : float in [-1, 1], default 0.0
        The left slope: 0 is ReLU, 0.01 leaky ReLU, -0.6 / 0.6 All-ReLU.
    out : ndarray, shape (n, m), optional
        Buffer for ``A``; must not overlap ``Y`` or ``preactivation``.
    preactivation : ndarray, shape (n, m), optional
        Buffer for ``Z`` (what :func:`activation_backward` needs); may be
        ``Y`` itself, which then receives ``Z`` in place.
    backend : str, default "auto"

    Returns
    -------
    Z, A : ndarray, shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> Y = np.array([[-1., 2.]], dtype=np.float32)
    >>> Z, A = bias_activation(Y, np.array([0.5], np.float32), slope=0.5)
    >>> Z, A
    (array([[-0.5,  2.5]], dtype=float32), array([[-0.25,  2.5 ]], dtype=float32))
    """
    xp = array_module(Y)
    check_dense("Y", Y, ndim=2, dtype=None, xp=xp, like="Y")
    check_dense("b", b, ndim=1, dtype=Y.dtype, xp=xp, like="Y")
    if b.shape[0] != Y.shape[0]:
        raise ValueError(f"b must have one entry per row of Y ({Y.shape[0]}), got {b.shape[0]}")
    slope = check_slope(slope)
    Z = Y if preactivation is Y else check_out(preactivation, Y.shape, Y.dtype, xp,
                                                name="preactivation", like="Y")
    A = check_out(out, Y.shape, Y.dtype, xp, like="Y")
    if xp.may_share_memory(A, Z) or xp.may_share_memory(A, Y):
        raise ValueError("out must not overlap Y or preactivation (the kernel writes both); "
                         "pass separate buffers")
    select_backend(backend, Y, b).bias_activation(Y, b, slope, Z, A)
    return Z, A


def activation_backward(Z, G, *, slope=0.0, out=None, backend="auto"):
    """The gradient through a left-slope ReLU: ``G * f'(Z)``.

    ``f'(z)`` is 1 for ``z > 0`` and ``slope`` otherwise (0 at ``z = 0`` for
    ReLU).

    Parameters
    ----------
    Z : ndarray, shape (n, m), C-contiguous
        The pre-activation (``Z`` of :func:`bias_activation`).
    G : ndarray, shape (n, m), dtype of Z
        Gradient of the loss with respect to ``f(Z)``.
    slope : float in [-1, 1], default 0.0
    out : ndarray, shape (n, m), optional
        May be ``G`` (in place).
    backend : str, default "auto"

    Returns
    -------
    ndarray, shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[-1., 0., 3.]]); G = np.array([[2., 2., 2.]])
    >>> activation_backward(Z, G, slope=0.25)
    array([[0.5, 0.5, 2. ]])
    """
    xp = array_module(Z)
    check_dense("Z", Z, ndim=2, dtype=None, xp=xp, like="Z")
    check_dense("G", G, ndim=2, dtype=Z.dtype, xp=xp, like="Z")
    if G.shape != Z.shape:
        raise ValueError(f"G must have the shape of Z {tuple(Z.shape)}, got {tuple(G.shape)}")
    slope = check_slope(slope)
    out = G if out is G else check_out(out, G.shape, G.dtype, xp, like="Z")
    if out is not G and xp.may_share_memory(out, G):
        raise ValueError("out must be G itself or not overlap it")
    select_backend(backend, Z, G).activation_backward(Z, G, slope, out)
    return out


def sgd_update(w, g, v, *, learning_rate, momentum=0.0, weight_decay=0.0, nesterov=False,
               backend="auto"):
    """One SGD step with (Nesterov) momentum and L2 decay, on arrays of the nonzeros, in place.

    For every entry (the formulation of ``torch.optim.SGD``)::

        gi = g + weight_decay * w
        vi = momentum * v + gi
        step = learning_rate * (gi + momentum * vi if nesterov else vi)
        w -= step;  g = step;  v = vi (left alone when momentum is 0)

    computed in the arrays' dtype. Applied to ``W.data`` of a sparse layer,
    decay and momentum touch the stored connections only.

    Parameters
    ----------
    w : ndarray, shape (n,)
        Parameters; updated.
    g : ndarray, shape (n,), dtype of w
        Gradient; overwritten with the step applied.
    v : ndarray, shape (n,), dtype of w
        Momentum; updated (unchanged when ``momentum`` is 0).
    learning_rate : float > 0
    momentum : float in [0, 1), default 0.0
    weight_decay : float >= 0, default 0.0
    nesterov : bool, default False
    backend : str, default "auto"

    Returns
    -------
    ndarray
        ``w``.

    Examples
    --------
    >>> import numpy as np
    >>> w, g, v = np.array([1.0]), np.array([0.5]), np.array([0.0])
    >>> sgd_update(w, g, v, learning_rate=0.1, momentum=0.9)
    array([0.95])
    >>> g, v
    (array([0.05]), array([0.5]))
    """
    xp = array_module(w)
    check_dense("w", w, ndim=1, dtype=None, xp=xp, like="w")
    for name, arr in (("g", g), ("v", v)):
        check_dense(name, arr, ndim=1, dtype=w.dtype, xp=xp, like="w")
        if arr.shape != w.shape:
            raise ValueError(f"{name} must have the shape of w {tuple(w.shape)}, got "
                             f"{tuple(arr.shape)}")
    if g is w or v is w or v is g or xp.may_share_memory(w, g) or \
            xp.may_share_memory(w, v) or xp.may_share_memory(g, v):
        raise ValueError("w, g and v must be three separate arrays")
    lr, mu, decay = _sgd_scalars(learning_rate, momentum, weight_decay)
    t = w.dtype.type
    select_backend(backend, w, g, v).sgd_update(w, g, v, t(lr), t(mu), t(decay),
                                                bool(nesterov))
    return w


def _sgd_scalars(learning_rate, momentum, weight_decay):
    lr, mu, decay = float(learning_rate), float(momentum), float(weight_decay)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    if not 0.0 <= mu < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if not (math.isfinite(decay) and decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return lr, mu, decay
