"""scikit-learn's estimator checks on a small CTREClassifier.

Every check of ``parametrize_with_checks`` runs; none is skipped. The
instance is small (one hidden layer of 32, dense-ish epsilon) so the whole
suite takes seconds, and trains enough epochs at a larger learning rate to
pass ``check_classifiers_train`` (accuracy > 0.83 on its blobs).
"""

import numpy as np
from sklearn.utils.estimator_checks import parametrize_with_checks

from ctre_sparse import CTREClassifier


def _small():
    return CTREClassifier(hidden_layer_sizes=(32,), epsilon=8, max_epochs=10,
                          learning_rate=0.05, batch_size=16, backend="auto", random_state=0)


@parametrize_with_checks([_small()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
