"""Faster bookkeeping of the growth strategies: same answers as the plain versions."""

import numpy as np
import pytest

from ctre_sparse.topology import growth
from ctre_sparse.topology.growth import _in_set, _in_sorted, sample_absent


@pytest.mark.parametrize("total", [1, 7, 1000, 1_000_000, growth.TABLE_POSITIONS + 5])
@pytest.mark.parametrize("n_keys,n_ref", [(0, 0), (0, 5), (5, 0), (300, 200), (12_000, 12_000)])
def test_in_set_equals_binary_search(total, n_keys, n_ref):
    rng = np.random.default_rng(total + n_keys)
    keys = rng.integers(0, total, n_keys, dtype=np.int64)
    ref = np.unique(rng.integers(0, total, n_ref, dtype=np.int64))
    if n_keys and n_ref:
        keys[:3] = [0, total - 1, ref[0]]  # the ends of the range, and one sure hit
    got = _in_set(keys, ref, total)
    assert got.dtype == bool and got.shape == keys.shape
    np.testing.assert_array_equal(got, _in_sorted(keys, ref))
    np.testing.assert_array_equal(got, np.isin(keys, ref))


def _sample_absent_unsorted_draws(n_out, n_in, n, rng, exclude_keys):
    """sample_absent as it was: the same, but the draws tested in the order drawn."""
    excludes = [exclude_keys] if hasattr(exclude_keys, "shape") else list(exclude_keys)
    total = n_out * n_in
    n_absent = total - sum(int(e.shape[0]) for e in excludes)
    keys = np.zeros(0, dtype=np.int64)
    while keys.shape[0] < n:
        need = n - keys.shape[0]
        size = int(need * (total / n_absent) * 1.1) + 16
        draw = rng.integers(0, total, size=size, dtype=np.int64)
        for e in excludes:
            draw = draw[~_in_sorted(draw, e)]
        keys = growth._sorted_unique(np.concatenate([keys, draw]))
    if keys.shape[0] > n:
        keys = keys[np.sort(rng.choice(keys.shape[0], size=n, replace=False))]
    return keys // n_in, keys % n_in


@pytest.mark.parametrize("seed", range(6))
def test_sorted_draws_give_the_same_sample(seed):
    rng = np.random.default_rng(seed)
    n_out, n_in = [(50, 40), (1000, 784), (10, 1000)][seed % 3]
    total = n_out * n_in
    perm = rng.permutation(total)
    cut = [int(0.04 * total), int(0.05 * total), int(0.06 * total)]
    excludes = [np.sort(perm[:cut[0]]), np.sort(perm[cut[0]:cut[1]]),
                np.sort(perm[cut[1]:cut[2]])][: 1 + seed % 3]
    n = int(0.02 * total) + 1
    got = sample_absent(n_out, n_in, n, np.random.default_rng(100 + seed), excludes)
    want = _sample_absent_unsorted_draws(n_out, n_in, n, np.random.default_rng(100 + seed),
                                         excludes)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    keys = got[0] * n_in + got[1]
    assert np.unique(keys).shape[0] == n
    assert not np.isin(keys, np.concatenate(excludes)).any()
