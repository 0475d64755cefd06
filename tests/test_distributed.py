"""The pieces of data-parallel training that need no MPI, checked in one process.

- the batch split, the row blocks and the top-k merge: a split of
  ``topk_cosine`` over 1-5 simulated ranks gives the unsplit answer, for
  every backend, with awkward shapes (more ranks than rows, k past the
  absent pairs, empty rows, nnz = 0);
- ``backward(n_total=...)``: the shards' gradients and losses add up to the
  whole batch's;
- the estimator's and the command's parameter handling.

The real thing (``mpiexec -n 2``) is in test_mpi.py.
"""

import doctest

import numpy as np
import pytest
from conftest import CPU_BACKENDS

from ctre_sparse import CTREClassifier, CSRMatrix, topk_cosine
from ctre_sparse.distributed import (merge_topk, model_digest, mpi_size_from_env, row_block,
                                     shard_bounds, split)
from ctre_sparse.distributed import communicator as communicator_module
from ctre_sparse.nn import SparseMLP


def test_doctests():
    for module in (split, communicator_module):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_the_batch_in_order(n, size):
    parts = [shard_bounds(n, r, size) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    lengths = [hi - lo for lo, hi in parts]
    assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("rank, size", [(0, 0), (2, 2), (-1, 2)])
def test_shard_bounds_rejects_bad_ranks(rank, size):
    with pytest.raises(ValueError, match="rank must be in"):
        shard_bounds(10, rank, size)


def test_row_block_is_the_rows():
    W = CSRMatrix.random(9, 7, density=0.3, random_state=1)
    dense = W.toarray()
    for r0, r1 in [(0, 9), (2, 5), (4, 4), (8, 9)]:
        assert np.array_equal(row_block(W, r0, r1).toarray(), dense[r0:r1])
    with pytest.raises(ValueError, match="outside"):
        row_block(W, 3, 10)


def test_merge_topk_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one length"):
        merge_topk(np.arange(3), np.zeros(2), 1, 4)


def _split_topk(A, B, k, W, size, backend):
    """What MPICommunicator.topk_cosine computes, with the gather done in one process."""
    keys, scores = [], []
    for rank in range(size):
        r0, r1 = shard_bounds(B.shape[0], rank, size)
        if r1 == r0:
            continue
        rows, cols, s = topk_cosine(A, B[r0:r1], k, exclude=row_block(W, r0, r1),
                                    backend=backend)
        keys.append((rows.astype(np.int64) + r0) * A.shape[0] + cols)
        scores.append(s)
    return merge_topk(np.concatenate(keys), np.concatenate(scores), k, A.shape[0])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("n_out, n_in, density, k", [
    (40, 30, 0.2, 50),       # ordinary
    (3, 25, 0.5, 10),        # fewer rows than some rank counts: empty blocks
    (12, 6, 0.9, 100),       # k past the absent pairs: all of them come back
    (20, 15, 0.0, 7),        # nnz = 0
    (30, 20, 0.3, 0),        # k = 0
])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_split_topk_is_the_unsplit_topk(backend, n_out, n_in, density, k, size):
    rng = np.random.default_rng(n_out * 7 + size)
    A = rng.standard_normal((n_in, 16))
    B = rng.standard_normal((n_out, 16))
    B[1] = 0.0                                    # a neuron of norm 0: scores 0 everywhere
    dense = (rng.random((n_out, n_in)) < density) * rng.standard_normal((n_out, n_in))
    dense[1:3] = 0.0                              # rows without connections
    W = CSRMatrix.from_dense(dense)
    want = topk_cosine(A, B, k, exclude=W, backend=backend)
    got = _split_topk(A, B, k, W, size, backend)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    np.testing.assert_allclose(got[2], want[2], rtol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shard_gradients_add_up_to_the_batch_gradient(backend, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 11)).astype(dtype)
    y = rng.integers(0, 3, 11)
    model = SparseMLP([6, 9, 3], epsilon=2, dtype=dtype, backend=backend, random_state=0)
    model.forward(X, training=True)
    loss = model.backward(y)
    whole = [(layer.grad_W.copy(), layer.grad_b.copy()) for layer in model.layers]
    total = 0.0
    sums = [(np.zeros_like(gw), np.zeros_like(gb)) for gw, gb in whole]
    for lo, hi in [(0, 0), (0, 4), (4, 11)]:       # an empty shard too
        model.forward(np.ascontiguousarray(X[:, lo:hi]), training=True)
        total += model.backward(y[lo:hi], n_total=11)
        for (gw, gb), layer in zip(sums, model.layers):
            gw += layer.grad_W
            gb += layer.grad_b
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(loss, rel=tol)
    for (gw, gb), (ww, wb) in zip(sums, whole):
        np.testing.assert_allclose(gw, ww, rtol=tol, atol=tol)
        np.testing.assert_allclose(gb, wb, rtol=tol, atol=tol)


def test_backward_default_is_unchanged_by_n_total_equal_to_the_batch():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 8)).astype(np.float32)
    y = rng.integers(0, 2, 8)
    model = SparseMLP([5, 7, 2], epsilon=2, random_state=0)
    model.forward(X, training=True)
    model.backward(y)
    mean = [layer.grad_W.copy() for layer in model.layers]
    model.forward(X, training=True)
    model.backward(y, n_total=8)
    assert all(np.array_equal(a, layer.grad_W) for a, layer in zip(mean, model.layers))


def test_model_digest_sees_any_change():
    model = SparseMLP([5, 7, 2], epsilon=2, random_state=0)
    before = model_digest(model)
    assert model_digest(model) == before
    model.layers[1].b[0] += 1e-7
    assert model_digest(model) != before


def test_launcher_environment():
    assert mpi_size_from_env({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert mpi_size_from_env({"PMI_SIZE": "x"}) is None


@pytest.mark.parametrize("params, match", [
    ({"distributed": "nccl"}, "distributed must be None or 'mpi'"),
    ({"distributed": "mpi", "device": "cuda"}, "trains on the CPU only"),
])
def test_estimator_rejects_bad_distributed(params, match):
    X = np.zeros((6, 2))
    with pytest.raises(ValueError, match=match):
        CTREClassifier(hidden_layer_sizes=(4,), max_epochs=1, **params).fit(X, [0, 1] * 3)


def test_train_command_resolves_distributed(monkeypatch):
    from argparse import Namespace

    from ctre_sparse.cli.train import _distributed

    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert _distributed(Namespace(distributed="auto")) is None
    assert _distributed(Namespace(distributed="mpi")) == "mpi"
    monkeypatch.setenv("PMI_SIZE", "2")
    assert _distributed(Namespace(distributed="auto")) == "mpi"
    assert _distributed(Namespace(distributed="none")) is None
