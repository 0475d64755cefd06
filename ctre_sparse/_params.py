"""Parameter checks of :class:`~ctre_sparse.CTREClassifier` (sklearn convention: run at fit)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_number", "hidden_sizes", "check_params", "params_json"]


def _shown(value):
    """``value`` as a user wrote it: NumPy scalars as Python ones (``'foo'``, not
    ``np.str_('foo')``) in error messages."""
    return value.item() if isinstance(value, np.generic) else value


def check_number(name, value, low, high, *, integer=False, low_open=False, high_open=True):
    """``value`` in the interval from ``low`` to ``high`` (None: unbounded), else ValueError."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name} must be {'an int' if integer else 'a number'}, got {_shown(value)!r}")
    below = value <= low if low_open else value < low
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        interval = ("(" if low_open else "[") + f"{low}, " + \
            ("inf)" if high is None else f"{high}" + (")" if high_open else "]"))
        raise ValueError(f"{name} must be in {interval}, got {_shown(value)!r}")


def hidden_sizes(value):
    """The hidden layer widths as a list of ints (one int or a sequence of positive ints)."""
    sizes = [value] if isinstance(value, numbers.Integral) else list(value)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"hidden_layer_sizes must be positive ints, got {_shown(value)!r}")
    return [int(s) for s in sizes]


def check_params(est, growths, activations):
    """Validate the constructor parameters of a :class:`~ctre_sparse.CTREClassifier` (at fit).

    Raises ValueError naming the parameter, the expected range and the value given.
    """
    hidden_sizes(est.hidden_layer_sizes)
    if est.density is None:
        check_number("epsilon", est.epsilon, 0, None, low_open=True)
    else:
        check_number("density", est.density, 0, 1, low_open=True, high_open=False)
    check_number("zeta", est.zeta, 0, 1)
    if est.growth not in growths:
        raise ValueError(f"growth must be one of {growths}, got {_shown(est.growth)!r}")
    if est.activation not in activations:
        raise ValueError(f"activation must be one of {activations}, got {_shown(est.activation)!r}")
    check_number("learning_rate", est.learning_rate, 0, None, low_open=True)
    check_number("momentum", est.momentum, 0, 1)
    check_number("weight_decay", est.weight_decay, 0, None)
    check_number("batch_size", est.batch_size, 1, None, integer=True)
    check_number("max_epochs", est.max_epochs, 1, None, integer=True)
    check_number("validation_fraction", est.validation_fraction, 0, 1)
    check_number("patience", est.patience, 1, None, integer=True)
    if est.cosine_samples is not None:
        check_number("cosine_samples", est.cosine_samples, 1, None, integer=True)
    if est.cosine_approx_dim is not None:
        check_number("cosine_approx_dim", est.cosine_approx_dim, 1, None, integer=True)
    check_number("cosine_approx_oversample", est.cosine_approx_oversample, 1, None,
                  integer=True)
    if est.cosine_mode not in ("auto", "exact", "sketch", "index"):
        raise ValueError(f"cosine_mode must be 'auto', 'exact', 'sketch' or 'index', "
                         f"got {est.cosine_mode!r}")
    check_number("dropout", est.dropout, 0, 1)
    check_number("checkpoint_every", est.checkpoint_every, 1, None, integer=True)
    if est.device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {_shown(est.device)!r}")
    if est.device == "cuda" and est.backend not in ("auto", "cuda"):
        raise ValueError(f"device='cuda' needs backend 'auto' or 'cuda', got {_shown(est.backend)!r}")
    if not isinstance(est.standardize, (bool, np.bool_)):
        raise ValueError(f"standardize must be True or False, got {_shown(est.standardize)!r}")
    if est.distributed not in (None, "mpi"):
        raise ValueError(f"distributed must be None or 'mpi', got {_shown(est.distributed)!r}")
    if est.distributed is not None and est.device != "cpu":
        raise ValueError(f"distributed={est.distributed!r} trains on the CPU only, got "
                         f"device={est.device!r}")
    if np.dtype(est.dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {est.dtype!r}")


def params_json(est):
    """``est.get_params()`` made JSON-able: dtype by name, paths as str, a Generator seed as None."""
    params = est.get_params(deep=False)
    params["dtype"] = np.dtype(params["dtype"]).name
    sizes = params["hidden_layer_sizes"]
    params["hidden_layer_sizes"] = [int(sizes)] if isinstance(sizes, numbers.Integral) \
        else [int(s) for s in sizes]
    if params["checkpoint_dir"] is not None:
        params["checkpoint_dir"] = str(params["checkpoint_dir"])
    if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
        params["random_state"] = None    # the seed actually used is saved as "entropy"
    for key, value in params.items():
        if isinstance(value, np.generic):
            params[key] = value.item()
    return params
