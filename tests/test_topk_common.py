"""What topk_cosine and topk_abs_product share, checked on both: every block size gives the
exact top-k, a scipy.sparse ``exclude`` is accepted, and the compiled backends agree with
the NumPy reference. Their own properties are in test_topk_cosine.py / test_topk_abs_product.py.
"""

import numpy as np
import pytest

from conftest import assert_topk_abs_product, assert_topk_cosine, call_topk
from ctre_sparse import CSRMatrix, topk_abs_product, topk_cosine
from ctre_sparse.testing import random_dense, tolerance

#: Each op with its dense-oracle check.
OPS = {"topk_cosine": (topk_cosine, assert_topk_cosine),
       "topk_abs_product": (topk_abs_product, assert_topk_abs_product)}


@pytest.fixture(params=sorted(OPS))
def op(request):
    return OPS[request.param]


@pytest.mark.parametrize("block_bytes", [1, 40, 333, 4096, 1 << 25])
def test_block_sizes_agree(op, backend, dtype, block_bytes):
    fn, assert_topk = op
    A = random_dense(37, 6, dtype=dtype, seed=11)
    B = random_dense(29, 6, dtype=dtype, seed=12)
    W = CSRMatrix.random(29, 37, 0.3, random_state=2, dtype=dtype)
    for k in (1, 50, 400):
        assert_topk(call_topk(fn, A, B, k, W, backend, block_bytes=block_bytes), A, B, k, W)


def test_scipy_exclude(op, backend, dtype):
    if backend == "cuda":
        pytest.skip("scipy.sparse input is host memory; the cuda backend takes cupyx/CuPy")
    fn, assert_topk = op
    A = random_dense(12, 5, dtype=dtype, seed=13)
    B = random_dense(10, 5, dtype=dtype, seed=14)
    W = CSRMatrix.random(10, 12, 0.4, random_state=3, dtype=dtype)
    assert_topk(fn(A, B, 30, exclude=W.to_scipy(), backend=backend), A, B, 30, W)


def test_agrees_with_reference(op, fast_backend, dtype):
    fn, assert_topk = op
    A = random_dense(50, 10, dtype=dtype, seed=15)
    B = random_dense(40, 10, dtype=dtype, seed=16)
    W = CSRMatrix.random(40, 50, 0.1, random_state=4, dtype=dtype)
    ref = call_topk(fn, A, B, 100, W, "reference")
    got = call_topk(fn, A, B, 100, W, fast_backend)
    assert_topk(ref, A, B, 100, W)
    assert_topk(got, A, B, 100, W)
    rtol, atol = tolerance(dtype)
    scale = max(1.0, float(np.abs(ref[2]).max(initial=0)))
    np.testing.assert_allclose(got[2], ref[2], rtol=4 * rtol, atol=4 * atol * scale)
