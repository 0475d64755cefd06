"""Device helpers of the training core: where arrays live, and the few GPU-only pieces.

The training core (model, optimizer, topology updater, trainer) is written
once against an array module ``xp`` (NumPy or CuPy) that each object caches
as an attribute when it is created or moved (``to_device``), so the CPU hot
loops pay nothing for the dispatch. This module holds what differs:

- :func:`check_device` / :func:`require_cuda`: parse a device name and fail
  with the reason (:func:`ctre_sparse.backends.backend_status`) when the CUDA
  backend cannot run here;
- :func:`module_for`, :func:`to_host`, :func:`to_module`: array-module moves;
- :func:`sgd_update_kernel`: the fused SGD update as one CuPy
  ``ElementwiseKernel`` (the CPU uses a numba loop with the same arithmetic);
- :func:`device_generator`: the CuPy generator for dropout masks.

CuPy is imported only when a device path is taken.
"""

from __future__ import annotations

import importlib
import logging
import types

import numpy as np

from .sparse import array_module

logger = logging.getLogger(__name__)

__all__ = ["DEVICES", "check_device", "require_cuda", "module_for", "to_host", "to_module",
           "device_of", "synchronize", "sgd_update_kernel", "device_generator", "fill_uniform",
           "PicklesArrayModule"]

DEVICES = ("cpu", "cuda")
_kernels = {}


def check_device(device):
    """Return ``"cpu"`` or ``"cuda"`` (``"gpu"`` is an alias); ValueError otherwise."""
    if device == "gpu":
        return "cuda"
    if device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device


def require_cuda(what="device='cuda'"):
    """Raise ValueError saying why ``what`` cannot run, unless the CUDA backend is available.

    Examples
    --------
    >>> from ctre_sparse.backends import backend_status
    >>> if backend_status()["cuda"] is not None:
    ...     try:
    ...         require_cuda()
    ...     except ValueError as exc:
    ...         assert "device='cuda'" in str(exc)
    """
    from .backends import backend_status

    reason = backend_status()["cuda"]
    if reason is not None:
        raise ValueError(f"{what} needs the CUDA backend, which is not available here: {reason}")


def module_for(device):
    """The array module of ``device``: numpy for "cpu", cupy for "cuda"."""
    if check_device(device) == "cpu":
        return np
    import cupy

    return cupy


def device_of(arr):
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cpu" if array_module(arr) is np else "cuda"


def to_host(arr):
    """A NumPy array with the values of ``arr`` (``arr`` itself when it already is one)."""
    if array_module(arr) is np:
        return arr
    return arr.get()


def to_module(arr, xp):
    """``arr`` in the array module ``xp`` (no copy when it is there already)."""
    if xp is np:
        return to_host(arr)
    return xp.asarray(arr)


def synchronize(xp):
    """Wait for the device of ``xp`` (no-op for NumPy); for timings only."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def sgd_update_kernel():
    """The fused SGD step as a CuPy ``ElementwiseKernel`` (compiled on first use).

    Same arithmetic as :func:`ctre_sparse.nn._cpu_kernels.sgd_update` (numba, CPU)::

        gi = g + decay * w;  vi = mu * v + gi;  if (mu != 0) v = vi;
        step = lr * (nesterov ? gi + mu * vi : vi);  g = step;  w -= step;

    Called as ``kernel(lr, mu, decay, nesterov, w, g, v)`` with scalars of the
    arrays' dtype and ``nesterov`` an int32; mutates ``w``, ``g`` and ``v``.
    """
    if "sgd" not in _kernels:
        import cupy

        _kernels["sgd"] = cupy.ElementwiseKernel(
            "T lr, T mu, T decay, int32 nesterov", "T w, T g, T v",
            """
            T gi = g + decay * w;
            T vi = mu * v + gi;
            if (mu != (T)0) v = vi;
            T step = lr * (nesterov ? gi + mu * vi : vi);
            g = step;
            w -= step;
            """, "ctre_sparse_sgd_update")
    return _kernels["sgd"]


def device_generator(seed):
    """A CuPy ``Generator`` seeded with ``seed`` (an int drawn from the host generator)."""
    import cupy

    return cupy.random.default_rng(int(seed))


def fill_uniform(rng, out):
    """Fill ``out`` with U[0, 1) draws from ``rng`` (NumPy or CuPy generator)."""
    if array_module(out) is np:
        rng.random(out=out, dtype=out.dtype)
    else:  # size given: CuPy's random(out=...) without size draws ONE value and broadcasts it
        rng.random(size=out.shape, dtype=out.dtype, out=out)
    return out


class PicklesArrayModule:
    """Mixin: pickle objects that cache an array module (``xp``) in their attributes.

    Modules cannot be pickled; they are stored by name and imported back.

    Examples
    --------
    >>> import pickle
    >>> from ctre_sparse.nn import SGD
    >>> pickle.loads(pickle.dumps(SGD()))._xp is np
    True
    """

    def __getstate__(self):
        state = self.__dict__.copy()
        for key, value in state.items():
            if isinstance(value, types.ModuleType):
                state[key] = _ModuleRef(value.__name__)
        return state

    def __setstate__(self, state):
        for key, value in state.items():
            if isinstance(value, _ModuleRef):
                state[key] = importlib.import_module(value.name)
        self.__dict__.update(state)


class _ModuleRef:
    """A pickled reference to a module, by name."""

    def __init__(self, name):
        self.name = name
