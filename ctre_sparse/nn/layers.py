"""The sparse linear layer: ``Y = W @ X + b`` on feature-major arrays."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..device import PicklesArrayModule, module_for, to_module
from ..sparse import CSRMatrix

__all__ = ["SparseLinear"]


class SparseLinear(PicklesArrayModule):
    """A linear layer whose weight is a :class:`~ctre_sparse.sparse.CSRMatrix`.

    Forward is ``Y = W @ X + b[:, None]`` (:func:`~ctre_sparse.ops.spmm`);
    backward gives ``dX = W.T @ dY`` (:func:`~ctre_sparse.ops.spmm_t`), the
    weight gradient at the stored connections only
    (:func:`~ctre_sparse.ops.sddmm`, aligned with ``W.data``) and ``db``.
    The ops run with ``check_finite=False``: the trainer checks the loss.

    Parameters
    ----------
    W : CSRMatrix, shape (n_out, n_in)
    b : ndarray, shape (n_out,), optional
        Zeros by default.
    backend : str, default "auto"

    Attributes
    ----------
    grad_W : ndarray, shape (nnz,)
        Weight gradient after :meth:`backward`, aligned with ``W.data``.
    grad_b : ndarray, shape (n_out,)
    xp : module
        The array module of the layer's arrays (numpy, or cupy after ``to_device``).

    Examples
    --------
    >>> import numpy as np
    >>> W = CSRMatrix.from_dense(np.array([[1., 0.], [2., 3.]]))
    >>> layer = SparseLinear(W, np.array([0.5, 0.]))
    >>> layer.forward(np.ones((2, 1)))
    array([[1.5],
           [5. ]])
    """

    def __init__(self, W, b=None, *, backend="auto"):
        if not isinstance(W, CSRMatrix):
            raise ValueError(f"W must be a CSRMatrix, got {type(W).__name__}")
        xp = W.xp
        if b is None:
            b = xp.zeros(W.n_out, dtype=W.dtype)
        b = xp.ascontiguousarray(xp.asarray(b), dtype=W.dtype)
        if b.shape != (W.n_out,):
            raise ValueError(f"b must have shape ({W.n_out},), got {b.shape}")
        self.b = b
        self.backend = backend
        self.grad_b = xp.zeros_like(b)
        self.set_weight(W)

    @property
    def shape(self):
        """``(n_out, n_in)``."""
        return self.W.shape

    @property
    def dtype(self):
        """Value dtype."""
        return self.W.dtype

    def set_weight(self, W):
        """Replace the weight matrix (after a topology change); gradients are reset.

        Parameters
        ----------
        W : CSRMatrix
            Same shape and dtype as the current weight.
        """
        if hasattr(self, "W") and (W.shape != self.W.shape or W.dtype != self.W.dtype):
            raise ValueError(f"new weight must have shape {self.W.shape} and dtype "
                             f"{self.W.dtype}, got {W.shape} and {W.dtype}")
        self.W = W
        self.xp = W.xp  # the array module (numpy or cupy), kept for the hot loop
        self.grad_W = self.xp.zeros(W.nnz, dtype=W.dtype)

    def to_device(self, device):
        """Move weight, bias and gradients to ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy); in place.

        Parameters
        ----------
        device : {"cpu", "cuda"}

        Returns
        -------
        self
        """
        xp = module_for(device)
        W = self.W.to_device(device)
        self.b = xp.ascontiguousarray(to_module(self.b, xp))
        self.grad_b = xp.zeros_like(self.b)
        self._ones = None
        self.set_weight(W)
        return self

    def forward(self, X, out=None, *, bias=True):
        """Return ``W @ X + b[:, None]`` (written into ``out`` when given).

        Parameters
        ----------
        X : ndarray, shape (n_in, batch), C-contiguous, dtype of W
        out : ndarray, shape (n_out, batch), optional
        bias : bool, default True
            False: return ``W @ X`` only (the caller adds the bias itself).
        """
        out = ops.spmm(self.W, X, out=out, backend=self.backend, check_finite=False)
        if bias:
            out += self.b[:, None]
        return out

    def backward(self, dY, X, *, need_dX=True, out=None):
        """Compute ``grad_W``, ``grad_b`` and (optionally) ``dX``.

        Parameters
        ----------
        dY : ndarray, shape (n_out, batch)
            Gradient of the loss with respect to the layer output.
        X : ndarray, shape (n_in, batch)
            The input given to :meth:`forward`.
        need_dX : bool, default True
            False for the first layer (no gradient to the data).
        out : ndarray, shape (n_in, batch), optional
            Buffer for ``dX``.

        Returns
        -------
        ndarray, shape (n_in, batch), or None when ``need_dX`` is False
        """
        ops.sddmm(self.W, dY, X, out=self.grad_W, backend=self.backend)
        ones = getattr(self, "_ones", None)
        if ones is None or ones.shape[0] != dY.shape[1] or ones.dtype != dY.dtype:
            ones = self._ones = self.xp.ones_like(dY, shape=(dY.shape[1],))
        self.xp.matmul(dY, ones, out=self.grad_b)  # row sums by BLAS: ~5x np.sum(axis=1)
        if not need_dX:
            return None
        return ops.spmm_t(self.W, dY, out=out, backend=self.backend, check_finite=False)

    def __repr__(self):
        return f"SparseLinear(n_in={self.W.n_in}, n_out={self.W.n_out}, nnz={self.W.nnz})"
