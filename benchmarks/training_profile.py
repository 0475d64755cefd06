"""Where a training epoch's time goes: timers around each op, exclusive time per label.

:class:`OpProfiler` wraps functions and methods for the duration of a
``with`` block and adds up each call's *exclusive* wall time (its own time
minus that of the wrapped calls inside it), so the labels add up to the
wrapped outer call. :meth:`OpProfiler.for_training` wraps what one epoch of
:class:`~ctre_sparse.training.Trainer` calls: the sparse ops, the bias and
activation work, softmax, the loss gradient, the SGD step, batch gathering,
the transpose rebuild, and the topology update (its ops under a
``topology:`` prefix).
"""

from __future__ import annotations

import time

__all__ = ["OpProfiler", "format_profile"]


class OpProfiler:
    """Exclusive wall time and call counts per label of the wrapped callables.

    Parameters
    ----------
    clock : callable, default time.perf_counter
        ``time.process_time`` gives CPU time instead (all threads of the
        process; steadier than wall time on a shared machine).

    Examples
    --------
    >>> import types
    >>> ns = types.SimpleNamespace(f=lambda: sum(range(1000)))
    >>> prof = OpProfiler()
    >>> prof.patch(ns, "f", "sum")
    >>> with prof:
    ...     _ = ns.f()
    >>> prof.table()["sum"]["calls"]
    1
    """

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.totals, self.counts = {}, {}
        self.prefix = ""
        self._stack = []
        self._patches = []
        self._active = False

    def _wrap(self, label, fn, phase=None):
        def timed(*args, **kwargs):
            saved = self.prefix
            key = (phase or saved) + label
            if phase is not None:
                self.prefix = phase
            self._stack.append(0.0)
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = self.clock() - t0
                self.prefix = saved
                inner = self._stack.pop()
                self.totals[key] = self.totals.get(key, 0.0) + elapsed - inner
                self.counts[key] = self.counts.get(key, 0) + 1
                if self._stack:
                    self._stack[-1] += elapsed
        return timed

    def patch(self, obj, name, label, *, phase=None):
        """Wrap ``obj.name`` (a module, class or instance attribute) while active.

        ``phase`` (e.g. "topology: ") prefixes the labels of every wrapped
        call made inside this one.
        """
        own = vars(obj)
        self._patches.append((obj, name, name in own, own.get(name), label, phase))

    def __enter__(self):
        for obj, name, _, _, label, phase in self._patches:
            setattr(obj, name, self._wrap(label, getattr(obj, name), phase))
        self._active = True
        return self

    def __exit__(self, *exc):
        for obj, name, had, old, _, _ in reversed(self._patches):
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)
        self._active = False
        return False

    def table(self):
        """``{label: {"seconds": exclusive seconds, "calls": n}}``, largest first."""
        keys = sorted(self.totals, key=self.totals.get, reverse=True)
        return {k: {"seconds": self.totals[k], "calls": self.counts[k]} for k in keys}

    @classmethod
    def for_training(cls, trainer, clock=time.perf_counter):
        """A profiler wrapping everything one epoch of ``trainer`` calls."""
        from ctre_sparse import ops, training
        from ctre_sparse.nn import layers, mlp
        from ctre_sparse.sparse import CSRMatrix

        prof = cls(clock)
        model = trainer.model
        for name in ("spmm", "spmm_t", "sddmm", "topk_cosine", "prune_magnitude", "insert"):
            prof.patch(ops, name, name)
        prof.patch(CSRMatrix, "transpose_arrays", "transpose (rebuilt after a topology change)")
        prof.patch(layers.SparseLinear, "forward", "bias add")
        prof.patch(layers.SparseLinear, "backward", "bias gradient")
        prof.patch(mlp, "softmax", "softmax")
        prof.patch(mlp, "cross_entropy_grad", "loss gradient")
        prof.patch(model, "forward", "forward glue (buffers, dropout)")
        prof.patch(model, "backward", "backward glue (loss value)")
        for act in {id(a): a for a in model.hidden_activations}.values():
            prof.patch(act, "forward_with_bias", "bias add + activation forward")
            prof.patch(act, "backward", "activation backward")
        prof.patch(trainer.optimizer, "step", "SGD update")
        prof.patch(training, "gather_columns", "batch gather")
        prof.patch(trainer, "run_epoch", "epoch glue (order, argmax, finite checks, validation)")
        if trainer.updater is not None:
            prof.patch(trainer.updater, "update", "other (sampling, random picks, remap)",
                       phase="topology: ")
        return prof


def format_profile(profile, epoch_seconds=None):
    """Readable lines for ``{"seconds", "ops"}`` as :func:`profile_epoch` returns it."""
    total = epoch_seconds or profile["seconds"]
    lines = [f"  {'where':<52} {'seconds':>9} {'share':>6} {'calls':>7}"]
    for label, row in profile["ops"].items():
        lines.append(f"  {label:<52} {row['seconds']:>9.3f} {row['seconds'] / total:>6.1%} "
                     f"{row['calls']:>7}")
    covered = sum(row["seconds"] for row in profile["ops"].values())
    label = f"(epoch; not wrapped: {total - covered:.3f} s)"
    lines.append(f"  {label:<52} {total:>9.3f}")
    return "\n".join(lines)
