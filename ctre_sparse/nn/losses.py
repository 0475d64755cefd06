"""Softmax and softmax cross-entropy on feature-major logits ``(n_classes, batch)``."""

from __future__ import annotations

from ..sparse import array_module

__all__ = ["softmax", "cross_entropy_grad", "softmax_cross_entropy"]


def softmax(Z, out=None, *, return_lse=False, xp=None):
    """Column-wise softmax of logits ``Z`` (shape ``(n_classes, batch)``), stable.

    Parameters
    ----------
    Z : ndarray, shape (n_classes, batch)
    out : ndarray, optional
        Buffer for the result (may not be ``Z`` when ``return_lse``).
    return_lse : bool, default False
        Also return the per-column log-sum-exp of ``Z`` (shape ``(batch,)``),
        from which the cross-entropy is ``lse - Z[y, i]`` without ``log(0)``.
    xp : module, optional
        The array module of ``Z`` (numpy or cupy); found from ``Z`` when not
        given (the model passes its cached one).

    Examples
    --------
    >>> import numpy as np
    >>> softmax(np.array([[0.0, 1000.0], [0.0, 1000.0]]))
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    if xp is None:
        xp = array_module(Z)
    zmax = Z.max(axis=0)
    out = xp.subtract(Z, zmax, out=out)
    xp.exp(out, out=out)
    sums = out.sum(axis=0)
    out /= sums
    if return_lse:
        return out, xp.log(sums) + zmax
    return out


def cross_entropy_grad(P, y, out=None, *, xp=None, n_total=None):
    """Gradient of the mean cross-entropy w.r.t. the logits: ``(P - onehot(y)) / batch``.

    ``xp`` is the array module of ``P`` (found from ``P`` when not given).
    ``n_total`` replaces ``batch`` as the divisor: this batch is then a shard
    of a global batch of ``n_total`` samples (data-parallel training), whose
    mean loss the shards' gradients add up to.
    """
    if xp is None:
        xp = array_module(P)
    batch = P.shape[1]
    if out is None:
        out = P.copy()
    elif out is not P:
        xp.copyto(out, P)
    out[y, xp.arange(batch)] -= 1
    out *= 1.0 / (batch if n_total is None else n_total)
    return out


def softmax_cross_entropy(Z, y):
    """Mean softmax cross-entropy, the probabilities and the gradient w.r.t. the logits.

    Computed through the log-sum-exp, so it stays finite for any finite logits.

    Parameters
    ----------
    Z : ndarray, shape (n_classes, batch)
        Logits.
    y : int ndarray, shape (batch,)
        Class codes in ``[0, n_classes)``.

    Returns
    -------
    loss : float
        ``mean_i -log softmax(Z)[y_i, i]``.
    probs : ndarray, shape (n_classes, batch)
    grad : ndarray, shape (n_classes, batch)
        ``(softmax(Z) - onehot(y)) / batch``.

    Examples
    --------
    >>> import numpy as np
    >>> loss, P, G = softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 1]))
    >>> round(loss, 6)
    0.693147
    >>> loss, P, G = softmax_cross_entropy(np.array([[0.], [1e4]]), np.array([0]))
    >>> loss
    10000.0
    """
    xp = array_module(Z)
    P, lse = softmax(Z, return_lse=True, xp=xp)
    loss = float(xp.mean(lse - Z[y, xp.arange(Z.shape[1])]))
    return loss, P, cross_entropy_grad(P, y, xp=xp)
