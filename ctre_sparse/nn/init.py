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

__all__ = ["erdos_renyi", "init_bound", "erdos_renyi_nnz", "INITS"]

INITS = ("he", "glorot")


def init_bound(n_in, n_out, init="he"):
    """Half-width of the uniform initialisation interval.

    Parameters
    ----------
    n_in, n_out : int
        Fan-in and fan-out of the (dense-equivalent) layer.
    init : {"he", "glorot"}
        ``"he"``: ``sqrt(6 / n_in)``; ``"glorot"``: ``sqrt(6 / (n_in + n_out))``.

    Examples
    --------
    >>> round(init_bound(6, 10), 6)
    1.0
    """
    if init == "he":
        return float(np.sqrt(6.0 / max(1, n_in)))
    if init == "glorot":
        return float(np.sqrt(6.0 / max(1, n_in + n_out)))
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


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
    init : {"he", "glorot"}, default "he"
        Values uniform in ``[-bound, bound]`` with :func:`init_bound`.

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
    """
    rng = check_random_state(random_state)
    nnz = erdos_renyi_nnz(n_out, n_in, epsilon=epsilon, density=density)
    bound = init_bound(n_in, n_out, init)
    return CSRMatrix.random(n_out, n_in, nnz=nnz, random_state=rng, dtype=dtype,
                            index_dtype=index_dtype,
                            values=lambda r, size: r.uniform(-bound, bound, size))
