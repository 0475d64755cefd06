"""Data-parallel training over MPI, for real: jobs under ``mpiexec -n 2`` (tests/mpi_jobs.py).

The MPI pieces come with the test extra (mpi4py and the MPICH wheel, whose
``mpiexec`` sits next to the Python that runs the tests). These tests skip
only when MPI is absent; an MPI that is installed but cannot start two
ranks fails them. Tolerances: float64 runs must match one process to
1e-9 (relative) in every epoch's loss and keep an identical topology;
float32 runs to 1e-5 (relative) in the loss.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mpi_jobs
from conftest import child_python
from ctre_sparse import CTREClassifier
from ctre_sparse.distributed import ENV_TIMEOUT, EXIT_RANK_LOST

JOBS = Path(__file__).with_name("mpi_jobs.py")
LOSS_RTOL = {"float64": 1e-9, "float32": 1e-5}


def _find_mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@pytest.fixture(scope="module")
def mpiexec():
    exe = _find_mpiexec()
    if exe is None:
        pytest.skip("MPI absent: no mpiexec beside this Python or on PATH "
                    "(pip install '.[mpi]' installs mpi4py and MPICH)")
    try:
        import mpi4py  # noqa: F401  (the package only: MPI itself is not started here)
    except ImportError:
        pytest.skip("MPI absent: mpi4py is not installed (pip install '.[mpi]')")
    probe = subprocess.run([exe, "-n", "2", sys.executable, "-c",
                            "import sys; from mpi4py import MPI; "
                            "sys.exit(0 if MPI.COMM_WORLD.Get_size() == 2 else 3)"],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, (f"{exe} -n 2 does not start 2 MPI ranks of one job "
                                   f"(exit {probe.returncode}):\n{probe.stdout}\n{probe.stderr}")
    return exe


def _run(mpiexec, args, timeout=300, **env):
    return subprocess.run([mpiexec, "-n", "2", *args], capture_output=True, text=True,
                          timeout=timeout, **child_python(**env))


@pytest.fixture(scope="module")
def trained(mpiexec, tmp_path_factory):
    """One process's runs, then the 2-rank job; the folder the job wrote."""
    out = tmp_path_factory.mktemp("mpi_train")
    X, y = mpi_jobs.data()
    refs = {dtype: CTREClassifier(**mpi_jobs.PARAMS, dtype=np.dtype(dtype).type).fit(X, y)
            for dtype in ("float64", "float32")}
    refs["resume"] = CTREClassifier(**mpi_jobs.RESUME_PARAMS, dtype=np.float64).fit(X, y)
    CTREClassifier(**{**mpi_jobs.RESUME_PARAMS, "max_epochs": 3}, dtype=np.float64,
                   checkpoint_dir=out / "single3").fit(X, y)
    job = _run(mpiexec, [sys.executable, str(JOBS), "train", str(out)])
    assert job.returncode == 0, job.stdout + job.stderr
    return out, refs, (X, y)


def _losses(clf):
    return np.array([r["train_loss"] for r in clf.history_])


def _keys(W):
    """Linear keys of the connections of a scipy CSR matrix."""
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    return rows.astype(np.int64) * W.shape[1] + W.indices


def _assert_same_topology(a, b):
    for Wa, Wb in zip(a.coefs_, b.coefs_):
        assert np.array_equal(Wa.indptr, Wb.indptr) and np.array_equal(Wa.indices, Wb.indices)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_ranks_train_the_single_process_model(trained, dtype):
    out, refs, (X, y) = trained
    ref = refs[dtype]
    mpi = CTREClassifier.load(out / f"{dtype}.npz")      # loads and predicts in one process
    assert [r["ranks"] for r in mpi.history_] == [2] * 5
    assert all(r["comm_bytes_per_batch"] > 0 for r in mpi.history_)
    np.testing.assert_allclose(_losses(mpi), _losses(ref), rtol=LOSS_RTOL[dtype])
    if dtype == "float64":   # summation order is all that differs: 1e-16-level weights
        _assert_same_topology(mpi, ref)
        for Wa, Wb in zip(mpi.coefs_, ref.coefs_):
            np.testing.assert_allclose(Wa.data, Wb.data, rtol=1e-9, atol=1e-12)
        assert [r["val_accuracy"] for r in mpi.history_] == \
            [r["val_accuracy"] for r in ref.history_]
        assert np.array_equal(mpi.predict(X), ref.predict(X))
    else:
        same = sum(np.intersect1d(_keys(Wa), _keys(Wb)).shape[0]
                   for Wa, Wb in zip(mpi.coefs_, ref.coefs_))
        assert same >= 0.99 * sum(mpi.n_connections_)


def test_dropout_trains_one_model_over_two_ranks(trained):
    """Each rank draws its own masks: the run is not the single-process one, but it learns
    and the ranks stay identical (the epoch check raises otherwise)."""
    out, refs, (X, y) = trained
    clf = CTREClassifier.load(out / "dropout.npz")
    losses = _losses(clf)
    assert [r["ranks"] for r in clf.history_] == [2] * 5
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]
    assert clf.score(X, y) > 0.8


def test_partial_fit_over_two_ranks(trained):
    out, refs, (X, y) = trained
    clf = CTREClassifier.load(out / "partial.npz")
    assert clf.n_iter_ == 2 and [r["ranks"] for r in clf.history_] == [2, 2]
    one = CTREClassifier(**mpi_jobs.PARAMS)
    for _ in range(2):
        one.partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_allclose(_losses(clf), _losses(one), rtol=LOSS_RTOL["float32"])


def test_resume_with_another_number_of_ranks(trained):
    out, refs, (X, y) = trained
    ref = refs["resume"]
    from_one = CTREClassifier.load(out / "resumed_from_1.npz")   # 3 epochs 1 rank, 2 with 2
    assert [r.get("ranks", 1) for r in from_one.history_] == [1, 1, 1, 2, 2]
    from_two = CTREClassifier(**mpi_jobs.RESUME_PARAMS, dtype=np.float64).fit(
        X, y, resume=out / "mpi3" / "checkpoint.npz")            # 3 epochs 2 ranks, 2 with 1
    assert [r.get("ranks", 1) for r in from_two.history_] == [2, 2, 2, 1, 1]
    for clf in (from_one, from_two):
        np.testing.assert_allclose(_losses(clf), _losses(ref), rtol=LOSS_RTOL["float64"])
        _assert_same_topology(clf, ref)


def test_bad_configurations_fail_before_training_on_every_rank(trained):
    out = trained[0]
    errors = json.loads((out / "errors.json").read_text())
    assert len(errors) == 2
    for rank_errors in errors:
        assert "smaller than the 2 MPI ranks" in rank_errors["batch"]
        assert "rank 1 has parameter learning_rate = 1.05 where rank 0 has 0.05" \
            in rank_errors["param"]
        assert "rank 1 has ctre_sparse version" in rank_errors["version"]
        assert "rank 1 has data (CRC-32)" in rank_errors["data"]
    assert not (out / "x.npz").exists()


def _lose_rank_1(mpiexec, tmp_path, how, timeout_s):
    t0 = time.time()
    job = _run(mpiexec, [sys.executable, str(JOBS), how, str(tmp_path)], timeout=120,
               **{ENV_TIMEOUT: str(timeout_s)})
    ended = time.time()
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
    for pid in pids:   # the launcher ends both; make sure, without waiting on a stopped one
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    lost_at = float((tmp_path / "lost_at").read_text())
    assert t0 < lost_at < ended
    return job, ended - lost_at, pids


def _assert_last_checkpoint_intact(tmp_path):
    ckpt = tmp_path / "ckpt" / "checkpoint.npz"
    clf = CTREClassifier.load(ckpt)              # rank 1 was lost in epoch 3
    assert clf.n_iter_ == 2
    X, y = mpi_jobs.data(n=50)
    assert clf.predict(X).shape == (50,)
    assert [p.name for p in ckpt.parent.iterdir()] == ["checkpoint.npz"]


def test_a_stopped_rank_is_named_and_ends_the_job(mpiexec, tmp_path):
    """A hung rank (SIGSTOP): the launcher sees nothing; the heartbeat watchdog does."""
    job, seconds, pids = _lose_rank_1(mpiexec, tmp_path, "stop", timeout_s=2)
    assert job.returncode == EXIT_RANK_LOST, job.stdout + job.stderr
    assert f"MPI rank 1 of 2 (pid {pids[1]} on " in job.stderr
    assert "is lost: no heartbeat for" in job.stderr
    assert seconds < 2 + 8, f"the job ended {seconds:.1f} s after rank 1 stopped"
    _assert_last_checkpoint_intact(tmp_path)


def test_a_killed_rank_ends_the_job(mpiexec, tmp_path):
    """A killed rank (SIGKILL): the launcher ends the job, naming its process id."""
    job, seconds, pids = _lose_rank_1(mpiexec, tmp_path, "kill9", timeout_s=2)
    assert job.returncode != 0
    assert str(pids[1]) in job.stdout + job.stderr
    assert seconds < 10, f"the job ended {seconds:.1f} s after rank 1 was killed"
    _assert_last_checkpoint_intact(tmp_path)


def test_an_error_on_one_rank_ends_every_rank(mpiexec, tmp_path):
    """An exception on rank 1 alone: the others would wait for it; the job is aborted."""
    job, seconds, _ = _lose_rank_1(mpiexec, tmp_path, "raise", timeout_s=30)
    assert job.returncode == 1, job.stdout + job.stderr
    assert "MPI rank 1 of 2: RuntimeError: an error on rank 1 alone; stopping every rank" \
        in job.stderr
    assert seconds < 10, f"the job ended {seconds:.1f} s after the error"
    _assert_last_checkpoint_intact(tmp_path)


def test_train_command_under_mpiexec(mpiexec, tmp_path):
    out = tmp_path / "run"
    job = _run(mpiexec, [sys.executable, "-m", "ctre_sparse", "train", "--epochs", "3",
                         "--hidden", "64,64", "--checkpoint-every", "1", "--out", str(out),
                         "--quiet"])
    assert job.returncode == 0, job.stdout + job.stderr
    assert "2 MPI ranks (rank 0: pid" in job.stderr
    assert job.stdout.count("test accuracy") == 1         # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz", "history.json", "input_connectivity.png", "learning_curves.png",
        "model.npz"]
    doc = json.loads((out / "history.json").read_text())
    assert doc["ranks"] == 2 and doc["epochs"] == 3 and doc["test_accuracy"] > 0.5
