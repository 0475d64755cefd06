"""The training benchmark's correctness check: one batch against the reference backend.

Before anything is timed, the first batch's probabilities and gradients of
our backend (and of the torch peer) are compared with the reference
backend's on samples away from the ReLU kinks (:func:`check_batch`).
"""

from __future__ import annotations

import numpy as np

from ctre_sparse import ops
from ctre_sparse.nn import SparseMLP
from . import harness

__all__ = ["CHECK_RTOL", "check_batch", "reference_pass", "check_ours", "checked_error",
           "max_error"]

#: Tolerance of the first-batch check (probabilities, gradients), relative to the largest value.
CHECK_RTOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-9}


def check_batch(model, X, y, batch, margin=1e-5):
    """Up to ``batch`` of the first ``4 * batch`` samples, away from the ReLU kinks.

    A hidden pre-activation within rounding error of 0 may land on either side
    of the kink depending on the summation order, which flips a derivative
    and a whole gradient row: a correct backend would fail the check there.
    So the check batch keeps the samples whose every hidden pre-activation
    (reference backend) has ``|z| > margin * max|z|`` of its layer. The
    float32 rounding error of a sum of a few dozen terms stays below about
    3e-6 of the layer's largest ``|z|``; with the default margin, 466 of 512
    samples qualified at width 1000 and 32 of 512 at width 16384 (seed 0).

    Returns
    -------
    Xb : ndarray, shape (n_features, m), C-contiguous, m <= batch
    yb : int64 ndarray, shape (m,)
    """
    cand = np.ascontiguousarray(X[:, :4 * batch])
    ref = SparseMLP.from_state_dict(model.state_dict(), backend="reference")
    acts = ref.activations(cand)
    near = np.zeros(cand.shape[1], dtype=bool)
    for i, layer in enumerate(ref.layers[:-1]):
        Z = np.abs(ops.spmm(layer.W, acts[i], backend="reference") + layer.b[:, None])
        near |= np.any(Z <= margin * float(Z.max()), axis=0)
    keep = np.flatnonzero(~near)[:batch]
    if keep.shape[0] == 0:
        raise RuntimeError(f"no check sample among the first {cand.shape[1]} has all hidden "
                           f"pre-activations away from 0 (margin {margin:g})")
    return np.ascontiguousarray(cand[:, keep]), y[keep]


def reference_pass(model, Xb, yb):
    """Probabilities, loss and per-layer ``(grad_W, grad_b)`` of the reference backend."""
    ref = SparseMLP.from_state_dict(model.state_dict(), backend="reference")
    P = ref.forward(Xb, training=True).copy()
    loss = ref.backward(yb)
    return {"P": P, "loss": loss, "grads": [(l.grad_W.copy(), l.grad_b.copy())
                                            for l in ref.layers]}


def max_error(pairs):
    return max(harness.relative_error(a, e) for a, e in pairs)


def check_ours(model, Xb, yb, ref):
    """Relative error of the model's first-batch pass against ``ref``; raises on mismatch."""
    P = model.forward(Xb, training=True).copy()
    model.backward(yb)
    pairs = [(P, ref["P"])] + [(layer.grad_W, g[0]) for layer, g in zip(model.layers,
                                                                           ref["grads"])]
    pairs += [(layer.grad_b, g[1]) for layer, g in zip(model.layers, ref["grads"])]
    err = max_error(pairs)
    for layer in model.layers:  # leave no gradient behind: the first step computes its own
        layer.grad_W[...] = 0
        layer.grad_b[...] = 0
    return checked_error(err, model.dtype, "our backend's first batch")


def checked_error(err, dtype, what):
    """``err`` if within :data:`CHECK_RTOL` for ``dtype``, else ResultMismatchError naming ``what``."""
    tol = CHECK_RTOL[np.dtype(dtype)]
    if not err <= tol:
        raise harness.ResultMismatchError(f"{what} differs from the reference backend: "
                                          f"relative error {err:.3g} > {tol:g}")
    return err
