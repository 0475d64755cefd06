"""The docstring examples of the core modules run and stay true."""

import doctest

import pytest

import ctre_sparse._params
import ctre_sparse._random
import ctre_sparse._split
import ctre_sparse.checks
import ctre_sparse.device
import ctre_sparse.nn.activations
import ctre_sparse.nn.init
import ctre_sparse.nn.optim
import ctre_sparse.ops
import ctre_sparse.sparse
import ctre_sparse.training_ops
import ctre_sparse.tuning
import ctre_sparse.validation

MODULES = [ctre_sparse.sparse, ctre_sparse.ops, ctre_sparse.training_ops, ctre_sparse.checks,
           ctre_sparse.device, ctre_sparse.nn.activations, ctre_sparse.tuning,
           ctre_sparse._random, ctre_sparse.validation, ctre_sparse.nn.init, ctre_sparse.nn.optim,
           ctre_sparse._params, ctre_sparse._split]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
                             verbose=False)
    assert result.attempted > 0, f"{module.__name__} has no doctest examples"
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {module.__name__}"
