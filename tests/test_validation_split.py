"""Validation splits too small to trust: warned about and not made (CTRE-seq then monitors
the training accuracy)."""

import warnings

import numpy as np
import pytest

from ctre_sparse import CTREClassifier
from ctre_sparse._split import MIN_VALIDATION_SIZE, validation_indices


def _data(n_per_class, n_classes, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = rng.standard_normal((y.shape[0], n_features)) + y[:, None]
    return X.astype(np.float32), y


def test_stratified_split_when_large_enough():
    y = np.repeat(np.arange(4), 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idx = validation_indices(y, 4, 0.1, 0)
    assert idx.shape == (20,) and np.bincount(y[idx]).tolist() == [5, 5, 5, 5]
    assert np.all(np.diff(idx) > 0)


def test_fewer_rows_than_classes_warns_and_makes_no_split():
    y = np.repeat(np.arange(26), 8)          # 208 samples, 10 % = 20 rows < 26 classes
    with pytest.warns(UserWarning, match="fewer rows than the 26 classes"):
        idx = validation_indices(y, 26, 0.1, 0)
    assert idx.shape == (0,)


def test_fewer_than_the_minimum_warns_and_makes_no_split():
    y = np.repeat(np.arange(3), 50)          # 15 rows: >= 3 classes but < 20
    with pytest.warns(UserWarning, match=f"fewer than {MIN_VALIDATION_SIZE} rows"):
        assert validation_indices(y, 3, 0.1, 0).shape == (0,)


def test_no_split_asked_or_possible_is_silent():
    y = np.repeat(np.arange(2), 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validation_indices(y, 2, 0.0, 0).shape == (0,)
        assert validation_indices(y, 2, 0.05, 0).shape == (0,)    # rounds to 0 rows


def test_singleton_class_gives_an_unstratified_split():
    y = np.concatenate([np.zeros(100, int), np.ones(99, int), [2]])
    idx = validation_indices(y, 3, 0.2, 1)
    assert idx.shape == (40,)


def test_estimator_without_trustworthy_validation_monitors_training_accuracy():
    X, y = _data(8, 26)                       # 208 samples of 26 classes
    clf = CTREClassifier(hidden_layer_sizes=(32,), epsilon=4, max_epochs=4, growth="ctre_seq",
                         patience=2, learning_rate=0.05, random_state=0)
    with pytest.warns(UserWarning, match="cannot be stratified"):
        clf.fit(X, y)
    assert all(r["val_accuracy"] is None for r in clf.history_)
    growth = clf._trainer.updater.growth
    train_acc = [r["train_accuracy"] for r in clf.history_]
    assert growth.best == max(train_acc[:-1])  # the updates so far saw epochs 1..3
