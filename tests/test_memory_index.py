"""Memory proportional to connections on every training path, the topology update included.

A 200,000 x 200,000 layer at epsilon 10 (4 million connections; dense float32 it
would take 149 GiB, and one block of 1,000 dense rows 763 MiB) and a 10 x 200,000
output layer (dense: 2 million connections): forward, backward, one SGD step and
one topology update with cosine growth in the default "auto" mode, which takes
the index mode for the wide layer. The process's resident set may grow over what
it held before the data were made by at most 1.25 x :data:`BUDGET`, the bytes the
run needs at its peak:

- the model at 24 bytes per connection (values, column indices, gradient,
  momentum, and the cached transpose's indices and permutation: 144 MB);
- the update's copies of the wide layer at 32 bytes per connection (the pruned
  and the merged arrays, the kept and old-position maps: 128 MB);
- 8 training buffers of N x 16 floats (activations, pre-activations and
  gradients of a batch, the gathered batch: 102 MB);
- 6 arrays of N x 32 floats (the data, the activations of the update's sample,
  the index's routing rows of both sides and its lists: 154 MB).

The 25% on top is what glibc keeps of freed pages (measured: 527 MiB with the
default allocator settings, 481 MiB with MALLOC_MMAP_THRESHOLD_ fixed, for a
budget of 503 MiB). It was 613 MiB before model construction, pruning and the
activation pass lost their per-connection temporaries (docs/cosine_index.md).
The index probes 4 lists per output neuron instead of its default 16: the
memory of the probe tables is bounded by the block size whatever the number
of probes, and 4 keep the test's time down (the scan is 4x shorter).
"""

import numpy as np
import pytest

from conftest import reset_hwm, vm_hwm_kib
from ctre_sparse import cosine_index
from ctre_sparse.nn import SGD, SparseMLP
from ctre_sparse.topology import TopologyUpdater
from ctre_sparse.training import Trainer

N = 200_000
#: Bytes the run needs at its peak (module docstring): model, update copies, training
#: buffers (batch 16), activation-sized arrays (S = 32).
BUDGET = 24 * (4_000_000 + 2_000_000) + 32 * 4_000_000 + 8 * N * 16 * 4 + 6 * N * 32 * 4
LIMIT = int(1.25 * BUDGET)


def test_wide_layer_trains_and_evolves_in_memory_proportional_to_connections(monkeypatch):
    monkeypatch.setattr(cosine_index, "default_nprobe", lambda nlist: 4)
    if not reset_hwm() or vm_hwm_kib() is None:
        pytest.skip("needs /proc/self/clear_refs and VmHWM (Linux) to read the peak RSS")
    base = vm_hwm_kib()
    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.random((N, 32), dtype=np.float32))
    y = rng.integers(0, 10, 32)
    model = SparseMLP([N, N, 10], epsilon=10, random_state=0)
    updater = TopologyUpdater(0.2, "cosine", cosine_samples=32)
    trainer = Trainer(model, SGD(0.01), updater, batch_size=16, random_state=0)
    records = trainer.fit(X, y, epochs=2)            # epoch 2 starts with the topology update
    peak = (vm_hwm_kib() - base) * 1024
    big = model.layers[0].W
    assert big.shape == (N, N) and big.nnz == records[1]["n_connections"] - model.layers[1].W.nnz
    assert records[1]["cosine_modes"] == ["index", "exact"]
    assert records[1]["n_cosine"] == records[1]["n_pruned"] > 0.19 * records[1]["n_connections"]
    assert np.isfinite(records[1]["train_loss"])
    assert peak < LIMIT, (f"peak RSS grew by {peak / 2**20:.0f} MiB for {big.nnz:,} "
                          f"connections, over 1.25 x the budget of {BUDGET / 2**20:.0f} MiB "
                          f"(dense layer: {N * N * 4 / 2**30:.0f} GiB)")
