"""Figures of a training run (matplotlib, imported lazily, Agg canvas).

The figures are drawn on a :class:`matplotlib.figure.Figure` with the Agg
canvas directly: no ``pyplot``, no global backend switch, so calling these
from a notebook or a GUI program leaves its matplotlib state alone.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["plot_learning_curves", "plot_input_connectivity"]


def _new_figure(width, height):
    # matplotlib is a core dependency, imported here only to keep `import ctre_sparse` light
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    logger.info("wrote %s", path)
    return path


def _series(history, key):
    """Per-epoch values of ``key`` as floats (NaN where missing or None)."""
    out = []
    for record in history:
        value = record.get(key)
        out.append(np.nan if value is None else float(value))
    return np.array(out, dtype=np.float64)


def plot_learning_curves(history, path, *, title=None):
    """Loss and accuracy per epoch, plus connections regrown when recorded.

    Parameters
    ----------
    history : list of dict
        Per-epoch records (``CTREClassifier.history_``) with ``train_loss``,
        ``train_accuracy`` and optionally ``val_accuracy``, ``n_cosine``,
        ``n_random`` and ``epoch``.
    path : str or Path
        Output file; the format follows the suffix (``.png``, ``.pdf``, ...).
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot (train for at least one epoch)")
    epochs = _series(history, "epoch")
    if np.isnan(epochs).any():
        epochs = np.arange(1, len(history) + 1, dtype=np.float64)
    regrowth = any(r.get("n_cosine") is not None for r in history)
    fig = _new_figure(4.2 * (3 if regrowth else 2), 3.6)
    axes = fig.subplots(1, 3 if regrowth else 2)
    axes[0].plot(epochs, _series(history, "train_loss"), label="train loss")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("cross-entropy")
    axes[0].set_title("loss")
    axes[1].plot(epochs, _series(history, "train_accuracy"), label="train")
    val = _series(history, "val_accuracy")
    if not np.isnan(val).all():
        axes[1].plot(epochs, val, label="validation")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("accuracy")
    axes[1].set_title("accuracy")
    axes[1].legend(loc="lower right")
    if regrowth:
        axes[2].plot(epochs, _series(history, "n_cosine"), label="cosine")
        axes[2].plot(epochs, _series(history, "n_random"), label="random")
        axes[2].set_xlabel("epoch")
        axes[2].set_ylabel("connections")
        axes[2].set_title("regrown connections")
        axes[2].legend(loc="best")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_input_connectivity(importances, path, *, image_shape=None, title=None):
    """Each input feature's share of the first layer's connections.

    Parameters
    ----------
    importances : array, shape (n_features,)
        ``CTREClassifier.feature_importances_`` (connections of input i /
        all input-layer connections).
    path : str or Path
        Output file.
    image_shape : tuple of int, optional
        ``(height, width)``: draw the importances as an image (e.g. ``(8, 8)``
        for the digits). Without it: features sorted by importance (left) and
        in their original order (right).
    title : str, optional

    Returns
    -------
    Path
        The written file.
    """
    imp = np.asarray(importances, dtype=np.float64).ravel()
    if imp.size == 0:
        raise ValueError("importances is empty")
    if image_shape is not None:
        if math.prod(image_shape) != imp.size:
            raise ValueError(f"image_shape {tuple(image_shape)} holds {math.prod(image_shape)} "
                             f"pixels, but there are {imp.size} importances")
        fig = _new_figure(4.5, 4.0)
        ax = fig.subplots()
        im = ax.imshow(imp.reshape(image_shape), cmap="viridis", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, label="share of input connections")
        ax.set_title(title or "input-layer connectivity")
    else:
        fig = _new_figure(10.0, 3.6)
        left, right = fig.subplots(1, 2)
        left.plot(np.sort(imp)[::-1])
        left.set_xlabel("feature rank")
        left.set_ylabel("share of input connections")
        left.set_title("sorted")
        right.bar(np.arange(imp.size), imp, width=1.0)
        right.set_xlabel("feature index")
        right.set_title("by feature")
        for ax in (left, right):
            ax.grid(True, alpha=0.3)
        if title:
            fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
