"""Clipping of outlier gradient steps (the default preset's guard against loss spikes)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..device import PicklesArrayModule, array_module, host_scalar, to_host, to_module

__all__ = ["OutlierClip"]


class OutlierClip(PicklesArrayModule):
    """Scale down a step whose gradient norm is an outlier among the recent steps.

    The norm is that of all the gradients of a step together (every layer's
    weights and biases). From step ``min_steps`` on, a step whose norm exceeds
    ``factor`` times the median norm of the last ``window`` steps has all its
    gradients scaled down to that bound; ordinary steps are left exactly as
    they are. An adaptive clipping in the manner of AutoClip (Seetharaman et
    al. 2020), which clips at a low percentile of the norms seen and so
    rescales most steps; this one touches only the outliers
    (docs/accuracy.md, step 8: at the default's peak learning rate on
    digits it turned a one-epoch fall to chance into a dip to 84 % of the run's
    best; a run with no outlier step is the unclipped run bit for bit).

    The norms stay on the gradients' device: on a GPU nothing is read back
    to the host.

    Parameters
    ----------
    factor : float >= 1, default 5.0
    window : int >= 1, default 200
    min_steps : int in [1, window], default 20

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> clip = OutlierClip(factor=2.0, window=3, min_steps=3)
    >>> layer = SimpleNamespace(grad_W=np.zeros(4, np.float32), grad_b=np.zeros(1, np.float32))
    >>> for g in (1.0, 1.0, 1.0, 10.0):
    ...     layer.grad_W[:] = g
    ...     clip([layer])
    >>> layer.grad_W   # norm 20 against 2 x the median 2: scaled to norm 4
    array([2., 2., 2., 2.], dtype=float32)
    """

    def __init__(self, factor=5.0, window=200, min_steps=20):
        if not float(factor) >= 1.0:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if int(window) < 1 or not 1 <= int(min_steps) <= int(window):
            raise ValueError(f"need window >= 1 and 1 <= min_steps <= window, got "
                             f"window={window!r}, min_steps={min_steps!r}")
        self.factor = float(factor)
        self.window = int(window)
        self.min_steps = int(min_steps)
        self.norms = None  # float64 ring buffer of the last `window` norms
        self.n_steps = 0

    def __call__(self, layers):
        """Clip the gradients ``grad_W`` and ``grad_b`` of ``layers`` in place."""
        xp = array_module(layers[0].grad_W)
        norm = xp.sqrt(self._squared_norm(layers, xp))
        if self.norms is None:
            self.norms = xp.zeros(self.window, dtype=xp.float64)
        elif array_module(self.norms) is not xp:  # restored on the host, training elsewhere
            self.norms = to_module(self.norms, xp)
        if self.n_steps >= self.min_steps:
            filled = self.norms[:min(self.n_steps, self.window)]
            self._scale(layers, xp, norm, self.factor * xp.median(filled))
        # a non-finite norm (the step diverged) is recorded as 0: the history stays a valid state
        self.norms[self.n_steps % self.window] = xp.where(xp.isfinite(norm), norm, 0.0)
        self.n_steps += 1

    @staticmethod
    def _squared_norm(layers, xp):
        total = 0.0
        for layer in layers:  # float64 sums of float32 dot products, one layer at a time
            total = total + (xp.dot(layer.grad_W, layer.grad_W).astype(xp.float64)
                             + xp.dot(layer.grad_b, layer.grad_b).astype(xp.float64))
        return total

    @staticmethod
    def _scale(layers, xp, norm, bound):
        norm_now, bound_now = host_scalar(norm), host_scalar(bound)
        # a non-finite step is left as it is: the trainer reports the divergence, as unclipped
        if isinstance(norm_now, float):  # on the host: ordinary steps are not touched at all
            if not bound_now < norm_now < math.inf:
                return
            scale = bound_now / norm_now
        else:  # on a device: a factor of exactly 1 for ordinary steps, no read-back
            outlier = (norm > bound) & xp.isfinite(norm)
            scale = xp.where(outlier, bound / xp.maximum(norm, 1e-300), 1.0)
        for layer in layers:
            for g in (layer.grad_W, layer.grad_b):
                g *= g.dtype.type(scale) if isinstance(scale, float) else scale.astype(g.dtype)

    def to_device(self, xp):
        """Move the recorded norms to the array module ``xp`` (in place); return self."""
        if self.norms is not None:
            self.norms = to_module(self.norms, xp)
        return self

    def state_dict(self):
        """``factor``, ``window``, ``min_steps``, ``n_steps`` and ``norms`` (NumPy, or None)."""
        return {"factor": self.factor, "window": self.window, "min_steps": self.min_steps,
                "n_steps": self.n_steps,
                "norms": None if self.norms is None else np.array(to_host(self.norms))}

    @classmethod
    def from_state(cls, d):
        """The clip of a :meth:`state_dict`; ValueError on values it could not have written."""
        keys = ("factor", "window", "min_steps", "n_steps")
        if not isinstance(d, dict) or not all(k in d for k in keys):
            raise ValueError(f"clip state must be a dict with {keys}, got {d!r:.200}")
        if not all(isinstance(d[k], numbers.Integral) and not isinstance(d[k], bool)
                   for k in keys[1:]) or not isinstance(d["factor"], numbers.Real):
            raise ValueError(f"clip state: factor must be a number and {keys[1:]} ints, "
                             f"got {d!r:.200}")
        clip = cls(d["factor"], d["window"], d["min_steps"])
        clip.n_steps = int(d["n_steps"])
        norms = d.get("norms")
        if clip.n_steps < 0 or (clip.n_steps > 0) != (norms is not None):
            raise ValueError(f"clip state: n_steps={clip.n_steps!r} does not fit its norms")
        if norms is not None:
            norms = np.asarray(norms, dtype=np.float64)
            if norms.shape != (clip.window,) or not np.all(np.isfinite(norms)) \
                    or np.any(norms < 0):
                raise ValueError(f"clip state: norms must be {clip.window} finite values >= 0")
            clip.norms = norms
        return clip

    def __repr__(self):
        return (f"OutlierClip(factor={self.factor}, window={self.window}, "
                f"min_steps={self.min_steps})")
