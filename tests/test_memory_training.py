"""Nothing of size n_in x n_out on the training path: a 30,000 x 30,000 layer in < 512 MiB.

A dense float32 weight, mask, gradient or similarity matrix of that layer
would take 3.35 GiB; the model trains a couple of batches and runs one
topology update with cosine growth (exact top-k over all 9e8 pairs, in
blocks), one with gradient growth (RigL: the same top-k over the loss
gradient) and one with random growth, while tracemalloc watches every NumPy
allocation.
"""

import tracemalloc

import numpy as np

from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater
from ctre_sparse.training import Trainer

N = 30_000
LIMIT = 512 << 20


def test_big_layer_trains_and_evolves_in_small_memory():
    dense_bytes = N * N * 4
    tracemalloc.start()
    try:
        model = SparseMLP([N, N, 10], epsilon=2, random_state=0, backend="reference")
        rng = np.random.default_rng(0)
        X = rng.random((N, 16), dtype=np.float32)
        y = rng.integers(0, 10, 16)
        updater = TopologyUpdater(0.2, "cosine", cosine_samples=4, backend="reference")
        trainer = Trainer(model, SGD(0.01), updater, batch_size=8, random_state=0)
        before = [layer.W.nnz for layer in model.layers]
        records = trainer.fit(X, y, epochs=2)  # epoch 2 starts with the topology update
        rigl_stats = TopologyUpdater(0.2, "rigl", cosine_samples=4, backend="reference").update(
            model, X, y, optimizer=trainer.optimizer, rng=rng)
        random_stats = TopologyUpdater(0.2, "random", backend="reference").update(
            model, X, optimizer=trainer.optimizer, rng=rng)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert records[1]["n_cosine"] == records[1]["n_pruned"] > 0.19 * sum(before)
    assert rigl_stats["n_cosine"] == random_stats["n_random"] == records[1]["n_pruned"]
    assert [layer.W.nnz for layer in model.layers] == before
    assert np.isfinite(records[1]["train_loss"])
    assert peak < LIMIT, f"peak {peak / 2**20:.0f} MiB (a dense layer: {dense_bytes / 2**30:.2f} GiB)"
