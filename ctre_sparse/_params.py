"""Parameter checks of :class:`~ctre_sparse.CTREClassifier` (sklearn convention: run at fit)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_number", "hidden_sizes", "check_params", "params_json", "PRESETS",
           "resolved", "fan_in_learning_rate", "mean_fan_in"]

#: Values of the parameters that :class:`~ctre_sparse.CTREClassifier` leaves at
#: None, per ``preset`` (docs/accuracy.md: how "default" was chosen).
#: ``learning_rate="fan_in"``: :func:`fan_in_learning_rate` of the network.
#: With ``growth="rigl"`` the regrown weights start at 0 in either preset and the
#: learning rate is at most :data:`RIGL_MAX_LR`.
PRESETS = {
    "default": {"init": "he_sparse", "grow_init": "threshold", "learning_rate": "fan_in",
                "lr_schedule": "cosine", "warmup_epochs": 5, "weight_decay": 1e-3,
                "dropout": 0.05, "grad_clip": 5.0, "prune": "activity"},
    "paper": {"init": "he", "grow_init": "he", "learning_rate": 0.01, "lr_schedule": "constant",
              "warmup_epochs": 0, "weight_decay": 1e-4, "dropout": 0.0,
              "grad_clip": 0.0, "prune": "magnitude"},
}
#: Peak learning rate of the presets for ``growth="rigl"``: its gradient-chasing
#: growth piles connections onto a few neurons and diverged at 0.3 (docs/accuracy.md).
RIGL_MAX_LR = 0.1
#: :func:`fan_in_learning_rate`: ``min(FAN_IN_LR_MAX, FAN_IN_LR_SCALE / sqrt(k))``.
FAN_IN_LR_SCALE = 0.4
FAN_IN_LR_MAX = 0.3
INITS = ("he", "he_sparse")
#: The updater's rules (``topology.updater.GROW_INITS`` / ``PRUNES``), restated so that checking
#: parameters does not import the topology code (a quarter second); a test keeps them equal.
GROW_INITS = ("he", "he_sparse", "zeros", "kept", "threshold")
PRUNES = ("magnitude", "activity")
LR_SCHEDULES = ("constant", "cosine")


def mean_fan_in(sizes, epsilon=None, density=None):
    """Connections per receiving neuron of an Erdős–Rényi network: ``sum(nnz) / sum(n_out)``.

    Examples
    --------
    >>> round(mean_fan_in([64, 1000, 1000, 1000, 10], epsilon=1), 3)
    2.018
    """
    from .nn.init import erdos_renyi_nnz

    pairs = list(zip(sizes[:-1], sizes[1:]))
    nnz = sum(erdos_renyi_nnz(n_out, n_in, epsilon=epsilon, density=density)
              for n_in, n_out in pairs)
    return nnz / max(1, sum(n_out for _, n_out in pairs))


def fan_in_learning_rate(sizes, epsilon=None, density=None):
    """The "default" preset's peak learning rate: ``min(0.3, 0.4 / sqrt(k))``, k = mean fan-in.

    A neuron's pre-activation moves per SGD step by the sum of its ``k``
    inputs times their weights' steps; with the weights scaled to the real
    fan-in (``init="he_sparse"``) and the steps' signs uncorrelated, that
    sum grows like ``sqrt(k)``, so the rate falls as ``1 / sqrt(k)`` to keep
    the step of the pre-activations alike at every density. Measured on
    3 x 1000 networks (docs/accuracy.md): 0.3 trained best at epsilon 1
    (k about 2) and diverged at epsilon 20 (k about 37), where this gives 0.066.

    Parameters
    ----------
    sizes : list of int
        Layer sizes, inputs to classes.
    epsilon, density : float, optional
        The network's sparsity (one of them).

    Examples
    --------
    >>> sizes = [64, 1000, 1000, 1000, 10]
    >>> [round(fan_in_learning_rate(sizes, epsilon=e), 3) for e in (1, 5, 20)]
    [0.282, 0.126, 0.066]
    """
    k = mean_fan_in(sizes, epsilon=epsilon, density=density)
    return float(min(FAN_IN_LR_MAX, FAN_IN_LR_SCALE / np.sqrt(max(k, 1.0))))


def resolved(est, sizes=None):
    """The preset-dependent settings of ``est``: ``init``, ``grow_init``, ``learning_rate``,
    ``schedule``, ``weight_decay``, ``dropout``, ``grad_clip`` (0: none), ``prune``.

    ``sizes`` (the layer sizes, inputs to classes) is needed only where the
    learning rate follows the network (:func:`fan_in_learning_rate`);
    without it that rate is None. ``schedule`` is None (constant rate) or a
    :class:`~ctre_sparse.nn.optim.WarmupCosine` over ``max_epochs``.
    """
    from .nn.optim import WarmupCosine

    preset = dict(PRESETS[est.preset])
    cfg = {k: preset[k] if getattr(est, k) is None else getattr(est, k) for k in preset}
    if est.growth == "rigl":
        if est.grow_init is None:
            cfg["grow_init"] = "zeros"  # RigL's own rule (and the CTRE authors' code's for it)
    lr = cfg["learning_rate"]
    if lr == "fan_in":
        lr = None if sizes is None else fan_in_learning_rate(
            sizes, **({"density": float(est.density)} if est.density is not None
                      else {"epsilon": float(est.epsilon)}))
    if lr is not None and est.growth == "rigl" and est.learning_rate is None:
        lr = min(float(lr), RIGL_MAX_LR)
    schedule = None
    if cfg["lr_schedule"] == "cosine" and lr is not None:
        warmup = min(int(cfg["warmup_epochs"]), int(est.max_epochs) - 1)
        schedule = WarmupCosine(float(lr), int(est.max_epochs), warmup)
    return {"init": cfg["init"], "grow_init": cfg["grow_init"],
            "learning_rate": None if lr is None else float(lr), "schedule": schedule,
            "weight_decay": float(cfg["weight_decay"]), "dropout": float(cfg["dropout"]),
            "grad_clip": float(cfg["grad_clip"]), "prune": cfg["prune"]}


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
    if est.learning_rate is not None:
        check_number("learning_rate", est.learning_rate, 0, None, low_open=True)
    check_number("momentum", est.momentum, 0, 1)
    if est.weight_decay is not None:
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
    if est.dropout is not None:
        check_number("dropout", est.dropout, 0, 1)
    if est.grad_clip is not None:
        check_number("grad_clip", est.grad_clip, 0, None)
        if not np.isfinite(est.grad_clip) or 0 < est.grad_clip < 1:
            raise ValueError(f"grad_clip must be 0 (off) or >= 1, got "
                             f"{_shown(est.grad_clip)!r}")
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
    _check_preset_params(est)


def _check_preset_params(est):
    """``preset`` and the parameters it fills in (None, or one of their values)."""
    if est.preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {_shown(est.preset)!r}")
    for name, allowed in (("init", INITS), ("grow_init", GROW_INITS),
                          ("lr_schedule", LR_SCHEDULES), ("prune", PRUNES)):
        value = getattr(est, name)
        if value is not None and value not in allowed:
            raise ValueError(f"{name} must be None or one of {allowed}, got {_shown(value)!r}")
    if est.warmup_epochs is not None:
        check_number("warmup_epochs", est.warmup_epochs, 0, None, integer=True)
    if est.growth == "rigl" and est.distributed is not None:
        raise ValueError(f"growth='rigl' does not run with distributed={est.distributed!r}: its "
                         "gradient scores are not split over the ranks; use a cosine growth "
                         "or distributed=None")


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
