"""Jobs the MPI tests start under ``mpiexec`` (``python tests/mpi_jobs.py JOB DIR``).

Not a test module: ``tests/test_mpi.py`` runs these with ``mpiexec -n 2``
and checks what rank 0 leaves in ``DIR``.

- ``train``: the equivalence fits (float64 and float32, 5 epochs), one with
  dropout, two ``partial_fit`` calls, a resume of
  a single-process checkpoint with 2 ranks, a 3-epoch run whose checkpoint a
  single process resumes, then the bad configurations (batch smaller than the
  ranks; a parameter, the package version or the data differing on rank 1);
- ``kill9`` / ``stop`` / ``raise``: a long fit whose rank 1 kills (SIGKILL)
  or stops (SIGSTOP) itself, or raises an error, in the middle of epoch 3,
  after writing the time.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ctre_sparse import CTREClassifier

#: The run compared with one process: cosine and random growth, a last batch of
#: 1 sample (540 training samples = 7 x 77 + 1: rank 0's shard of it is empty); no
#: dropout (each rank draws its own masks: the "dropout" run below).
PARAMS = dict(hidden_layer_sizes=(24, 24), epsilon=3, zeta=0.3, growth="ctre_sim",
              learning_rate=0.05, batch_size=77, max_epochs=5, validation_fraction=0.1,
              random_state=3, dropout=0.0)
#: The resume runs stop after 3 epochs of a max_epochs=3 run and resume to 5: the same as a
#: 5-epoch run only at a constant rate (the default schedule spans max_epochs).
RESUME_PARAMS = {**PARAMS, "lr_schedule": "constant"}


def data(n=600, d=16, classes=4, seed=0):
    """Gaussian blobs: no two features or samples alike (no near-ties in cosine scores)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)) * 1.5
    y = rng.integers(0, classes, n)
    return centers[y] + rng.standard_normal((n, d)), y


def _fit(out, name, X, y, **kw):
    clf = CTREClassifier(distributed="mpi", **{**PARAMS, **kw}).fit(X, y)
    clf.save(out / f"{name}.npz")            # rank 0 writes, the others do not
    return clf


def _expect_error(fn):
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    return None


def job_train(out):
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    X, y = data()
    for dtype in ("float64", "float32"):
        _fit(out, dtype, X, y, dtype=np.dtype(dtype).type)
    _fit(out, "dropout", X, y, dropout=0.2)   # each rank its own masks; one model still
    partial = CTREClassifier(distributed="mpi", **PARAMS)
    for _ in range(2):
        partial.partial_fit(X, y, classes=np.unique(y))
    partial.save(out / "partial.npz")
    # resume with 2 ranks what one process started (tests/test_mpi.py wrote it)
    CTREClassifier(distributed="mpi", **{**RESUME_PARAMS, "dtype": np.float64}).fit(
        X, y, resume=out / "single3" / "checkpoint.npz").save(out / "resumed_from_1.npz")
    # 3 epochs with 2 ranks, for one process to resume
    CTREClassifier(distributed="mpi", **{**RESUME_PARAMS, "dtype": np.float64, "max_epochs": 3},
                   checkpoint_dir=out / "mpi3").fit(X, y)
    errors = {"batch": _expect_error(lambda: _fit(out, "x", X, y, batch_size=1)),
              "param": _expect_error(lambda: _fit(out, "x", X, y, learning_rate=0.05 + rank))}
    import ctre_sparse._version as version

    saved, version.__version__ = version.__version__, version.__version__ + ("+other" * rank)
    errors["version"] = _expect_error(lambda: _fit(out, "x", X, y))
    version.__version__ = saved
    X_other = X + rank
    errors["data"] = _expect_error(lambda: _fit(out, "x", X_other, y))
    all_errors = MPI.COMM_WORLD.gather(errors)
    if rank == 0:
        (out / "errors.json").write_text(json.dumps(all_errors))


def _die_in_epoch_3(how, out):
    """A callback that makes rank 1 kill, stop or fail itself at the 3rd batch of epoch 3."""
    sig = {"kill9": signal.SIGKILL, "stop": signal.SIGSTOP}.get(how)

    def callback(est, record):
        if record["epoch"] != 2 or est._comm.rank != 1:
            return False
        model = est._trainer.model
        backward, calls = model.backward, []

        def dying_backward(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                (out / "lost_at").write_text(repr(time.time()))
                if sig is None:
                    raise RuntimeError("an error on rank 1 alone")
                os.kill(os.getpid(), sig)
            return backward(*args, **kwargs)

        model.backward = dying_backward
        return False
    return callback


def job_lose_rank(out, how):
    from mpi4py import MPI

    X, y = data(n=2000)
    clf = CTREClassifier(distributed="mpi", **{**PARAMS, "max_epochs": 200, "batch_size": 20},
                         checkpoint_dir=out / "ckpt")
    (out / f"pid{MPI.COMM_WORLD.Get_rank()}").write_text(str(os.getpid()))
    clf.fit(X, y, callbacks=[_die_in_epoch_3(how, out)])


if __name__ == "__main__":
    job, folder = sys.argv[1], Path(sys.argv[2])
    if job == "train":
        job_train(folder)
    else:
        job_lose_rank(folder, job)
