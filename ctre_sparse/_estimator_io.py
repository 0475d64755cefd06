"""Saving, loading and checkpointing of :class:`~ctre_sparse.CTREClassifier`.

:class:`PersistenceMixin` gives the estimator ``save`` / ``load`` and the
checkpoint plumbing of ``fit``: the state it writes (``_get_state``) and how a
state read back is checked and restored (``_set_state``). The checks
themselves are pure functions in :mod:`ctre_sparse._estimator_state`;
:mod:`ctre_sparse.persistence` turns the state into a file and back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._estimator_state import (check_resumable, check_saved_model, params_for_this_machine,
                               restored_scaling, saved_array_names, storable_classes,
                               with_legacy_defaults)
from ._params import params_json
from ._version import __version__
from .device import to_host

logger = logging.getLogger(__name__)

__all__ = ["PersistenceMixin", "CHECKPOINT_NAME", "read_checkpoint"]

#: The file name of the checkpoint in ``checkpoint_dir``.
CHECKPOINT_NAME = "checkpoint.npz"


class PersistenceMixin:
    """``save`` / ``load`` and checkpoints for :class:`~ctre_sparse.CTREClassifier`.

    Expects of the class it is mixed into: the constructor parameters
    ``checkpoint_dir`` and ``dtype``, ``validate_params()``,
    ``_hidden_sizes()``, ``_build(n_features, n_classes, entropy)``, and after
    ``fit`` the attributes ``_trainer``, ``classes_``, ``n_features_in_``,
    ``n_iter_``, ``history_``, ``input_mean_``, ``input_scale_``.
    """

    def save(self, path):
        """Save the fitted estimator and its full training state to ``path`` (.npz).

        The file loads with ``np.load(path, allow_pickle=False)``; see
        :mod:`ctre_sparse.persistence` for its members. Writing is atomic.
        """
        check_is_fitted(self)
        return self._write(Path(path))

    @classmethod
    def load(cls, path, *, device=None):
        """Load an estimator saved by :meth:`save` (or a checkpoint).

        The result predicts, and continues training with :meth:`partial_fit`
        or ``fit(X, y, resume=path)`` exactly where the saved one stopped.

        Parameters
        ----------
        path : str or Path
        device : {"cpu", "cuda"}, optional
            Where to put the model; default: the saved ``device``, except that
            a model saved with ``device="cuda"`` loads on the CPU (with a
            warning) where the CUDA backend is unavailable.
        """
        state = persistence.read_state(path, select=saved_array_names)
        est = cls(**_loadable_params(cls, state["meta"], device, path))
        est._set_state(state, source=path)
        return est

    def _checkpoint_path(self):
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / CHECKPOINT_NAME

    def _resume_path(self, resume):
        if resume is False or resume is None:
            return None
        if resume is True:
            path = self._checkpoint_path()
            if path is None:
                raise ValueError("fit(resume=True) needs checkpoint_dir to be set")
            if not path.exists():
                logger.warning("resume=True but there is no checkpoint at %s: training from "
                               "scratch", path)
                return None
            return path
        return Path(resume)

    def _writes_files(self):
        """False on the ranks other than 0 of a distributed fit in progress."""
        comm = getattr(self, "_comm", None)
        return comm is None or comm.is_root

    def _write(self, path):
        if not self._writes_files():
            return Path(path)
        return persistence.write_state(path, self._get_state())

    def _get_state(self):
        """The fitted state, as :mod:`ctre_sparse.persistence` writes it.

        ``{"meta", "history", "arrays", "tree"}``: JSON-able metadata (the
        parameters, feature and epoch counts, the seed in use, the data
        fingerprint), the epoch records, named host arrays (classes, the
        validation split, feature names, the input standardization, every
        layer's CSR arrays and bias)
        and the training core's state (``Trainer.state_dict()``).
        """
        trainer = self._trainer
        meta = {"ctre_sparse_version": __version__, "params": params_json(self),
                "n_features_in": int(self.n_features_in_), "n_iter": int(self.n_iter_),
                "n_layers": len(trainer.model.layers), "entropy": int(self._entropy),
                "fingerprint": self._fingerprint}
        arrays = {"classes": storable_classes(self.classes_),
                  "validation_indices": np.asarray(self._val_idx, dtype=np.int64),
                  "input_mean": np.asarray(self.input_mean_, dtype=np.float64),
                  "input_scale": np.asarray(self.input_scale_, dtype=np.float64)}
        if hasattr(self, "feature_names_in_"):
            arrays["feature_names_in"] = np.asarray(self.feature_names_in_).astype(str)
        for i, layer in enumerate(trainer.model.layers):
            W = layer.W
            for name, arr in (("indptr", W.indptr), ("indices", W.indices), ("data", W.data),
                              ("bias", layer.b)):
                arrays[f"layers/{i}/{name}"] = np.ascontiguousarray(to_host(arr))
            arrays[f"layers/{i}/shape"] = np.array(W.shape, dtype=np.int64)
        return {"meta": meta, "history": list(self.history_), "arrays": arrays,
                "tree": trainer.state_dict()}

    def _set_state(self, state, X=None, codes=None, *, source="<memory>"):
        """Rebuild the fitted state from :meth:`_get_state`'s dict (e.g. read from a file).

        With ``X`` and ``codes`` (resuming ``fit``), the parameters, features,
        classes and data fingerprint are first checked against the state;
        without, the classes and features are taken from it.
        """
        try:
            self._restore(state, X, codes, source)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"{source}: not a valid ctre_sparse model file (malformed "
                             f"training state: {type(exc).__name__}: {exc})") from None
        except ValueError as exc:
            if str(exc).startswith(("cannot resume", f"{source}:")):
                raise
            raise ValueError(f"{source}: not a valid ctre_sparse model file ({exc})") from None
        logger.info("restored %s at epoch %d", source, self.n_iter_)

    def _restore(self, state, X, codes, source):
        self.validate_params()
        meta, arrays = state["meta"], state["arrays"]
        check_saved_model(state, self._hidden_sizes())
        if X is not None:
            check_resumable(state, params=params_json(self), classes=self.classes_, X=X,
                            codes=codes, dtype=self.dtype, source=source)
        else:
            self.classes_ = arrays["classes"]
            self.n_features_in_ = int(meta["n_features_in"])
            if "feature_names_in" in arrays:
                self.feature_names_in_ = arrays["feature_names_in"].astype(object)
        self.input_mean_, self.input_scale_ = restored_scaling(arrays, self.n_features_in_,
                                                               source)
        self._build(self.n_features_in_, len(self.classes_), meta["entropy"])
        self._trainer.load_state_dict(state["tree"])
        self._entropy = int(meta["entropy"])
        self._fingerprint = meta["fingerprint"]
        self._val_idx = np.asarray(arrays["validation_indices"], dtype=np.int64)
        self.n_iter_ = int(meta["n_iter"])
        self.history_ = list(state["history"])


def read_checkpoint(path):
    """The state of a checkpoint to resume from (only the members a model file defines)."""
    return persistence.read_state(path, select=saved_array_names)


def _loadable_params(cls, meta, device, path):
    """The constructor parameters of a saved estimator, checked, for this machine.

    Unknown names are refused; ``checkpoint_dir`` is never taken from a file
    (where training writes is a choice of the caller, not of the file's
    author): a loaded estimator checkpoints only after ``set_params``.
    """
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"{path}: not a valid ctre_sparse model file (meta params must be an "
                         "object)")
    unknown = sorted(set(params) - set(cls().get_params(deep=False)))
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