"""Native topk_cosine runs its BLAS products on the OpenMP team: same bits, no deadlock."""

import ctypes
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from ctre_sparse import CSRMatrix, topk_cosine
from ctre_sparse.backends import available_backends

pytestmark = pytest.mark.skipif("native" not in available_backends("cpu"),
                                reason="the native extension is not built")

SHAPES = [(1000, 784, 300), (10, 1000, 300), (977, 763, 199), (3, 5, 7), (1, 64, 33)]


def _hook():
    from ctre_sparse.backends import native

    hook = native._find_blas_hook()
    if not hook:
        pytest.skip("numpy's BLAS has no OpenBLAS threading-backend entry point")
    return native, hook


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_bit_identical_and_callback_installed_only_inside(dtype):
    native, (setter, current, ours) = _hook()
    rng = np.random.default_rng(0)
    for m, n, k in SHAPES:
        B = rng.standard_normal((m, k)).astype(dtype)
        A = rng.standard_normal((n, k)).astype(dtype)
        plain = B @ A.T
        with native._blas_on_our_threads():
            if current is not None:
                assert current.value == ours.value
            hooked = B @ A.T
        if current is not None:
            assert not current.value
        np.testing.assert_array_equal(hooked, plain)


def test_someone_elses_callback_is_left_alone():
    native, (setter, current, ours) = _hook()
    if current is None:
        pytest.skip("the current callback cannot be read")
    setter(ours)  # stands for another library's backend (ours, so BLAS still works)
    try:
        with native._blas_on_our_threads():
            np.ones((300, 300)) @ np.ones((300, 300))
        assert current.value == ours.value  # not reset by the context
    finally:
        setter(None)


def test_concurrent_topk_from_python_threads():
    _hook()
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


def test_short_openmp_team_falls_back_to_threads():
    """OMP_THREAD_LIMIT=1 gives a team of one: the jobs must still all run at once."""
    _hook()
    code = (
        "import numpy as np\n"
        "from ctre_sparse.backends import native\n"
        "from threadpoolctl import threadpool_limits\n"
        "rng = np.random.default_rng(0)\n"
        "B = rng.standard_normal((1000, 300)); A = rng.standard_normal((800, 300))\n"
        "with threadpool_limits(2, user_api='blas'):\n"
        "    plain = B @ A.T\n"
        "    with native._blas_on_our_threads():\n"
        "        hooked = B @ A.T\n"
        "assert np.array_equal(plain, hooked)\n"
        "print('ok')\n")
    pytest.importorskip("threadpoolctl")
    env = dict(os.environ, OMP_THREAD_LIMIT="1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_callback_symbol_exported():
    from ctre_sparse.backends import native

    lib = ctypes.CDLL(native._native.__file__)
    assert hasattr(lib, "ctre_openblas_threads")
