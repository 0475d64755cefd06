"""The ``.npz`` model format: no pickle, atomic writes, nested training state.

A saved :class:`~ctre_sparse.CTREClassifier` is one NumPy ``.npz`` archive
that ``np.load(path, allow_pickle=False)`` reads. Its members:

``format``
    0-d string, ``"ctre_sparse.CTREClassifier"``.
``format_version``
    0-d int64, currently ``1``.
``meta_json``
    0-d string, JSON: the package version, ``params`` (``get_params()``;
    the dtype as its name), ``n_features_in_``, ``n_iter_``, the number of
    layers, the seed in use and the validation split.
``history_json``
    0-d string, JSON list of per-epoch records (``history_``).
``classes``
    The class labels (numbers, or fixed-width strings; object labels are
    stored as strings).
``layers/<i>/indptr``, ``layers/<i>/indices``, ``layers/<i>/data``, ``layers/<i>/shape``, ``layers/<i>/bias``
    Layer ``i``'s weight in CSR form, shape ``(n_out, n_in)`` (output rows,
    the storage of the kernels; ``coefs_[i]`` is its transpose) and its bias.
``state_json`` and ``state/<path>``
    The whole training state (model, optimizer momentum, topology/growth
    state, random generator state, epoch counter) as returned by the training
    core's ``Trainer.state_dict()``: a JSON tree in which every array is
    replaced by ``{"__array__": "<member name>"}``. Arrays identical to a
    ``layers/...`` member are stored once and point at it.

The tree encoding (:func:`encode_state` / :func:`decode_state`) keeps dicts
(string keys as JSON objects, other keys as ``{"__items__": [[k, v], ...]}``),
lists, tuples (``{"__tuple__": [...]}``), None, bools, ints (of any size, as in
a random generator's state), floats (NaN/Inf included) and strings. NumPy
scalars become Python scalars; CuPy arrays are copied to the host.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["FORMAT", "FORMAT_VERSION", "encode_state", "decode_state", "atomic_savez",
           "read_npz", "json_member", "read_json_member"]

FORMAT = "ctre_sparse.CTREClassifier"
FORMAT_VERSION = 1


def _to_host(arr):
    if type(arr).__module__.startswith("cupy"):
        return arr.get()
    return arr


class _Encoder:
    """Walks a state tree, moving arrays to a flat member dict."""

    def __init__(self, prefix, arrays, known=None):
        self.prefix = prefix
        self.arrays = arrays
        self.known = list(known or [])      # (name, array) pairs that may be reused
        self.count = 0

    def _store(self, arr):
        arr = np.ascontiguousarray(_to_host(arr))
        if arr.dtype.hasobject:
            raise ValueError(f"cannot save an object array (dtype {arr.dtype}) without pickle")
        for name, other in self.known:
            if other is arr or (other.shape == arr.shape and other.dtype == arr.dtype
                                and np.array_equal(other, arr)):
                return {"__array__": name}
        name = f"{self.prefix}{self.count}"
        self.count += 1
        self.arrays[name] = arr
        self.known.append((name, arr))
        return {"__array__": name}

    def encode(self, obj):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.ndarray) or type(obj).__module__.startswith("cupy"):
            return self._store(obj)
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, numbers.Integral):
            return int(obj)
        if isinstance(obj, numbers.Real):
            return float(obj)
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self.encode(v) for k, v in obj.items()}
            return {"__items__": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        raise ValueError(f"cannot save a {type(obj).__name__} in the training state "
                         f"(expected arrays, numbers, strings, lists, tuples or dicts)")


def encode_state(tree, arrays, *, prefix="state/", known=None):
    """Encode a nested state into a JSON string, adding its arrays to ``arrays``.

    Parameters
    ----------
    tree : dict, list or scalar
        The state (e.g. ``Trainer.state_dict()``).
    arrays : dict
        Member name -> ndarray; the state's arrays are added to it.
    prefix : str, default "state/"
        Member name prefix of the added arrays.
    known : list of (name, ndarray), optional
        Arrays already in ``arrays`` that an equal state array may point at.

    Returns
    -------
    str
        The JSON tree.

    Examples
    --------
    >>> arrays = {}
    >>> text = encode_state({"w": np.arange(3), "step": (1, None)}, arrays)
    >>> sorted(arrays), decode_state(text, arrays)["step"]
    (['state/0'], (1, None))
    """
    return json.dumps(_Encoder(prefix, arrays, known).encode(tree))


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in obj["__items__"]}
    return {k: _decode(v, arrays) for k, v in obj.items()}


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def decode_state(text, arrays):
    """Inverse of :func:`encode_state`: rebuild the tree from JSON and members."""
    return _decode(json.loads(text), arrays)


def json_member(obj):
    """A 0-d unicode array holding ``json.dumps(obj)`` (loads without pickle)."""
    return np.array(json.dumps(obj))


def read_json_member(npz, name):
    """Parse the JSON string stored in member ``name``."""
    return json.loads(str(npz[name][()]))


def atomic_savez(path, arrays, *, compress=False):
    """Write ``arrays`` to ``path`` (.npz) atomically: temp file + ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves
    the previous file in place.

    Parameters
    ----------
    path : str or Path
        Target file; ``.npz`` is not appended.
    arrays : dict of str -> ndarray
    compress : bool, default False

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            (np.savez_compressed if compress else np.savez)(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    logger.debug("wrote %s (%d members)", path, len(arrays))
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_npz(path):
    """Read every member of a ``.npz`` without pickle; checks the format tag.

    Returns
    -------
    dict of str -> ndarray

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a ctre_sparse model or has a newer format version.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (expected a model saved by "
                                f"CTREClassifier.save)")
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    tag = str(members.get("format", np.array(""))[()])
    if tag != FORMAT:
        raise ValueError(f"{path}: not a ctre_sparse model file (format tag {tag!r}, "
                         f"expected {FORMAT!r})")
    version = int(members["format_version"])
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is newer than this ctre_sparse "
                         f"reads ({FORMAT_VERSION}); upgrade ctre_sparse")
    return members


# ------------------------------------------------------------ the estimator's members
_RESUMABLE_PARAMS = ("max_epochs", "verbose", "checkpoint_dir", "checkpoint_every", "backend",
                     "device", "distributed")


def _host(arr):
    return np.asarray(_to_host(arr))


def params_json(est):
    """``get_params()`` made JSON-able: dtype by name, paths as str, a Generator seed as None."""
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


def dump_members(est):
    """All members of the saved file of a fitted :class:`CTREClassifier`."""
    from ._version import __version__

    trainer = est._trainer
    arrays = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION, np.int64)}
    meta = {"ctre_sparse_version": __version__, "params": params_json(est),
            "n_features_in": int(est.n_features_in_), "n_iter": int(est.n_iter_),
            "n_layers": len(trainer.model.layers), "entropy": int(est._entropy),
            "fingerprint": est._fingerprint}
    arrays["meta_json"] = json_member(meta)
    arrays["history_json"] = json_member(est.history_)
    classes = np.asarray(est.classes_)
    arrays["classes"] = classes.astype(str) if classes.dtype.hasobject else classes
    arrays["validation_indices"] = np.asarray(est._val_idx, dtype=np.int64)
    if hasattr(est, "feature_names_in_"):
        arrays["feature_names_in"] = np.asarray(est.feature_names_in_).astype(str)
    known = []
    for i, layer in enumerate(trainer.model.layers):
        W = layer.W
        parts = {"indptr": W.indptr, "indices": W.indices, "data": W.data, "bias": layer.b}
        for name, arr in parts.items():
            key = f"layers/{i}/{name}"
            arrays[key] = np.ascontiguousarray(_host(arr))
            known.append((key, arrays[key]))
        arrays[f"layers/{i}/shape"] = np.array(W.shape, dtype=np.int64)
    arrays["state_json"] = np.array(encode_state(trainer.state_dict(), arrays, known=known))
    return arrays


def _check_resumable(est, meta, members, X, codes, source):
    saved, now = meta["params"], params_json(est)
    changed = sorted(k for k in saved if k not in _RESUMABLE_PARAMS and saved[k] != now.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {now.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume from {source}: parameters differ ({diffs})")
    if meta["n_features_in"] != X.shape[1]:
        raise ValueError(f"cannot resume from {source}: it was trained on "
                         f"{meta['n_features_in']} features, X has {X.shape[1]}")
    saved_classes = members["classes"]
    now_classes = np.asarray(est.classes_)
    now_classes = now_classes.astype(str) if now_classes.dtype.hasobject else now_classes
    if saved_classes.shape != now_classes.shape or np.any(saved_classes != now_classes):
        raise ValueError(f"cannot resume from {source}: classes differ "
                         f"({saved_classes.tolist()} vs {now_classes.tolist()})")
    if meta["fingerprint"] is not None:
        from .estimator import _fingerprint

        if _fingerprint(X, codes, est.dtype) != meta["fingerprint"]:
            raise ValueError(f"cannot resume from {source}: X, y are not the data of the "
                             f"interrupted run (fingerprint differs)")


def restore_members(est, members, X=None, codes=None, *, source="<memory>"):
    """Set a :class:`CTREClassifier`'s learned state from saved members.

    With ``X`` and ``codes`` (resuming ``fit``), the parameters, features,
    classes and data fingerprint are first checked against the file.
    """
    meta = read_json_member(members, "meta_json")
    if X is not None:
        _check_resumable(est, meta, members, X, codes, source)
    else:
        est.classes_ = members["classes"]
        est.n_features_in_ = int(meta["n_features_in"])
        if "feature_names_in" in members:
            est.feature_names_in_ = members["feature_names_in"].astype(object)
    est._build(est.n_features_in_, len(est.classes_), meta["entropy"])
    state = decode_state(str(members["state_json"][()]), members)
    est._trainer.load_state_dict(state)
    est._entropy = int(meta["entropy"])
    est._fingerprint = meta["fingerprint"]
    est._val_idx = np.asarray(members["validation_indices"], dtype=np.int64)
    est.n_iter_ = int(meta["n_iter"])
    est.history_ = read_json_member(members, "history_json")
    logger.info("restored %s at epoch %d", source, est.n_iter_)
