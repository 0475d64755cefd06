"""Element-wise activations on feature-major arrays.

Every activation is an :class:`Activation`: ``forward(Z, out=None) -> A``,
``forward_with_bias(Y, b, out=...) -> (Z, A)`` (what the model calls: the
bias added in place, then the activation) and ``backward(Z, A, dA,
work=None) -> dZ``, which overwrites ``dA`` with the result and returns it,
using ``work`` (an array like ``dA``, when :attr:`Activation.needs_work`) as
scratch, so the training loop allocates nothing per batch. The ReLU family
(:class:`LeftSlopeReLU` and its subclasses) runs the fused ops
:func:`~ctre_sparse.ops.bias_activation` and
:func:`~ctre_sparse.ops.activation_backward` (one compiled pass each, on the
model's backend); tanh and sigmoid are array expressions of NumPy or CuPy.

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

from ..device import PicklesArrayModule
from ..training_ops import activation_backward, bias_activation

__all__ = ["get_activation", "ACTIVATIONS", "Activation", "LeftSlopeReLU", "ReLU", "LeakyReLU",
           "Tanh", "Sigmoid", "AlternatedLeftReLU"]


class Activation(PicklesArrayModule):
    """Base class: a stateless element-wise function and its derivative.

    Subclasses implement :meth:`forward` and :meth:`backward`; they may
    override :meth:`forward_with_bias` with a fused version.
    """

    name = ""
    #: The array module of the arrays it gets (numpy; the model sets cupy on a GPU).
    xp = np
    #: Whether :meth:`backward` uses its ``work`` buffer (the model then passes one).
    needs_work = True

    def forward(self, Z, out=None):
        """Return ``f(Z)``, written into ``out`` when given (may be ``Z`` itself)."""
        raise NotImplementedError

    def forward_with_bias(self, Y, b, *, out=None, backend="auto"):
        """``Z = Y + b[:, None]`` (in place in ``Y``) and ``A = f(Z)`` (into ``out``).

        Parameters
        ----------
        Y : ndarray, shape (n, m)
            A layer's ``W @ X``; receives ``Z``.
        b : ndarray, shape (n,)
        out : ndarray, shape (n, m), optional
            Buffer for ``A`` (not ``Y``).
        backend : str, default "auto"
            Backend of the compiled op, for activations that have one.

        Returns
        -------
        Z, A : ndarray
        """
        Y += b[:, None]
        return Y, self.forward(Y, out=out)

    def backward(self, Z, A, dA, work=None, *, backend="auto"):
        """Return ``dA * f'(Z)``, computed in place in ``dA``.

        Parameters
        ----------
        Z : ndarray
            Pre-activation (as passed to :meth:`forward`).
        A : ndarray
            ``f(Z)`` as returned by :meth:`forward`.
        dA : ndarray
            Gradient of the loss with respect to ``A``; overwritten.
        work : ndarray like ``dA``, optional
            Scratch space (allocated when needed and not given).
        backend : str, default "auto"
            Backend of the compiled op, for activations that have one.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class LeftSlopeReLU(Activation):
    """``z`` for ``z > 0``, ``slope * z`` otherwise, with ``|slope| <= 1``.

    :meth:`forward` is the array expression ``max(z, slope * z)`` (equal to
    the above for ``|slope| <= 1``); :meth:`forward_with_bias` and
    :meth:`backward` are the fused ops :func:`~ctre_sparse.ops.bias_activation`
    and :func:`~ctre_sparse.ops.activation_backward`, which compute the same
    values (bit for bit on the CPU).

    Parameters
    ----------
    slope : float in [-1, 1]

    Examples
    --------
    >>> import numpy as np
    >>> LeftSlopeReLU(0.5).forward(np.array([[-2.0, 2.0]]))
    array([[-1.,  2.]])
    """

    needs_work = False

    def __init__(self, slope):
        slope = float(slope)
        if not -1.0 <= slope <= 1.0:
            raise ValueError(f"the left slope must lie in [-1, 1], got {slope}")
        self.slope = slope

    def forward(self, Z, out=None):
        """``max(Z, slope * Z)`` as two array passes (into ``out``, which may be ``Z``)."""
        if out is Z:  # in place: keep a copy of Z for the max
            Z = Z.copy()
        xp = self.xp
        out = xp.multiply(Z, Z.dtype.type(self.slope), out=out)
        return xp.maximum(out, Z, out=out)

    def forward_with_bias(self, Y, b, *, out=None, backend="auto"):
        """``Z = Y + b[:, None]`` in place and ``A = f(Z)``: one pass of the op
        :func:`~ctre_sparse.ops.bias_activation`; returns ``(Z, A)``."""
        return bias_activation(Y, b, slope=self.slope, out=out, preactivation=Y,
                               backend=backend)

    def backward(self, Z, A, dA, work=None, *, backend="auto"):
        """``dA *= f'(Z)`` by the op :func:`~ctre_sparse.ops.activation_backward`; returns ``dA``
        (``A`` and ``work`` are not needed)."""
        return activation_backward(Z, dA, slope=self.slope, out=dA, backend=backend)

    def __repr__(self):
        return f"{type(self).__name__}(slope={self.slope})"


class ReLU(LeftSlopeReLU):
    """``max(z, 0)``.

    Examples
    --------
    >>> import numpy as np
    >>> ReLU().forward(np.array([[-1.0, 2.0]])) + 0.0
    array([[0., 2.]])
    """

    name = "relu"

    def __init__(self):
        super().__init__(0.0)

    def __repr__(self):
        return "ReLU()"


class LeakyReLU(LeftSlopeReLU):
    """Leaky ReLU with left slope ``alpha`` in [0, 1] (default 0.01).

    Examples
    --------
    >>> import numpy as np
    >>> LeakyReLU().forward(np.array([[-1.0, 2.0]]))
    array([[-0.01,  2.  ]])
    """

    name = "leaky_relu"

    def __init__(self, alpha=0.01):
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        super().__init__(alpha)


class AlternatedLeftReLU(LeftSlopeReLU):
    """All-ReLU: left slope ``-alpha`` on even hidden layers, ``+alpha`` on odd ones.

    Parameters
    ----------
    layer_index : int
        Index of the hidden layer (0 = the first hidden layer).
    alpha : float in [0, 1], default 0.6

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


class Tanh(Activation):
    """Hyperbolic tangent."""

    name = "tanh"

    def forward(self, Z, out=None):
        """``tanh(Z)`` (into ``out`` when given)."""
        return self.xp.tanh(Z, out=out)

    def backward(self, Z, A, dA, work=None, *, backend="auto"):
        """``dA *= 1 - A**2`` (``work`` as scratch); returns ``dA``."""
        xp = self.xp
        tmp = xp.multiply(A, A, out=work)  # dA * (1 - A^2)
        xp.subtract(1, tmp, out=tmp)
        xp.multiply(dA, tmp, out=dA)
        return dA


class Sigmoid(Activation):
    """Logistic sigmoid ``1 / (1 + exp(-z))``, written as ``(1 + tanh(z/2)) / 2`` (stable)."""

    name = "sigmoid"

    def forward(self, Z, out=None):
        """``(1 + tanh(Z / 2)) / 2`` (into ``out`` when given)."""
        xp = self.xp
        out = xp.multiply(Z, 0.5, out=out)
        xp.tanh(out, out=out)
        out += 1
        out *= 0.5
        return out

    def backward(self, Z, A, dA, work=None, *, backend="auto"):
        """``dA *= A * (1 - A)`` (``work`` as scratch); returns ``dA``."""
        xp = self.xp
        tmp = xp.subtract(1, A, out=work)
        tmp *= A
        xp.multiply(dA, tmp, out=dA)
        return dA


ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "alternated_left_relu")


def get_activation(name, layer_index=0):
    """Return the activation called ``name`` for hidden layer ``layer_index``.

    Parameters
    ----------
    name : str or Activation
        One of :data:`ACTIVATIONS`; an :class:`Activation` is returned unchanged.
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
    if isinstance(name, Activation):
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
