"""The data side of :class:`~ctre_sparse.CTREClassifier`'s ``fit``: classes, their codes and
the input standardization (private to estimator.py; functions of the values they are given)."""

from __future__ import annotations

import numpy as np

__all__ = ["fitted_classes", "class_codes", "standardization"]


def fitted_classes(y, classes=None):
    """The sorted classes of a first fit: ``classes`` when given (every label of ``y`` among
    them), else the labels of ``y``; ValueError for fewer than two."""
    if classes is not None:
        out = np.unique(np.asarray(classes))
        unknown = np.setdiff1d(np.unique(y), out)
        if unknown.size:
            raise ValueError(f"y has labels {unknown.tolist()} not in classes {out.tolist()}")
    else:
        out = np.unique(y)
    if len(out) < 2:
        raise ValueError(f"CTREClassifier needs samples of at least 2 classes, got 1 class "
                         f"({out.tolist()})")
    return out


def class_codes(classes, y):
    """``y`` as int64 indices into the sorted ``classes``; ValueError naming unseen labels."""
    codes = np.searchsorted(classes, y)
    codes = np.clip(codes, 0, len(classes) - 1)
    bad = classes[codes] != y
    if np.any(bad):
        raise ValueError(f"y has labels {np.unique(np.asarray(y)[bad]).tolist()} not seen "
                         f"on the first call; classes_ is {classes.tolist()}")
    return codes.astype(np.int64)


def standardization(X, standardize):
    """``(mean, scale)`` per feature of ``X`` (float64); a constant feature gets scale 1, and
    without ``standardize`` the identity (zeros, ones)."""
    n_features = X.shape[1]
    if not standardize:
        return np.zeros(n_features), np.ones(n_features)
    scale = X.std(axis=0, dtype=np.float64)
    return X.mean(axis=0, dtype=np.float64), np.where(scale > 0, scale, 1.0)
