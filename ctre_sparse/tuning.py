"""Machine tuning of the kernels' thread pool: explicit, with one switch.

What it does
------------
The native kernels run on an OpenMP team (libgomp). When a thread of the
team finishes its share of a kernel it waits for the others; libgomp's
default makes it spin for about 300,000 rounds first. On a machine with few
cores and other work (other processes, or numba's and BLAS's own threads)
the spinning thread takes the core from the thread it waits for: a 1 ms
kernel then takes 10-20 ms. ctre_sparse therefore asks libgomp for
:data:`OMP_SPIN_COUNT` spins (``GOMP_SPINCOUNT``), after which a waiting
thread sleeps.

libgomp reads ``GOMP_SPINCOUNT`` once, when it is loaded, so the setting is
applied where it can act and nowhere else: :func:`openmp_loading` wraps the
loading of the native extension (the native backend uses it when the
registry first loads that backend). It is in ``os.environ`` only for the
duration of that load, so child processes do not inherit it; and it has no
effect when another library loaded libgomp first.

The switch
----------
On by default. Off with the environment variable ``CTRE_SPARSE_TUNING=0``
(or ``off``, ``false``, ``no``) or with :func:`configure` (``enabled=False``)
before the first native kernel runs. Setting ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` yourself also leaves the choice to you. :func:`status`
says what was applied.

Not done: the BLAS products of :func:`~ctre_sparse.ops.topk_cosine` used to
run on this OpenMP team through OpenBLAS's threading-callback hook,
installed around each product. OpenBLAS documents that setting as not
thread-safe, and it hung processes that ran NumPy products in another
thread; its gain was within the noise of the training benchmark, so it is
gone (see docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import logging
import os

logger = logging.getLogger(__name__)

__all__ = ["ENV_VAR", "OMP_SPIN_COUNT", "enabled", "configure", "openmp_loading", "status"]

#: The environment variable of the switch.
ENV_VAR = "CTRE_SPARSE_TUNING"
#: Spins of an idle libgomp thread before it sleeps (libgomp's default: 300000).
OMP_SPIN_COUNT = "1000"
_OFF = ("0", "off", "false", "no")
_USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

_choice = None   # configure()'s value; None: follow the environment variable
_applied = {"openmp_spin_count": None, "reason": "the native extension has not been loaded"}


def enabled():
    """Whether tuning is on: :func:`configure`'s choice, else ``CTRE_SPARSE_TUNING``.

    Examples
    --------
    >>> configure(False); enabled()
    False
    >>> configure(None)   # back to the environment variable (default: on)
    """
    if _choice is not None:
        return _choice
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def configure(enabled=True):
    """Switch tuning on (True) or off (False), or back to the environment variable (None).

    Takes effect for what is not yet applied: the spin count is set when the
    native extension loads (at the first op on the native backend), so call
    this before that.

    Parameters
    ----------
    enabled : bool or None, default True
    """
    global _choice
    _choice = None if enabled is None else bool(enabled)


@contextlib.contextmanager
def openmp_loading():
    """Context for loading an OpenMP library: ``GOMP_SPINCOUNT`` set inside, when tuning is on.

    Nothing is set when tuning is off or the user set ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``; whatever is set is removed on exit.
    """
    user = [name for name in _USER_SETTINGS if name in os.environ]
    apply = enabled() and not user
    if apply:
        os.environ["GOMP_SPINCOUNT"] = OMP_SPIN_COUNT
        _applied.update(openmp_spin_count=OMP_SPIN_COUNT, reason=None)
    elif user:
        _applied.update(openmp_spin_count=None, reason=f"set by the user ({', '.join(user)})")
    else:
        _applied.update(openmp_spin_count=None, reason=f"tuning is off ({ENV_VAR} or configure)")
    try:
        yield
    finally:
        if apply:  # read by libgomp as it loaded (if this load loaded it); not for children
            del os.environ["GOMP_SPINCOUNT"]
    logger.debug("OpenMP library loaded; spin count %s", _applied["openmp_spin_count"] or
                 _applied["reason"])


def status():
    """What tuning did: ``{"enabled", "openmp_spin_count", "reason"}``.

    ``openmp_spin_count`` is the value given to libgomp as the native
    extension loaded (None: not applied, and ``reason`` says why).
    """
    return {"enabled": enabled(), **_applied}
