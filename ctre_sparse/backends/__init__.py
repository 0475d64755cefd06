"""Backend registry: resolved once, dispatched on the input's array type.

A backend is a module exposing the kernels with a scipy-sparsetools contract
(raw arrays and caller-allocated outputs; see :mod:`ctre_sparse.backends.reference`
for the contract of each). Backends are imported lazily, once; a backend
that cannot load records why, and asking for it raises
:class:`BackendUnavailableError` with that reason.
"""

from __future__ import annotations

import importlib
import logging

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "CPU_BACKENDS", "BackendUnavailableError", "get_backend",
           "backend_status", "available_backends", "select_backend", "is_gpu_array"]

BACKENDS = ("reference", "numba", "native", "cuda")
CPU_BACKENDS = ("reference", "numba", "native")
_AUTO_CPU_ORDER = ("native", "numba", "reference")
_MODULES = {
    "reference": "ctre_sparse.backends.reference",
    "numba": "ctre_sparse.backends.numba_backend",
    "native": "ctre_sparse.backends.native",
    "cuda": "ctre_sparse.backends.cuda",
}
_HOST_ARRAY = np.ndarray
_loaded = {}
_best_cpu_name = None  # what "auto" picks for NumPy arrays, decided at its first use


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that cannot run here; the message says why."""


def _load(name):
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
            reason = module.unavailable_reason() if hasattr(module, "unavailable_reason") else None
        except Exception as exc:  # any failure to load is a reason, reported later
            module, reason = None, f"{type(exc).__name__}: {exc}"
        _loaded[name] = (module if reason is None else None, reason)
    return _loaded[name]


def get_backend(name):
    """Return the backend module called ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not a known backend.
    BackendUnavailableError
        If the backend exists but cannot run on this machine (with the reason).
    """
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {name!r}")
    module, reason = _load(name)
    if module is None:
        raise BackendUnavailableError(f"backend {name!r} is not available: {reason}")
    return module


def backend_status():
    """Return ``{name: None or reason it is unavailable}`` for every backend."""
    return {name: _load(name)[1] for name in BACKENDS}


def available_backends(device="cpu"):
    """Names of the backends that load here, for ``device`` "cpu", "cuda" or "all"."""
    names = {"cpu": CPU_BACKENDS, "cuda": ("cuda",), "all": BACKENDS}[device]
    return [n for n in names if _load(n)[1] is None]


def is_gpu_array(arr):
    """True for CuPy arrays (checked by type, without importing CuPy)."""
    return type(arr).__module__.startswith("cupy")


def select_backend(name, *arrays):
    """Resolve ``name`` ("auto" or a backend name) for the given input arrays.

    "auto" follows the array type: CuPy arrays go to ``cuda``; NumPy arrays to
    ``native`` when the extension is built, else ``numba``, else ``reference``.
    """
    on_gpu = False
    for a in arrays:  # a plain loop: this runs several times per mini-batch
        if type(a) is not _HOST_ARRAY and type(a).__module__.startswith("cupy"):
            on_gpu = True
            break
    if name == "auto":
        if on_gpu:
            return get_backend("cuda")
        return _loaded[_best_cpu()][0]  # loaded (and available) by _best_cpu
    module = get_backend(name)
    if on_gpu != (name == "cuda"):
        where = "CuPy (GPU)" if on_gpu else "NumPy (CPU)"
        raise ValueError(f"backend {name!r} cannot run on {where} arrays; use backend='auto' "
                         "or move the arrays to the matching device")
    return module


def _best_cpu():
    global _best_cpu_name
    if _best_cpu_name is None:
        _best_cpu_name = next(name for name in _AUTO_CPU_ORDER if _load(name)[1] is None)
        if _best_cpu_name != "native":  # reference always loads, so next() finds one
            logger.warning("native extension unavailable (%s); using the %s backend",
                           _load("native")[1], _best_cpu_name)
    return _best_cpu_name
