"""Initial sparse topologies and weight initialisation.

The Erdős–Rényi topology of SET (Mocanu et al., 2018) connects each pair of
neurons with probability ``epsilon * (n_in + n_out) / (n_in * n_out)``; here
exactly ``round(epsilon * (n_in + n_out))`` distinct connections are drawn
uniformly (the expected count of the original), never forming a dense mask.
"""

from __future__ import annotations

import logging

import numpy as np

from .._random import check_random_state
from ..sparse import CSRMatrix

logger = logging.getLogger(__name__)

__all__ = ["erdos_renyi", "init_bound", "erdos_renyi_nnz", "fan_in_bounds", "INITS"]

#: ``"he"`` and ``"glorot"`` scale to the dense layer's fan-in (the weights of a
#: neuron with 2 inputs in a 1000-wide layer get the size meant for 1000 inputs);
#: ``"he_sparse"`` scales to each neuron's real number of inputs.
INITS = ("he", "glorot", "he_sparse")


def init_bound(n_in, n_out, init="he"):
    """Half-width of the uniform initialisation interval.

    Parameters
    ----------
    n_in, n_out : int
        Fan-in and fan-out of the (dense-equivalent) layer.
    init : {"he", "glorot"}
        ``"he"``: ``sqrt(6 / n_in)``; ``"glorot"``: ``sqrt(6 / (n_in + n_out))``.
        (``"he_sparse"`` has one bound per neuron: :func:`fan_in_bounds`.)

    Examples
    --------
    >>> round(init_bound(6, 10), 6)
    1.0
    """
    if init == "he":
        return float(np.sqrt(6.0 / max(1, n_in)))
    if init == "glorot":
        return float(np.sqrt(6.0 / max(1, n_in + n_out)))
    if init == "he_sparse":
        raise ValueError("init 'he_sparse' has one bound per neuron: use fan_in_bounds(W)")
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def fan_in_bounds(fan_in):
    """He-uniform half-widths ``sqrt(6 / k)`` for neurons with ``k`` real inputs.

    Uniform weights in ``[-b, b]`` have variance ``b**2 / 3 = 2 / k``: a ReLU
    neuron with ``k`` inputs of second moment ``q`` then gets a pre-activation
    of variance ``2 q`` whatever ``k`` is (He et al. 2015, applied to the
    connections that exist instead of the dense layer's ``n_in``). At epsilon 1
    a neuron has one or two inputs, and the dense bound ``sqrt(6 / n_in)``
    would shrink the signal about 20-fold per layer.

    Parameters
    ----------
    fan_in : int array
        Real number of inputs of each neuron (0 is allowed: bound 0).

    Returns
    -------
    ndarray of float64, same shape

    Examples
    --------
    >>> fan_in_bounds(np.array([6, 24, 0])).tolist()
    [1.0, 0.5, 0.0]
    """
    k = np.asarray(fan_in, dtype=np.float64)
    return np.sqrt(6.0 / np.maximum(k, 1.0)) * (k > 0)


def erdos_renyi_nnz(n_out, n_in, epsilon=None, density=None):
    """Number of connections of an Erdős–Rényi layer.

    Exactly one of ``epsilon`` and ``density`` must be given. With
    ``epsilon``: ``round(epsilon * (n_in + n_out))``, capped at
    ``n_in * n_out`` (the layer is dense then). With ``density``:
    ``round(density * n_in * n_out)``.

    Examples
    --------
    >>> erdos_renyi_nnz(1000, 784, epsilon=20)
    35680
    >>> erdos_renyi_nnz(10, 5, epsilon=20)
    50
    """
    total = int(n_out) * int(n_in)
    if (epsilon is None) == (density is None):
        raise ValueError(f"give exactly one of epsilon and density, got epsilon={epsilon!r}, "
                         f"density={density!r}")
    if epsilon is not None:
        if not float(epsilon) > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        nnz = int(round(float(epsilon) * (int(n_in) + int(n_out))))
        if nnz >= total:
            logger.debug("epsilon=%s gives %d >= %d connections: layer %dx%d is dense",
                         epsilon, nnz, total, n_out, n_in)
        return min(nnz, total)
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    return int(round(float(density) * total))


def erdos_renyi(n_out, n_in, epsilon=None, density=None, *, random_state=None,
                dtype=np.float32, index_dtype=None, init="he"):
    """Draw a sparse layer weight with an Erdős–Rényi topology.

    Parameters
    ----------
    n_out, n_in : int
        Output and input neurons; the matrix has shape ``(n_out, n_in)``.
    epsilon : float, optional
        SET's sparsity level: about ``epsilon * (n_in + n_out)`` connections.
    density : float, optional
        Fraction of the ``n_in * n_out`` positions instead of ``epsilon``.
    random_state : int, Generator or None
    dtype : dtype, default float32
    index_dtype : dtype, optional
        Defaults to the index-dtype policy (int32 unless int64 is needed).
    init : {"he", "glorot", "he_sparse"}, default "he"
        Values uniform in ``[-bound, bound]`` with :func:`init_bound` for the
        dense fan-in ``n_in`` ("he", "glorot"), or with each neuron's own
        bound for its real fan-in (:func:`fan_in_bounds`, "he_sparse").

    Returns
    -------
    CSRMatrix, shape (n_out, n_in)

    Examples
    --------
    >>> W = erdos_renyi(100, 50, epsilon=2, random_state=0)
    >>> W.shape, W.nnz
    ((100, 50), 300)
    >>> bool(abs(W.data).max() <= (6 / 50) ** 0.5)
    True
    >>> W = erdos_renyi(100, 50, epsilon=2, random_state=0, init="he_sparse")
    >>> fan_in = np.diff(W.indptr)[W.row_indices()]
    >>> bool(np.all(abs(W.data) <= np.sqrt(6 / fan_in)))
    True
    """
    rng = check_random_state(random_state)
    nnz = erdos_renyi_nnz(n_out, n_in, epsilon=epsilon, density=density)
    if init == "he_sparse":
        W = CSRMatrix.random(n_out, n_in, nnz=nnz, random_state=rng, dtype=dtype,
                             index_dtype=index_dtype,
                             values=lambda r, size: r.uniform(-1.0, 1.0, size))
        bounds = fan_in_bounds(np.diff(W.indptr))
        W.data *= bounds[W.row_indices()].astype(W.dtype)
        return W
    bound = init_bound(n_in, n_out, init)
    return CSRMatrix.random(n_out, n_in, nnz=nnz, random_state=rng, dtype=dtype,
                            index_dtype=index_dtype,
                            values=lambda r, size: r.uniform(-bound, bound, size))
