"""The validation split of :class:`~ctre_sparse.CTREClassifier`, and when not to make one."""

from __future__ import annotations

import logging
import warnings

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["MIN_VALIDATION_SIZE", "validation_indices"]

#: Smallest validation split made. Its accuracy moves in steps of ``1 / n_val``:
#: below 20 rows one sample moves it by more than 5 points, and CTRE-seq's switch
#: (no strict improvement for ``patience`` epochs) would fire on such jumps.
MIN_VALIDATION_SIZE = 20


def validation_indices(y_codes, n_classes, fraction, random_state):
    """Sorted indices of a stratified validation split of ``floor(fraction * n)`` rows.

    No split (an empty array) when ``fraction * n`` rounds to 0 or leaves no
    training row, and, with a :class:`UserWarning`, when the split would
    have fewer than :data:`MIN_VALIDATION_SIZE` rows or fewer rows than
    ``n_classes`` (then it cannot be stratified): all samples train and the
    monitored accuracy is the training accuracy (see
    :class:`~ctre_sparse.training.Trainer`). A split whose classes have a
    single sample each is made unstratified.

    Parameters
    ----------
    y_codes : int ndarray, shape (n,)
        Class codes in ``[0, n_classes)``.
    n_classes : int
    fraction : float in [0, 1)
    random_state : int
        Seed of the split.

    Returns
    -------
    int64 ndarray

    Examples
    --------
    >>> y = np.repeat(np.arange(3), 100)
    >>> idx = validation_indices(y, 3, 0.1, 0)
    >>> idx.shape, np.bincount(y[idx]).tolist()
    ((30,), [10, 10, 10])
    """
    n = y_codes.shape[0]
    n_val = int(np.floor(fraction * n))
    if n_val < 1 or n - n_val < 1:
        return np.zeros(0, dtype=np.int64)
    if n_val < max(MIN_VALIDATION_SIZE, n_classes):
        why = (f"fewer rows than the {n_classes} classes, so it cannot be stratified"
               if n_val < n_classes else f"fewer than {MIN_VALIDATION_SIZE} rows")
        warnings.warn(f"validation_fraction={fraction} of {n} samples gives a validation split "
                      f"of {n_val} rows, {why}: no validation split is made; all samples train "
                      "and the CTRE-seq switch monitors the training accuracy", UserWarning,
                      stacklevel=5)
        return np.zeros(0, dtype=np.int64)
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y_codes)
    stratify = y_codes if counts[counts > 0].min() >= 2 else None
    if stratify is None:
        logger.info("a class has a single sample: the validation split is not stratified")
    _, val = train_test_split(np.arange(n), test_size=n_val, stratify=stratify,
                              random_state=random_state)
    return np.sort(val).astype(np.int64)
