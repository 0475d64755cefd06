"""Randomness helpers: everything random takes a seed or a Generator (no global RNG)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_random_state", "sample_positions", "seed_entropy", "run_seeds"]


def check_random_state(seed):
    """Turn ``seed`` into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    seed : None, int, numpy.random.Generator or numpy.random.RandomState
        ``None`` gives a fresh unseeded generator; an int seeds a new one; a
        Generator is returned as is; a RandomState seeds a new Generator from it.

    Examples
    --------
    >>> bool(check_random_state(0).integers(10) == check_random_state(0).integers(10))
    True
    """
    if seed is None or isinstance(seed, (numbers.Integral, np.integer)):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got {seed!r}")


def sample_positions(rng, total, count):
    """Draw ``count`` distinct integers from ``[0, total)``, returned sorted (int64).

    Memory is O(count), never O(total), unless ``count > total / 2`` (then the
    complement is drawn and the output itself is O(total)): at most about 26
    bytes per position at a time (the draw, then the permutation that picks
    ``count`` of the distinct draws and their copy).
    """
    total, count = int(total), int(count)
    if not 0 <= count <= total:
        raise ValueError(f"cannot draw {count} distinct positions out of {total}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count > total // 2:
        drop = sample_positions(rng, total, total - count)
        keep = np.ones(total, dtype=bool)
        keep[drop] = False
        return np.flatnonzero(keep).astype(np.int64)
    keys = np.zeros(0, dtype=np.int64)
    while keys.shape[0] < count:
        need = count - keys.shape[0]
        draw = rng.integers(0, total, size=int(need * 1.1) + 16, dtype=np.int64)
        if keys.shape[0]:
            draw = np.concatenate([keys, draw])
        del keys
        keys = _sorted_unique(draw)  # np.union1d(keys, draw) with one copy fewer
        del draw
    if keys.shape[0] > count:
        pick = rng.choice(keys.shape[0], size=count, replace=False)
        chosen = keys[pick]
        del keys, pick
        chosen.sort()
        keys = chosen
    return keys


def _sorted_unique(a):
    """``np.unique(a)`` of a 1-D array that may be sorted in place (one output copy)."""
    a.sort()
    first = np.empty(a.shape[0], dtype=bool)
    first[:1] = True
    np.not_equal(a[1:], a[:-1], out=first[1:])
    return a[first]


def seed_entropy(random_state):
    """The root entropy (an int) of a run seeded by ``random_state``.

    None draws fresh entropy; an int is its own root; a Generator or
    RandomState gives one draw of it. ValueError for anything else.
    """
    rs = random_state
    if isinstance(rs, np.random.Generator):
        return int(rs.integers(0, 2**63 - 1))
    if isinstance(rs, np.random.RandomState):
        return int(rs.randint(0, 2**31 - 1))
    if rs is None or isinstance(rs, numbers.Integral):
        return int(np.random.SeedSequence(rs).entropy)
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got {rs!r}")


def run_seeds(entropy):
    """The seeds of an estimator's run from its root ``entropy``: the validation split's, the
    model's (topology and weights) and the trainer's (batches, growth), in that order."""
    return np.random.SeedSequence(entropy).spawn(3)
