"""Randomness helpers: check_random_state and sample_positions."""

import tracemalloc

import numpy as np
import pytest

from ctre_sparse._random import check_random_state, sample_positions


# ------------------------------------------------------------------ check_random_state
def test_none_gives_fresh_generator():
    assert isinstance(check_random_state(None), np.random.Generator)
    assert check_random_state(None) is not check_random_state(None)


@pytest.mark.parametrize("seed", [0, 42, np.int64(7), np.int32(3)])
def test_int_seed_is_reproducible(seed):
    a, b = check_random_state(seed), check_random_state(seed)
    assert isinstance(a, np.random.Generator)
    np.testing.assert_array_equal(a.integers(0, 1000, 20), b.integers(0, 1000, 20))


def test_different_seeds_differ():
    assert not np.array_equal(check_random_state(0).random(10), check_random_state(1).random(10))


def test_generator_passed_through():
    rng = np.random.default_rng(5)
    assert check_random_state(rng) is rng


def test_random_state_is_converted_reproducibly():
    a = check_random_state(np.random.RandomState(3))
    b = check_random_state(np.random.RandomState(3))
    assert isinstance(a, np.random.Generator)
    np.testing.assert_array_equal(a.random(5), b.random(5))


@pytest.mark.parametrize("bad", ["0", 1.5, [1, 2], object()])
def test_bad_seed_rejected(bad):
    with pytest.raises(ValueError, match="random_state must be None, an int or a numpy Generator"):
        check_random_state(bad)


def test_seed_entropy_of_every_kind_of_seed():
    from ctre_sparse._random import seed_entropy

    assert seed_entropy(7) == seed_entropy(7) == np.random.SeedSequence(7).entropy
    assert seed_entropy(np.random.default_rng(3)) == seed_entropy(np.random.default_rng(3))
    assert seed_entropy(np.random.RandomState(3)) == seed_entropy(np.random.RandomState(3))
    assert isinstance(seed_entropy(None), int)
    with pytest.raises(ValueError, match="random_state must be None, an int or a numpy Generator"):
        seed_entropy("0")


# ------------------------------------------------------------------ sample_positions
def _check_valid(keys, total, count):
    assert keys.dtype == np.int64
    assert keys.shape == (count,)
    if count:
        assert keys[0] >= 0 and keys[-1] < total
        assert np.all(np.diff(keys) > 0)  # sorted and distinct


@pytest.mark.parametrize("total,count", [(0, 0), (1, 0), (1, 1), (10, 3), (10, 5), (10, 6),
                                         (10, 10), (1000, 1), (1000, 499), (1000, 500),
                                         (1000, 501), (1000, 999), (10**6, 5000)])
def test_distinct_sorted_in_range(total, count):
    keys = sample_positions(np.random.default_rng(0), total, count)
    _check_valid(keys, total, count)


def test_full_draw_is_everything():
    np.testing.assert_array_equal(sample_positions(np.random.default_rng(0), 17, 17),
                                  np.arange(17))


def test_reproducible_with_seed():
    for count in (30, 80):  # direct and complement branches
        a = sample_positions(np.random.default_rng(11), 100, count)
        b = sample_positions(np.random.default_rng(11), 100, count)
        c = sample_positions(np.random.default_rng(12), 100, count)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_complement_branch_is_complement_of_a_small_draw():
    # count > total / 2 draws the (total - count) dropped positions with the same generator
    total, count = 1000, 900
    keys = sample_positions(np.random.default_rng(3), total, count)
    _check_valid(keys, total, count)
    dropped = sample_positions(np.random.default_rng(3), total, total - count)
    np.testing.assert_array_equal(np.setdiff1d(np.arange(total), keys), dropped)


@pytest.mark.parametrize("count", [3, 7])  # 7 of 10 goes through the complement branch
def test_uniform_marginals(count):
    total, trials = 10, 4000
    rng = np.random.default_rng(123)
    hits = np.zeros(total)
    for _ in range(trials):
        hits[sample_positions(rng, total, count)] += 1
    freq = hits / trials
    # each position is drawn with probability count / total; binomial sd ~ 0.008
    np.testing.assert_allclose(freq, count / total, atol=0.04)


def test_memory_is_o_count_for_a_huge_range():
    tracemalloc.start()
    try:
        keys = sample_positions(np.random.default_rng(0), 10**13, 10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _check_valid(keys, 10**13, 10_000)
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("total,count", [(10, 11), (10, -1), (0, 1)])
def test_impossible_counts_rejected(total, count):
    with pytest.raises(ValueError, match="cannot draw"):
        sample_positions(np.random.default_rng(0), total, count)


def _positions_by_union(rng, total, count):
    """sample_positions as first written (np.union1d of the draws): the stream to stay on."""
    keys = np.zeros(0, dtype=np.int64)
    while keys.shape[0] < count:
        draw = rng.integers(0, total, size=int((count - keys.shape[0]) * 1.1) + 16,
                            dtype=np.int64)
        keys = np.union1d(keys, draw)
    if keys.shape[0] > count:
        keys = np.sort(keys[rng.choice(keys.shape[0], size=count, replace=False)])
    return keys


@pytest.mark.parametrize("total,count", [(10**6, 1000), (5000, 2400), (10**10, 30000), (7, 3)])
def test_sample_positions_keeps_the_draws_of_the_union_version(total, count):
    """The leaner sort-in-place version draws the same positions for the same seed (so seeded
    topologies did not change when its memory went from ~40 to ~26 bytes per position)."""
    for seed in range(3):
        got = sample_positions(np.random.default_rng(seed), total, count)
        want = _positions_by_union(np.random.default_rng(seed), total, count)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.int64


def test_memory_per_position_when_count_is_large():
    """At most ~26 bytes per position (draw, permutation, chosen copy); the union version 36."""
    tracemalloc.start()
    try:
        sample_positions(np.random.default_rng(0), 10**12, 10**6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 28 * 10**6, f"peak {peak / 10**6:.1f} bytes per position"
