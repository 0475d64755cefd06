"""Threads: ops called from several Python threads, beside NumPy's own BLAS, and the tuning switch.

The native top-k used to route its BLAS products through OpenBLAS's
threading-callback hook, installed around each product. A NumPy product in
another thread then hung the process (one thread spinning in OpenBLAS's
``inner_thread``, one waiting on its ``level3_lock``): 4 of 4 runs of the
reproducer below at 72f8fb3 (5 of 5 six-second runs hung there). The hook is
gone; the reproducer must finish.
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from ctre_sparse import CSRMatrix, topk_cosine, tuning
from ctre_sparse.backends import available_backends
from conftest import child_python

needs_native = pytest.mark.skipif("native" not in available_backends("cpu"),
                                  reason="the native extension is not built")

#: topk_cosine in one thread, a NumPy matrix product in another, for ``seconds``
#: and at least one call each (the first call may compile numba code for a long
#: while on a loaded machine). An exception in either thread fails the run.
REPRODUCER = textwrap.dedent("""
    import sys, threading, time, traceback
    import numpy as np
    from ctre_sparse import CSRMatrix, topk_cosine
    rng = np.random.default_rng(0)
    A = rng.standard_normal((400, 256)).astype(np.float32)
    B = rng.standard_normal((300, 256)).astype(np.float32)
    W = CSRMatrix.random(300, 400, 0.05, random_state=2)
    M = rng.standard_normal((300, 300))
    stop = time.time() + float(sys.argv[1])
    counts = [0, 0]
    errors = []
    def loop(i, work):
        try:
            while counts[i] == 0 or time.time() < stop:
                work()
                counts[i] += 1
        except BaseException:
            errors.append(traceback.format_exc())
    def topk():
        topk_cosine(A, B, 500, exclude=W, backend=sys.argv[2])
    def matmul():
        M @ M
    threads = [threading.Thread(target=loop, args=(0, topk)),
               threading.Thread(target=loop, args=(1, matmul))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("".join(errors))
    print("finished", counts[0], counts[1])
""")


def _run_reproducer(backend, seconds=6.0, timeout=90):
    try:
        return subprocess.run([sys.executable, "-c", REPRODUCER, str(seconds), backend],
                              capture_output=True, text=True, timeout=timeout, **child_python())
    except subprocess.TimeoutExpired:
        pytest.fail(f"topk_cosine (backend {backend!r}) beside a NumPy product in another "
                    f"thread did not finish within {timeout} s (a {seconds} s run): a hang")


@needs_native
def test_native_topk_beside_numpy_products_in_another_thread_finishes():
    proc = _run_reproducer("native")
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    assert words[0] == "finished" and int(words[1]) > 0 and int(words[2]) > 0, \
        proc.stdout + proc.stderr[-2000:]


@needs_native
def test_concurrent_topk_from_python_threads():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((400, 64)).astype(np.float32)
    B = rng.standard_normal((300, 64)).astype(np.float32)
    W = CSRMatrix.random(300, 400, 0.05, random_state=2)
    want = topk_cosine(A, B, 2000, exclude=W, backend="reference")
    got = [None] * 4

    def work(i):
        got[i] = topk_cosine(A, B, 2000, exclude=W, backend="native")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock"
    for g in got:
        for a, b in zip(g, want):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ the tuning switch
@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", tuning.ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    tuning.configure(None)


def _inside():
    with tuning.openmp_loading():
        return os.environ.get("GOMP_SPINCOUNT")


def test_spin_count_set_only_while_loading(clean_environment):
    assert tuning.enabled()
    assert _inside() == tuning.OMP_SPIN_COUNT
    assert "GOMP_SPINCOUNT" not in os.environ
    assert tuning.status() == {"enabled": True, "openmp_spin_count": tuning.OMP_SPIN_COUNT,
                               "reason": None}


@pytest.mark.parametrize("value", ["0", "off", "False", " no "])
def test_environment_variable_switches_it_off(clean_environment, value):
    clean_environment.setenv(tuning.ENV_VAR, value)
    assert not tuning.enabled()
    assert _inside() is None
    assert "tuning is off" in tuning.status()["reason"]


def test_function_switch_overrides_the_environment(clean_environment):
    clean_environment.setenv(tuning.ENV_VAR, "0")
    tuning.configure(True)
    assert _inside() == tuning.OMP_SPIN_COUNT
    tuning.configure(False)
    clean_environment.setenv(tuning.ENV_VAR, "1")
    assert _inside() is None


@pytest.mark.parametrize("name,value", [("GOMP_SPINCOUNT", "12345"),
                                        ("OMP_WAIT_POLICY", "passive")])
def test_users_own_setting_is_kept(clean_environment, name, value):
    clean_environment.setenv(name, value)
    assert _inside() == os.environ.get("GOMP_SPINCOUNT")
    assert os.environ[name] == value
    assert name in tuning.status()["reason"]


def test_importing_the_backends_changes_nothing():
    """Importing ctre_sparse and its backend modules sets no environment variable and
    loads no OpenMP runtime; the first use of the native backend applies the tuning."""
    code = textwrap.dedent("""
        import os, sys
        import ctre_sparse, ctre_sparse.backends.native as n, ctre_sparse.backends.numba_backend
        from ctre_sparse import tuning
        print("loaded-at-import", "ctre_sparse._native" in sys.modules)
        print("status-before", tuning.status()["openmp_spin_count"])
        print("available", n.unavailable_reason() is None)
        print("status-after", tuning.status()["openmp_spin_count"], os.environ.get("GOMP_SPINCOUNT"))
    """)
    child = child_python()
    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", tuning.ENV_VAR):
        child["env"].pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, **child)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["loaded-at-import"] == "False" and lines["status-before"] == "None"
    if lines["available"] == "True":
        assert lines["status-after"] == f"{tuning.OMP_SPIN_COUNT} None"   # not left behind


#: Hashes of every sparse kernel's output and of one training step, per backend.
KERNEL_HASHES = textwrap.dedent("""
    import hashlib, json
    import numpy as np
    from ctre_sparse import ops
    from ctre_sparse.backends import available_backends
    from ctre_sparse.nn import SparseMLP
    from ctre_sparse.sparse import CSRMatrix

    def h(*arrays):
        return hashlib.md5(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()

    rng = np.random.default_rng(0)
    W = CSRMatrix.random(600, 500, nnz=12000, random_state=1)
    X = rng.standard_normal((500, 130)).astype(np.float32)
    G = rng.standard_normal((600, 130)).astype(np.float32)
    out = {}
    for b in [b for b in available_backends("cpu") if b != "reference"]:
        out[b + " kernels"] = h(ops.spmm(W, X, backend=b), ops.spmm_t(W, G, backend=b),
                                ops.sddmm(W, G, X, backend=b))
        m = SparseMLP([500, 400, 300, 10], epsilon=3, random_state=0, backend=b,
                      init="he_sparse")
        P = m.forward(X, training=True)
        m.backward(rng.integers(0, 10, 130))
        out[b + " step"] = h(P, *[l.grad_W for l in m.layers], *[l.grad_b for l in m.layers])
    print(json.dumps(out))
""")


def test_sparse_kernels_repeat_bit_for_bit_at_any_thread_count():
    """Rows (and, for W.T, the cached transpose's rows) are split over threads, no sum is: 1
    and 2 threads give the same bits. (BLAS products, as in topk_cosine's scores, may not.)"""
    runs = []
    for threads in ("1", "2"):
        env = {v: threads for v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
        proc = subprocess.run([sys.executable, "-c", KERNEL_HASHES], capture_output=True,
                              text=True, timeout=300, **child_python(**env))
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(proc.stdout.strip().splitlines()[-1])
    assert runs[0] == runs[1] and runs[0] != "{}"
