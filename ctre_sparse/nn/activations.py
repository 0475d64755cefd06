"""Element-wise activations on feature-major arrays.

Every activation exposes ``forward(Z, out=None) -> A`` and
``backward(Z, A, dA) -> dZ``; ``backward`` overwrites ``dA`` with the result
and returns it (no allocation beyond a boolean mask for the piecewise ones).

Names understood by :func:`get_activation`:

``"relu"``
    ``max(z, 0)``.
``"leaky_relu"``
    ``z`` for ``z > 0``, ``0.01 z`` otherwise.
``"tanh"``, ``"sigmoid"``
    The usual ones (sigmoid computed stably for large ``|z|``).
``"alternated_left_relu"`` (All-ReLU)
    Curci, Mocanu & Pechenizkiy, "Truly sparse neural networks at scale"
    (2021): ``z`` for ``z > 0`` and ``s * z`` otherwise, where the left slope
    ``s`` alternates with the hidden-layer index: ``-alpha`` for even indices
    (the first hidden layer is index 0), ``+alpha`` for odd ones, ``alpha = 0.6``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["get_activation", "ACTIVATIONS", "ReLU", "LeakyReLU", "Tanh", "Sigmoid",
           "AlternatedLeftReLU"]


class _Activation:
    """Base class: a stateless element-wise function and its derivative."""

    name = ""

    def forward(self, Z, out=None):
        """Return ``f(Z)``, written into ``out`` when given (may be ``Z`` itself)."""
        raise NotImplementedError

    def backward(self, Z, A, dA):
        """Return ``dA * f'(Z)``, computed in place in ``dA``.

        Parameters
        ----------
        Z : ndarray
            Pre-activation (as passed to :meth:`forward`).
        A : ndarray
            ``f(Z)`` as returned by :meth:`forward`.
        dA : ndarray
            Gradient of the loss with respect to ``A``; overwritten.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Activation):
    """``max(z, 0)``.

    Examples
    --------
    >>> import numpy as np
    >>> ReLU().forward(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """

    name = "relu"

    def forward(self, Z, out=None):
        return np.maximum(Z, 0, out=out)

    def backward(self, Z, A, dA):
        np.multiply(dA, Z > 0, out=dA)
        return dA


class _LeftSlopeReLU(_Activation):
    """``z`` for ``z > 0``, ``slope * z`` otherwise."""

    def __init__(self, slope):
        self.slope = float(slope)

    def forward(self, Z, out=None):
        neg = Z <= 0  # before ``out`` (possibly ``Z``) is written
        if out is None:
            out = Z.copy()
        elif out is not Z:
            np.copyto(out, Z)
        np.multiply(out, self.slope, out=out, where=neg)
        return out

    def backward(self, Z, A, dA):
        np.multiply(dA, self.slope, out=dA, where=Z <= 0)
        return dA

    def __repr__(self):
        return f"{type(self).__name__}(slope={self.slope})"


class LeakyReLU(_LeftSlopeReLU):
    """Leaky ReLU with left slope ``alpha`` (default 0.01).

    Examples
    --------
    >>> import numpy as np
    >>> LeakyReLU().forward(np.array([[-1.0, 2.0]]))
    array([[-0.01,  2.  ]])
    """

    name = "leaky_relu"

    def __init__(self, alpha=0.01):
        super().__init__(alpha)


class AlternatedLeftReLU(_LeftSlopeReLU):
    """All-ReLU: left slope ``-alpha`` on even hidden layers, ``+alpha`` on odd ones.

    Parameters
    ----------
    layer_index : int
        Index of the hidden layer (0 = the first hidden layer).
    alpha : float, default 0.6

    Examples
    --------
    >>> import numpy as np
    >>> AlternatedLeftReLU(0).forward(np.array([[-1.0, 2.0]]))
    array([[0.6, 2. ]])
    >>> AlternatedLeftReLU(1).forward(np.array([[-1.0, 2.0]]))
    array([[-0.6,  2. ]])
    """

    name = "alternated_left_relu"

    def __init__(self, layer_index, alpha=0.6):
        self.layer_index = int(layer_index)
        super().__init__(-alpha if self.layer_index % 2 == 0 else alpha)


class Tanh(_Activation):
    """Hyperbolic tangent."""

    name = "tanh"

    def forward(self, Z, out=None):
        return np.tanh(Z, out=out)

    def backward(self, Z, A, dA):
        # dA * (1 - A^2) without temporaries beyond one array
        tmp = np.multiply(A, A)
        np.subtract(1, tmp, out=tmp)
        np.multiply(dA, tmp, out=dA)
        return dA


class Sigmoid(_Activation):
    """Logistic sigmoid ``1 / (1 + exp(-z))``, written as ``(1 + tanh(z/2)) / 2`` (stable)."""

    name = "sigmoid"

    def forward(self, Z, out=None):
        out = np.multiply(Z, 0.5, out=out)
        np.tanh(out, out=out)
        out += 1
        out *= 0.5
        return out

    def backward(self, Z, A, dA):
        tmp = np.subtract(1, A)
        tmp *= A
        np.multiply(dA, tmp, out=dA)
        return dA


ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "alternated_left_relu")


def get_activation(name, layer_index=0):
    """Return the activation called ``name`` for hidden layer ``layer_index``.

    Parameters
    ----------
    name : str or activation object
        One of :data:`ACTIVATIONS`; an object with ``forward``/``backward`` is
        returned unchanged.
    layer_index : int, default 0
        Hidden-layer index (only All-ReLU depends on it).

    Returns
    -------
    activation object

    Examples
    --------
    >>> get_activation("alternated_left_relu", 1)
    AlternatedLeftReLU(slope=0.6)
    """
    if hasattr(name, "forward") and hasattr(name, "backward"):
        return name
    if name == "relu":
        return ReLU()
    if name == "leaky_relu":
        return LeakyReLU()
    if name == "tanh":
        return Tanh()
    if name == "sigmoid":
        return Sigmoid()
    if name in ("alternated_left_relu", "all_relu"):
        return AlternatedLeftReLU(layer_index)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
