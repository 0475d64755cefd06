"""Helpers of :class:`~ctre_sparse.CTREClassifier`'s saved state (private to estimator.py).

Functions of the values they are given (but :func:`read_saved_state`, which
reads a file): the estimator owns its state (``_get_state`` / ``_set_state``)
and calls them; :mod:`ctre_sparse.persistence` turns that state into a file
and back.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from . import persistence
from .device import to_host

logger = logging.getLogger(__name__)

#: Parameters that may differ between an interrupted fit and the one resuming it.
RESUMABLE_PARAMS = ("max_epochs", "verbose", "checkpoint_dir", "checkpoint_every", "backend",
                    "device", "distributed")


def fingerprint(X, codes, dtype):
    """SHA-256 of the training data as the model sees it (``dtype``) and the class codes."""
    X = np.ascontiguousarray(X, dtype=np.dtype(dtype))
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    digest = hashlib.sha256(f"{X.shape}|{X.dtype.name}|".encode())
    digest.update(X.reshape(-1).view(np.uint8))      # a view: no bytes copy of X
    digest.update(codes.view(np.uint8))
    return digest.hexdigest()


def storable_classes(classes):
    """The class labels as saved: object labels become fixed-width strings."""
    classes = np.asarray(classes)
    return classes.astype(str) if classes.dtype.hasobject else classes


def check_resumable(state, *, params, classes, X, codes, dtype, source):
    """Raise ValueError unless the saved ``state`` can continue a fit on ``(X, codes)``.

    The parameters (except :data:`RESUMABLE_PARAMS`), the number of features,
    the classes and the data fingerprint must be those of the saved fit.
    """
    meta = state["meta"]
    saved = with_legacy_defaults(meta["params"])
    changed = sorted(k for k in saved if k not in RESUMABLE_PARAMS and saved[k] != params.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {params.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume from {source}: parameters differ ({diffs})")
    if meta["n_features_in"] != X.shape[1]:
        raise ValueError(f"cannot resume from {source}: it was trained on "
                         f"{meta['n_features_in']} features, X has {X.shape[1]}")
    saved_classes, now_classes = state["arrays"]["classes"], storable_classes(classes)
    if saved_classes.shape != now_classes.shape or np.any(saved_classes != now_classes):
        raise ValueError(f"cannot resume from {source}: classes differ "
                         f"({saved_classes.tolist()} vs {now_classes.tolist()})")
    val = state["arrays"]["validation_indices"]
    if val.shape[0] and int(val.max()) >= X.shape[0]:
        raise ValueError(f"cannot resume from {source}: its validation rows go up to "
                         f"{int(val.max())}, X has {X.shape[0]} rows")
    if meta["fingerprint"] is not None and fingerprint(X, codes, dtype) != meta["fingerprint"]:
        raise ValueError(f"cannot resume from {source}: X, y are not the data of the "
                         f"interrupted run (fingerprint differs)")


def with_legacy_defaults(params):
    """Saved parameters, with the value a file older than a parameter actually ran with.

    ``cosine_mode`` (added with the index mode): such files ran exact cosine
    growth, or the sketch's size rule with ``cosine_approx_dim``, which is
    ``"auto"`` with ``cosine_approx_dim`` set. ``preset`` (added with it and
    ``init``, ``grow_init``, ``lr_schedule``, ``warmup_epochs``): such files
    trained in the CTRE authors' regime, ``"paper"``, with their saved
    learning rate. ``grad_clip``: such files trained without clipping, 0.
    """
    params = dict(params)
    params.setdefault("grad_clip", 0.0)  # files older than it trained without clipping
    if "cosine_mode" not in params:
        params["cosine_mode"] = "exact" if params.get("cosine_approx_dim") is None else "auto"
    if "preset" not in params:
        params["preset"] = "paper"
        for name in ("init", "grow_init", "lr_schedule", "warmup_epochs"):
            params.setdefault(name, None)
    return params


def restored_scaling(arrays, n_features, source):
    """``(input_mean, input_scale)`` from saved arrays, checked; files from before: the identity.

    Raises
    ------
    ValueError
        Unless both are ``n_features`` finite values, the scales > 0.
    """
    n = int(n_features)
    if "input_mean" not in arrays:
        return np.zeros(n), np.ones(n)
    mean = np.asarray(arrays["input_mean"], dtype=np.float64)
    scale = np.asarray(arrays.get("input_scale"), dtype=np.float64)
    if mean.shape != (n,) or scale.shape != (n,) or not (
            np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError(f"{source}: input_mean/input_scale must be {n} finite values "
                         "(scales > 0)")
    return mean, scale


def params_for_this_machine(params, device, path):
    """Saved parameters with ``device`` (and a GPU-only ``backend``) fitted to this machine."""
    from .backends import backend_status
    from .device import check_device

    if device is not None:
        params["device"] = check_device(device)
    elif params.get("device") == "cuda" and backend_status()["cuda"] is not None:
        logger.warning("%s was trained with device='cuda', unavailable here (%s); loading it on "
                       "the CPU", path, backend_status()["cuda"])
        params["device"] = "cpu"
    if params.get("device") == "cpu" and params.get("backend") == "cuda":
        params["backend"] = "auto"
    return params


def host_csr(W):
    """A ``scipy.sparse.csr_matrix`` copy of a (NumPy or CuPy) CSRMatrix."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.array(to_host(W.data)), np.array(to_host(W.indices)),
                          np.array(to_host(W.indptr))), shape=W.shape)


def plain(value):
    """JSON-friendly scalar (history records are saved as JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


#: Arrays of a saved estimator besides its layers (``feature_names_in`` only with names).
_BASE_ARRAYS = ("classes", "validation_indices", "feature_names_in", "input_mean", "input_scale")
_LAYER_PARTS = ("indptr", "indices", "data", "shape", "bias")


def saved_array_names(meta):
    """The array members a saved estimator holds, by its metadata: all that ``load`` reads."""
    n_layers = meta.get("n_layers")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= 4096:
        raise ValueError(f"meta n_layers must be an int in [1, 4096], got {n_layers!r}")
    return list(_BASE_ARRAYS) + [f"layers/{i}/{part}" for i in range(n_layers)
                                 for part in _LAYER_PARTS]


def _require_int(meta, key, low):
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"meta {key} must be an int >= {low}, got {value!r}")
    return value


def _require_array(arrays, name, *, ndim, kinds, length=None):
    arr = arrays.get(name)
    if arr is None:
        raise ValueError(f"member {name!r} is missing")
    if arr.ndim != ndim or arr.dtype.kind not in kinds:
        raise ValueError(f"member {name!r} must be a {ndim}-D array of kind {kinds!r}, got "
                         f"{arr.dtype} with shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"member {name!r} must have {length} entries, got {arr.shape[0]}")
    return arr


def check_saved_model(state, hidden):
    """Raise ValueError unless a read state describes one consistent model; return its sizes.

    Checked before anything is built from it: the metadata's counts, the
    classes (at least 2, unique), and each layer's declared shape, array
    lengths and bias (finite, one per output neuron) against the layer
    sizes ``[n_features] + hidden + [n_classes]``. The CSR structure itself
    is validated when the weights load.
    """
    meta, arrays = state["meta"], state["arrays"]
    n_features = _require_int(meta, "n_features_in", 1)
    _require_int(meta, "n_iter", 0)
    _require_int(meta, "entropy", 0)
    classes = _require_array(arrays, "classes", ndim=1, kinds="biufUS")
    if classes.shape[0] < 2 or np.unique(classes).shape[0] != classes.shape[0]:
        raise ValueError(f"classes must hold at least 2 distinct labels, got {classes.tolist()}")
    sizes = [n_features] + list(hidden) + [int(classes.shape[0])]
    if meta["n_layers"] != len(sizes) - 1:
        raise ValueError(f"meta n_layers is {meta['n_layers']}, the parameters give "
                         f"{len(sizes) - 1} layers")
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        _check_saved_layer(arrays, i, n_in, n_out)
    val = _require_array(arrays, "validation_indices", ndim=1, kinds="iu")
    if val.shape[0] and int(val.min()) < 0:
        raise ValueError("validation_indices must be >= 0")
    if "feature_names_in" in arrays:
        _require_array(arrays, "feature_names_in", ndim=1, kinds="US", length=n_features)
    return sizes


def _check_saved_layer(arrays, i, n_in, n_out):
    key = f"layers/{i}/"
    shape = _require_array(arrays, key + "shape", ndim=1, kinds="iu", length=2)
    if tuple(int(v) for v in shape) != (n_out, n_in):
        raise ValueError(f"layer {i} has shape {tuple(shape.tolist())}, the parameters give "
                         f"{(n_out, n_in)}")
    indptr = _require_array(arrays, key + "indptr", ndim=1, kinds="i", length=n_out + 1)
    nnz = int(indptr[-1])
    if not 0 <= nnz <= n_out * n_in:
        raise ValueError(f"layer {i}: indptr ends at {nnz}, outside [0, {n_out * n_in}]")
    _require_array(arrays, key + "indices", ndim=1, kinds="i", length=nnz)
    _require_array(arrays, key + "data", ndim=1, kinds="f", length=nnz)
    bias = _require_array(arrays, key + "bias", ndim=1, kinds="f", length=n_out)
    if not np.all(np.isfinite(bias)):
        raise ValueError(f"layer {i}: the bias holds NaN or Inf")


def read_saved_state(path):
    """The state in a model file or checkpoint (only the members a model file defines)."""
    return persistence.read_state(path, select=saved_array_names)


def loadable_params(meta, known, device, path):
    """The constructor parameters of a saved estimator, checked, for this machine.

    ``known``: the names the estimator's constructor takes; unknown names are
    refused. ``checkpoint_dir`` is never taken from a file (where training
    writes is a choice of the caller, not of the file's author): a loaded
    estimator checkpoints only after ``set_params``.
    """
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"{path}: not a valid ctre_sparse model file (meta params must be an "
                         "object)")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path}: not a valid ctre_sparse model file (unknown parameters "
                         f"{unknown})")
    params = params_for_this_machine(with_legacy_defaults(params), device, path)
    try:
        params["dtype"] = np.dtype(params["dtype"]).type
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{path}: not a valid ctre_sparse model file (parameter "
                         f"{exc})") from None
    params["checkpoint_dir"] = None
    return params
