"""The sparse model: layers, activations, losses, the MLP and the optimizer.

Activations are feature-major (``(n_features, batch)``); weights are
:class:`~ctre_sparse.sparse.CSRMatrix` from the first step to the last.
"""

from .activations import ACTIVATIONS, get_activation
from .clip import OutlierClip
from .init import erdos_renyi, erdos_renyi_nnz, init_bound
from .layers import SparseLinear
from .losses import cross_entropy_grad, softmax, softmax_cross_entropy
from .mlp import SparseMLP
from .optim import SGD

__all__ = ["ACTIVATIONS", "get_activation", "erdos_renyi", "erdos_renyi_nnz", "init_bound",
           "SparseLinear", "softmax", "cross_entropy_grad", "softmax_cross_entropy",
           "SparseMLP", "SGD", "OutlierClip"]
