"""topk_cosine_index: the contract of topk_cosine, an approximate set, absolute cosine honoured."""

import logging

import numpy as np
import pytest

from conftest import brute_cosine
from ctre_sparse import CSRMatrix
from ctre_sparse.cosine_sketch import topk_recall
from ctre_sparse.cosine_index import default_nlist, default_nprobe, topk_cosine_index
from ctre_sparse.ops import cosine_pairs, topk_cosine


def _clustered(sizes, S, n_centres, rng, dtype=np.float32):
    """Nonnegative rows near shared directions (neurons of similar roles on both sides)."""
    centres = rng.random((n_centres, S))
    return [np.ascontiguousarray(centres[rng.integers(0, n_centres, n)]
                                 + 0.3 * rng.random((n, S)), dtype=dtype) for n in sizes]


def _pattern(n_out, n_in, density, seed, index_dtype=np.int32):
    W = CSRMatrix.random(n_out, n_in, density=density, random_state=seed)
    return CSRMatrix(W.data, W.indices.astype(index_dtype), W.indptr.astype(index_dtype),
                     W.shape)


def _check_contract(A, B, k, W, rows, cols, scores):
    absent = A.shape[0] * B.shape[0] - (0 if W is None else W.nnz)
    assert rows.dtype == cols.dtype == np.int64 and scores.dtype == A.dtype
    assert rows.shape == cols.shape == scores.shape == (min(k, absent),)
    keys = rows * A.shape[0] + cols
    assert np.unique(keys).shape == keys.shape                      # distinct pairs
    if W is not None:
        assert not np.isin(keys, W.row_indices().astype(np.int64) * A.shape[0] + W.indices).any()
    np.testing.assert_array_equal(scores, cosine_pairs(B, A, rows, cols))  # exact scores
    order = np.lexsort((cols, rows, -scores.astype(np.float64)))
    np.testing.assert_array_equal(order, np.arange(rows.shape[0]))  # topk_cosine's order


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_all_lists_probed_gives_the_exact_set(dtype, index_dtype):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((120, 30)).astype(dtype)
    B = rng.standard_normal((90, 30)).astype(dtype)
    W = _pattern(90, 120, 0.1, 1, index_dtype)
    k = 400
    rows, cols, scores = topk_cosine_index(A, B, k, exclude=W, nlist=8, nprobe=8, dim=30,
                                           random_state=0)
    _check_contract(A, B, k, W, rows, cols, scores)
    S, r, c = brute_cosine(A, B, W.toarray())
    assert topk_recall(rows, cols, r[:k], c[:k]) == 1.0
    np.testing.assert_allclose(scores, S[r[:k], c[:k]], rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_recall_on_clustered_activations_at_default_knobs():
    rng = np.random.default_rng(1)
    A, B = _clustered((2000, 1500), 200, 150, rng)
    W = _pattern(1500, 2000, 0.01, 2)
    k = 6000
    rows, cols, scores = topk_cosine_index(A, B, k, exclude=W, random_state=0)
    _check_contract(A, B, k, W, rows, cols, scores)
    ref_rows, ref_cols, ref_scores = topk_cosine(A, B, k, exclude=W)
    assert topk_recall(rows, cols, ref_rows, ref_cols) >= 0.9
    assert scores.sum() >= 0.99 * ref_scores.sum()
    assert default_nprobe(default_nlist(2000)) < default_nlist(2000) / 2  # a real shortlist


def test_anticorrelated_pairs_are_found():
    """|cos| = 1 for B[r] = -A[c]: the mirrored index finds it with a handful of probes."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((1000, 48)).astype(np.float32)
    B = rng.standard_normal((800, 48)).astype(np.float32)
    planted = [(5, 17), (100, 999), (640, 0), (799, 512)]
    for r, c in planted:
        B[r] = -3.0 * A[c] + 0.01 * rng.standard_normal(48)
    B[300] = 2.0 * A[400]                                   # and one positive twin
    rows, cols, scores = topk_cosine_index(A, B, 5, nlist=64, nprobe=2, random_state=0)
    found = set(zip(rows.tolist(), cols.tolist()))
    assert found == set(planted) | {(300, 400)}
    assert (scores > 0.99).all()


def test_anticorrelated_pairs_with_nonnegative_output_side():
    """A mirror is needed as soon as one side has negative values (B alone nonnegative)."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((500, 40)).astype(np.float32)
    B = rng.random((400, 40)).astype(np.float32)
    A[9] = -B[33]                                           # anti-correlated, A side negative
    rows, cols, scores = topk_cosine_index(A, B, 1, nlist=32, nprobe=1, random_state=0)
    assert (int(rows[0]), int(cols[0])) == (33, 9) and scores[0] > 0.999


def test_zero_rows_score_zero_and_fill_the_answer():
    rng = np.random.default_rng(4)
    A = rng.random((50, 20)).astype(np.float32)
    B = rng.random((40, 20)).astype(np.float32)
    A[[3, 7]] = 0
    B[11] = 0
    k = 50 * 40                                             # every pair: zeros included
    rows, cols, scores = topk_cosine_index(A, B, k, nlist=4, nprobe=1, random_state=0)
    _check_contract(A, B, k, None, rows, cols, scores)
    zero = np.isin(cols, [3, 7]) | (rows == 11)
    assert zero.sum() == 2 * 40 + 50 - 2 and (scores[zero] == 0).all()


def test_small_or_nearly_full_layers_still_return_min_k_absent():
    rng = np.random.default_rng(5)
    A, B = rng.random((30, 10)).astype(np.float32), rng.random((20, 10)).astype(np.float32)
    W = _pattern(20, 30, 0.9, 0)
    rows, cols, scores = topk_cosine_index(A, B, 10**6, exclude=W, nlist=6, nprobe=1,
                                           random_state=0)
    _check_contract(A, B, 10**6, W, rows, cols, scores)
    assert rows.shape[0] == 20 * 30 - W.nnz
    empty = topk_cosine_index(A, B, 0, random_state=0)
    assert [x.shape for x in empty] == [(0,), (0,), (0,)]


def test_seeded_runs_are_identical_and_one_batch_sample_works():
    rng = np.random.default_rng(6)
    A, B = _clustered((400, 300), 100, 5, rng)
    a = topk_cosine_index(A, B, 500, random_state=3)
    b = topk_cosine_index(A, B, 500, random_state=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    one = topk_cosine_index(A[:, :1].copy(), B[:, :1].copy(), 10, random_state=0)  # S = 1
    assert one[0].shape == (10,) and np.allclose(one[2], 1.0)


@pytest.mark.parametrize("kw,match", [(dict(nlist=0), "nlist"), (dict(nprobe=0), "nprobe"),
                                      (dict(dim=1), "dim"), (dict(oversample=0), "oversample"),
                                      (dict(nlist=2.5), "nlist"), (dict(block_bytes=0),
                                                                   "block_bytes")])
def test_bad_knobs_raise(kw, match):
    A = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        topk_cosine_index(A, A, 2, **kw)


def test_bad_operands_raise():
    A = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="k must be"):
        topk_cosine_index(A, A, -1)
    with pytest.raises(ValueError, match="same number of samples"):
        topk_cosine_index(A, np.ones((4, 2), np.float32), 2)
    with pytest.raises(ValueError, match="exclude must have shape"):
        topk_cosine_index(A, A, 2, exclude=CSRMatrix.random(3, 4, density=0.5, random_state=0))
    with pytest.raises(ValueError, match="NaN"):
        topk_cosine_index(np.full((4, 3), np.nan, np.float32), A, 2)


def test_result_is_the_same_whatever_threads_room_or_threshold(monkeypatch, caplog):
    """The shortlist is 'every scanned pair at or above tau, best `want` kept': the outcome must
    not depend on the worker threads, on a first guess of room that overflows, or on a sampled
    threshold that keeps too few (it is lowered and the scan repeated)."""
    from ctre_sparse import cosine_index as ci

    rng = np.random.default_rng(7)
    A, B = _clustered((3000, 2500), 120, 40, rng)
    A -= 0.5  # negative values: the mirrored index too
    W = _pattern(2500, 3000, 0.004, 3)
    kw = dict(exclude=W, nlist=40, nprobe=6, random_state=1)
    ref = topk_cosine_index(A, B, 3000, **kw)
    _check_contract(A, B, 3000, W, *ref)
    no_room = lambda *a, f=ci._threshold: (f(*a)[0], f(*a)[1] * 0)  # noqa: E731
    variants = {"threads": ("_threads", lambda: 3), "one thread": ("_threads", lambda: 1),
                "no room": ("_threshold", no_room), "tau too high": ("SHORTLIST_MARGIN", 0.01)}
    for name, (attr, value) in variants.items():
        with monkeypatch.context() as mp, caplog.at_level(logging.DEBUG, "ctre_sparse"):
            caplog.clear()
            mp.setattr(ci, attr, value)
            got = topk_cosine_index(A, B, 3000, **kw)
        if name == "tau too high":
            assert "lowering it" in caplog.text
        for x, y in zip(ref, got):
            np.testing.assert_array_equal(x, y, err_msg=name)
