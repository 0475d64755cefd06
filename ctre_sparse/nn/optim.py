"""Stochastic gradient descent with (Nesterov) momentum on sparse weights."""

from __future__ import annotations

import logging

import numpy as np

from ..device import PicklesArrayModule, array_module, module_for, to_host, to_module
from ..training_ops import sgd_update
from .clip import OutlierClip

logger = logging.getLogger(__name__)

__all__ = ["SGD", "WarmupCosine"]


class WarmupCosine:
    """Learning-rate schedule: linear warm-up, then cosine decay (a ``SGD`` ``schedule``).

    For epoch ``e`` (0-based) of ``epochs``: ``lr * (e + 1) / (warmup + 1)``
    during the first ``warmup`` epochs, then
    ``lr * (f + (1 - f) * (1 + cos(pi * t)) / 2)`` with
    ``t = (e - warmup) / (epochs - warmup)`` and ``f = final_fraction``, so
    the rate falls from ``lr`` towards ``f * lr`` over the remaining epochs
    (Loshchilov & Hutter 2017, without restarts). Past ``epochs`` (training
    continued by ``partial_fit``) it stays at ``f * lr``, or at the last
    epoch's rate when ``f`` is 0.

    Parameters
    ----------
    learning_rate : float
        The peak rate.
    epochs : int
        Length of the schedule (the run's epochs).
    warmup : int, default 0
        Epochs of linear warm-up.
    final_fraction : float, default 0.0

    Examples
    --------
    >>> s = WarmupCosine(0.1, epochs=10, warmup=2)
    >>> [round(s(e), 4) for e in (0, 1, 2, 6, 9)]
    [0.0333, 0.0667, 0.1, 0.05, 0.0038]
    """

    def __init__(self, learning_rate, epochs, warmup=0, final_fraction=0.0):
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        if int(epochs) < 1 or not 0 <= int(warmup) < int(epochs):
            raise ValueError(f"need epochs >= 1 and 0 <= warmup < epochs, got epochs={epochs!r}, "
                             f"warmup={warmup!r}")
        if not 0.0 <= float(final_fraction) <= 1.0:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction!r}")
        self.learning_rate = float(learning_rate)
        self.epochs = int(epochs)
        self.warmup = int(warmup)
        self.final_fraction = float(final_fraction)

    def __call__(self, epoch):
        e = int(epoch)
        if e < self.warmup:
            return self.learning_rate * (e + 1) / (self.warmup + 1)
        e = min(e, self.epochs - 1)
        t = (e - self.warmup) / (self.epochs - self.warmup)
        f = self.final_fraction
        return self.learning_rate * (f + (1.0 - f) * 0.5 * (1.0 + float(np.cos(np.pi * t))))

    def __repr__(self):
        return (f"WarmupCosine(learning_rate={self.learning_rate}, epochs={self.epochs}, "
                f"warmup={self.warmup}, final_fraction={self.final_fraction})")


class SGD(PicklesArrayModule):
    """SGD with momentum, optional Nesterov, and L2 weight decay on the nonzeros.

    For a parameter ``w`` with gradient ``g`` (the weights ``W.data`` of
    every layer, aligned with their momentum ``v``; and the biases)::

        g = g + weight_decay * w        # weights only, never the biases
        v = momentum * v + g
        step = g + momentum * v if nesterov else v
        w = w - lr * step

    (the formulation of ``torch.optim.SGD``). Only stored connections exist,
    so decay and momentum touch the nonzeros only. After a topology change
    :meth:`remap` carries the momentum of kept connections over and starts
    new ones at 0.

    Parameters
    ----------
    learning_rate : float, default 0.01
    momentum : float, default 0.9
    nesterov : bool, default True
    weight_decay : float, default 1e-4
    schedule : callable or None
        ``schedule(epoch) -> lr or None`` (``epoch`` counts from 0), asked at
        :meth:`start_epoch`; None keeps ``learning_rate``.
    backend : str, default "auto"
        Backend of the update, :func:`~ctre_sparse.ops.sgd_update` (one
        compiled pass over each array; ``"reference"`` runs the NumPy formula).
    clip : OutlierClip or None
        Applied to each step's gradients before the update
        (:class:`~ctre_sparse.nn.clip.OutlierClip`); None: no clipping.

    Notes
    -----
    :meth:`step` consumes the gradients: it overwrites ``grad_W`` and
    ``grad_b`` of the layers with the applied step.

    Examples
    --------
    >>> opt = SGD(learning_rate=0.1, momentum=0.0, weight_decay=0.0)
    >>> opt.start_epoch(0)
    0.1
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4,
                 schedule=None, backend="auto", clip=None):
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not float(weight_decay) >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if schedule is not None and not callable(schedule):
            raise ValueError(f"schedule must be callable(epoch) -> lr or None, got {schedule!r}")
        if clip is not None and not isinstance(clip, OutlierClip):
            raise ValueError(f"clip must be an OutlierClip or None, got {clip!r}")
        self.clip = clip
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.schedule = schedule
        self.backend = backend
        self.current_lr = self.learning_rate
        self.velocity_W = None  # list of arrays aligned with each layer's W.data
        self.velocity_b = None
        self.xp = np  # array module of the state (numpy, or cupy after to_device)

    def start_epoch(self, epoch):
        """Set the learning rate for ``epoch`` (0-based) from the schedule; return it."""
        lr = self.schedule(int(epoch)) if self.schedule is not None else None
        self.current_lr = self.learning_rate if lr is None else float(lr)
        if not self.current_lr > 0:
            raise ValueError(f"schedule({epoch}) gave learning rate {lr!r}; expected > 0")
        return self.current_lr

    def _init_state(self, model):
        self.xp = xp = array_module(model.layers[0].W.data)
        self.velocity_W = [xp.zeros_like(layer.W.data) for layer in model.layers]
        self.velocity_b = [xp.zeros_like(layer.b) for layer in model.layers]

    def to_device(self, device):
        """Move the momentum arrays to ``"cpu"`` or ``"cuda"`` (in place).

        Parameters
        ----------
        device : {"cpu", "cuda"}

        Returns
        -------
        self
        """
        xp = module_for(device)
        if self.velocity_W is not None:
            self.velocity_W = [to_module(v, xp) for v in self.velocity_W]
            self.velocity_b = [to_module(v, xp) for v in self.velocity_b]
        if self.clip is not None:
            self.clip.to_device(xp)
        self.xp = xp
        return self

    def _update(self, w, g, v, decay):
        sgd_update(w, g, v, learning_rate=self.current_lr, momentum=self.momentum,
                   weight_decay=decay, nesterov=self.nesterov, backend=self.backend)

    def step(self, model):
        """Apply one update to every layer of ``model`` in place."""
        if self.velocity_W is None:
            self._init_state(model)
        if getattr(model, "xp", np) is not self.xp:
            raise ValueError(f"the optimizer state is on {self.xp.__name__} arrays, the model on "
                             f"{model.xp.__name__} ones; move both (Trainer.to_device)")
        if len(self.velocity_W) != model.n_layers:
            raise ValueError(f"optimizer holds state for {len(self.velocity_W)} layers, the "
                             f"model has {model.n_layers}")
        if self.clip is not None:
            self.clip(model.layers)
        for i, layer in enumerate(model.layers):
            v = self.velocity_W[i]
            if v.shape[0] != layer.W.nnz:
                raise ValueError(f"layer {i}: momentum has {v.shape[0]} entries but W has "
                                 f"{layer.W.nnz}; call remap() after changing the topology")
            self._update(layer.W.data, layer.grad_W, v, self.weight_decay)
            self._update(layer.b, layer.grad_b, self.velocity_b[i], 0.0)

    def remap(self, layer_index, kept, old_positions, new_positions, new_nnz):
        """Carry the momentum of layer ``layer_index`` over a prune + insert.

        Parameters
        ----------
        layer_index : int
        kept : int array
            Positions in the old ``data`` of the entries that survived pruning
            (``PruneResult.kept``).
        old_positions : int array
            Where each surviving entry sits in the new ``data``
            (``InsertResult.old_positions``).
        new_positions : int array
            Where each inserted entry sits (``InsertResult.new_positions``); its
            momentum is 0.
        new_nnz : int
        """
        if self.velocity_W is None:
            return
        old = self.velocity_W[layer_index]
        new = array_module(old).zeros(int(new_nnz), dtype=old.dtype)
        new[old_positions] = old[kept]
        if new_positions.shape[0] + old_positions.shape[0] != new.shape[0]:
            raise ValueError(f"remap: {old_positions.shape[0]} kept + {new_positions.shape[0]} "
                             f"new entries do not add up to new_nnz={new_nnz}")
        self.velocity_W[layer_index] = new

    def state_dict(self):
        """Hyper-parameters, current learning rate and momentum arrays (copies).

        Keys: ``learning_rate``, ``momentum``, ``nesterov``, ``weight_decay``,
        ``current_lr``, ``n_layers`` (0 before the first step) and
        ``velocity.{l}.W`` / ``velocity.{l}.b`` (NumPy, also from the GPU);
        ``clip``, the :class:`~ctre_sparse.nn.clip.OutlierClip` state or None.
        The schedule is not saved.
        """
        d = {"learning_rate": self.learning_rate, "momentum": self.momentum,
             "nesterov": self.nesterov, "weight_decay": self.weight_decay,
             "current_lr": self.current_lr,
             "clip": None if self.clip is None else self.clip.state_dict(),
             "n_layers": 0 if self.velocity_W is None else len(self.velocity_W)}
        for i in range(d["n_layers"]):
            d[f"velocity.{i}.W"] = _host_copy(self.velocity_W[i])
            d[f"velocity.{i}.b"] = _host_copy(self.velocity_b[i])
        return d

    def load_state_dict(self, d):
        """Restore a :meth:`state_dict` (the schedule stays as constructed).

        The momentum arrays stay on the optimizer's current device (the CPU
        unless :meth:`to_device` moved it). A state without ``clip`` (written
        before clipping existed) trained without it, and resumes so.
        """
        self.learning_rate = float(d["learning_rate"])
        self.momentum = float(d["momentum"])
        self.nesterov = bool(d["nesterov"])
        self.weight_decay = float(d["weight_decay"])
        self.current_lr = float(d["current_lr"])
        clip = d.get("clip")
        self.clip = None if clip is None else OutlierClip.from_state(clip).to_device(self.xp)
        n = int(d["n_layers"])
        if n == 0:
            self.velocity_W = self.velocity_b = None
        else:
            self.velocity_W = [_state_array(d[f"velocity.{i}.W"], self.xp) for i in range(n)]
            self.velocity_b = [_state_array(d[f"velocity.{i}.b"], self.xp) for i in range(n)]

    def check_state(self, model):
        """Raise ValueError unless the momentum fits ``model`` (after a load from a file).

        One weight momentum per stored connection and one bias momentum per
        output neuron, in every layer, all finite; no state (before the first
        step) passes.
        """
        if self.velocity_W is None:
            return
        if len(self.velocity_W) != model.n_layers:
            raise ValueError(f"the optimizer state has {len(self.velocity_W)} layers, the model "
                             f"{model.n_layers}")
        for i, layer in enumerate(model.layers):
            for what, v, size in (("weight", self.velocity_W[i], layer.W.nnz),
                                  ("bias", self.velocity_b[i], layer.W.n_out)):
                if v.shape != (size,) or v.dtype != layer.W.dtype:
                    raise ValueError(f"layer {i}: the {what} momentum must be {size} values of "
                                     f"{layer.W.dtype}, got {v.dtype} with shape {v.shape}")
                xp = array_module(v)
                if not bool(xp.all(xp.isfinite(v))):
                    raise ValueError(f"layer {i}: the {what} momentum holds NaN or Inf")

    def __repr__(self):
        return (f"SGD(learning_rate={self.learning_rate}, momentum={self.momentum}, "
                f"nesterov={self.nesterov}, weight_decay={self.weight_decay}, clip={self.clip})")


def _host_copy(arr):
    host = to_host(arr)
    return host.copy() if host is arr else host


def _state_array(arr, xp):
    """A copy of a saved array (NumPy or CuPy) in the array module ``xp``."""
    return to_module(np.array(to_host(arr)), xp)
