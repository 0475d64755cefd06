"""ctre_sparse: truly-sparse kernels and CTRE/SET dynamic sparse training for MLPs.

Weights live in CSR form (:class:`CSRMatrix`) from the first step to the
last; the ops in :mod:`ctre_sparse.ops` run on NumPy (native C++/OpenMP or
numba) or CuPy arrays.
"""

import logging

from ._version import __version__
from .backends import BackendUnavailableError, available_backends, backend_status
from .ops import (activation_backward, bias_activation, cosine_pairs, gather_columns, insert,
                  prune_magnitude, sddmm, sgd_update, spmm, spmm_t, topk_abs_product,
                  topk_cosine)
from .sparse import CSRMatrix, get_index_dtype

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__", "CSRMatrix", "get_index_dtype", "spmm", "spmm_t", "sddmm",
    "cosine_pairs", "topk_cosine", "topk_abs_product", "prune_magnitude", "insert", "gather_columns",
    "bias_activation", "activation_backward", "sgd_update", "available_backends",
    "backend_status", "BackendUnavailableError", "CTREClassifier",
]


def __getattr__(name):
    # the estimator pulls in scikit-learn; import it only when asked for
    if name == "CTREClassifier":
        from .estimator import CTREClassifier

        return CTREClassifier
    raise AttributeError(f"module 'ctre_sparse' has no attribute {name!r}")
