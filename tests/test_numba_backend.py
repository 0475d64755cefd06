"""Numba-backend internals that the shared kernel grid does not reach.

The grid (test_spmm.py, test_topk_cosine.py, ...) checks every backend's
public contract. Here: the private quickselect of the streaming top-k, the
top-k with more row-chunks than threads and many ties (the buffer cut path),
and prune/insert on inputs large enough for several buffer cuts and rows.
"""

import numpy as np
import pytest

from ctre_sparse import ops
from ctre_sparse.backends import reference
from ctre_sparse.testing import random_csr

numba_backend = pytest.importorskip("ctre_sparse.backends.numba_backend")
_k = pytest.importorskip("ctre_sparse.backends._numba_kernels")


@pytest.mark.parametrize("kind", ["normal", "few_values", "sorted", "reversed", "constant"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_select_matches_sort(kind, dtype):
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 10, 57, 1000):
        a = {"normal": rng.standard_normal(n), "few_values": rng.integers(0, 3, n) * 1.0,
             "sorted": np.sort(rng.standard_normal(n)),
             "reversed": np.sort(rng.standard_normal(n))[::-1],
             "constant": np.full(n, 0.5)}[kind].astype(dtype)
        for t in {0, n // 3, n // 2, n - 1}:
            assert _k._select(a.copy(), t) == np.sort(a)[t]


@pytest.mark.parametrize("n_chunks", [1, 2, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_chunks_and_ties_exact(monkeypatch, n_chunks, dtype):
    # integer activations in few dimensions: huge groups of equal scores
    monkeypatch.setattr(numba_backend, "get_num_threads", lambda: n_chunks)
    rng = np.random.default_rng(n_chunks)
    A = rng.integers(-2, 3, (31, 3)).astype(dtype)
    B = rng.integers(-2, 3, (23, 3)).astype(dtype)
    W = random_csr(23, 31, 0.3, dtype=dtype, seed=1)
    for k in (1, 7, 60, 300, 23 * 31):
        for block_bytes in (1, 31 * np.dtype(dtype).itemsize * 4, 1 << 20):
            got = ops.topk_cosine(A, B, k, exclude=W, block_bytes=block_bytes, backend="numba")
            want = ops.topk_cosine(A, B, k, exclude=W, block_bytes=block_bytes,
                                   backend="reference")
            for g, w in zip(got, want):
                assert g.dtype == w.dtype
                np.testing.assert_array_equal(g, w)


def test_topk_many_buffer_cuts_exact():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((300, 8)).astype(np.float32)
    B = rng.standard_normal((200, 8)).astype(np.float32)
    W = random_csr(200, 300, 0.1, seed=2)
    got = ops.topk_cosine(A, B, 500, exclude=W, block_bytes=300 * 4 * 16, backend="numba")
    want = ops.topk_cosine(A, B, 500, exclude=W, block_bytes=300 * 4 * 16, backend="reference")
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_prune_then_insert_large_exact(index_dtype):
    W = random_csr(300, 400, 0.05, index_dtype=index_dtype, seed=4)
    W.data[::7] = np.round(W.data[::7])  # plenty of equal magnitudes
    got = numba_backend.prune_magnitude(W.indptr, W.indices, W.data, W.nnz // 3)
    want = reference.prune_magnitude(W.indptr, W.indices, W.data, W.nnz // 3)
    np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(5)
    stored = np.zeros(W.n_out * W.n_in, dtype=bool)
    stored[W.row_indices().astype(np.int64) * W.n_in + W.indices] = True
    absent = np.flatnonzero(~stored)
    keys = rng.choice(absent, size=2000, replace=False)
    rows, cols = keys // W.n_in, (keys % W.n_in).astype(np.int32)
    values = rng.standard_normal(2000).astype(W.dtype)
    got = numba_backend.insert(W.indptr, W.indices, W.data, rows, cols, values, W.n_in)
    want = reference.insert(W.indptr, W.indices, W.data, rows, cols, values, W.n_in)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
