"""Activity-aware pruning: ``prune_magnitude(column_scale=...)`` against a NumPy oracle on every
backend, and ``TopologyUpdater(prune="activity")`` / ``CTREClassifier(prune=...)``: the
connections removed, the bias compensation, state, presets and hostile values."""

import numpy as np
import pytest

from conftest import csr_to_device, to_device, to_host
from ctre_sparse import CTREClassifier, CSRMatrix, prune_magnitude
from ctre_sparse.nn import SparseMLP
from ctre_sparse.testing import awkward_csr, random_csr
from ctre_sparse.topology import TopologyUpdater


def _oracle_kept(W, scale, fraction):
    """Positions kept: the floor(fraction * nnz) smallest |w| * scale[col] go, ties by position."""
    score = np.abs(W.data) * scale[W.indices]
    n_remove = int(np.floor(fraction * W.nnz))
    order = np.lexsort((np.arange(W.nnz), score))
    return np.sort(order[n_remove:])


def _scaled_prune(W, scale, fraction, backend):
    res = prune_magnitude(csr_to_device(W, backend), fraction,
                          column_scale=to_device(scale, backend), backend=backend)
    return (res.matrix.to_device("cpu"), to_host(res.kept), to_host(res.removed_rows),
            to_host(res.removed_cols))


@pytest.mark.parametrize("shape,density", [((1, 1), 1.0), ((20, 30), 0.1), ((50, 40), 0.5)])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_scaled_scores_match_the_oracle(backend, dtype, index_dtype, shape, density, fraction):
    W = random_csr(*shape, density, dtype=dtype, index_dtype=index_dtype, seed=11)
    scale = np.random.default_rng(1).uniform(0, 3, W.n_in).astype(dtype)
    scale[::4] = 0.0   # constant inputs: their connections score 0 and go first
    M, kept, r_rows, r_cols = _scaled_prune(W, scale, fraction, backend)
    want = _oracle_kept(W, scale, fraction)
    np.testing.assert_array_equal(kept, want)
    M.check_format(full_check=True)
    np.testing.assert_array_equal(M.data, W.data[want])     # the weights, not the scores
    np.testing.assert_array_equal(M.indices, W.indices[want])
    removed = np.setdiff1d(np.arange(W.nnz), want)
    np.testing.assert_array_equal(r_rows, W.row_indices()[removed])
    np.testing.assert_array_equal(r_cols, W.indices[removed])


def test_unit_scale_is_plain_magnitude_pruning(backend, dtype):
    W = CSRMatrix.random(40, 30, 0.3, random_state=5, dtype=dtype,
                         values=lambda rng, n: rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], n))
    plain = prune_magnitude(csr_to_device(W, backend), 0.37, backend=backend)
    M, kept, _, _ = _scaled_prune(W, np.ones(W.n_in, dtype), 0.37, backend)
    np.testing.assert_array_equal(kept, to_host(plain.kept))   # ties decided by position alike


@pytest.mark.parametrize("kind", ["empty_rows", "nnz0", "one_col", "zero_shape"])
def test_awkward_matrices(backend, dtype, kind):
    W = awkward_csr(kind, dtype=dtype, seed=2)
    scale = np.linspace(0, 1, W.n_in).astype(dtype)
    M, kept, _, _ = _scaled_prune(W, scale, 0.5, backend)
    np.testing.assert_array_equal(kept, _oracle_kept(W, scale, 0.5))


@pytest.mark.parametrize("scale,match", [
    (np.ones(29, np.float32), "column_scale"),                    # wrong length
    (np.ones((30, 1), np.float32), "column_scale"),               # 2-D
    (np.ones(30, np.float64), "column_scale"),                    # dtype of W is float32
    (np.r_[np.ones(29), np.nan].astype(np.float32), "finite and >= 0"),
    (np.r_[np.ones(29), np.inf].astype(np.float32), "finite and >= 0"),
    (np.r_[np.ones(29), -1.0].astype(np.float32), "finite and >= 0"),
    ([1.0] * 30, "column_scale"),
])
def test_bad_scales_are_refused(scale, match):
    W = random_csr(20, 30, 0.2, dtype=np.float32, seed=3)
    with pytest.raises(ValueError, match=match):
        prune_magnitude(W, 0.5, column_scale=scale)


# ----------------------------------------------------------------------- the updater
def _model_and_data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    model = SparseMLP([12, 20, 16, 3], epsilon=4, random_state=seed, dtype=dtype,
                      init="he_sparse")
    X = rng.standard_normal((12, 40)).astype(dtype)
    X[3] = 2.5   # a constant input feature
    return model, X


def test_updater_removes_the_oracles_connections_and_compensates_the_bias():
    model, X = _model_and_data()
    acts = [a.copy() for a in model.activations(X)]
    before = [(layer.W.copy(), layer.b.copy()) for layer in model.layers]
    upd = TopologyUpdater(0.3, "random", cosine_samples=10_000, grow_init="zeros",
                          prune="activity", backend="reference")
    upd.update(model, X, rng=np.random.default_rng(1))
    for layer, (W, b), A in zip(model.layers, before, acts):
        kept = _oracle_kept(W, A.std(axis=1), 0.3)
        dense, new = W.toarray(), layer.W.toarray()
        keep_mask = np.zeros(W.nnz, bool)
        keep_mask[kept] = True
        rows = W.row_indices()
        # every kept weight is in place; the removed ones are gone or regrown at 0
        np.testing.assert_array_equal(new[rows[kept], W.indices[kept]], W.data[kept])
        assert np.all(new[rows[~keep_mask], W.indices[~keep_mask]] == 0)
        assert np.count_nonzero(new) == kept.size and layer.W.nnz == W.nnz
        shift = np.zeros_like(b)
        np.add.at(shift, rows[~keep_mask], W.data[~keep_mask] * A.mean(axis=1)[
            W.indices[~keep_mask]])
        np.testing.assert_allclose(layer.b, b + shift, rtol=1e-12, atol=1e-12)
        # the point of the compensation: each pre-activation's mean over the samples is kept
        np.testing.assert_allclose((new @ A + layer.b[:, None]).mean(axis=1),
                                   (dense @ A + b[:, None]).mean(axis=1), atol=1e-10)
        assert shift.any()


def test_constant_inputs_lose_their_connections_first():
    model, X = _model_and_data()
    first = model.layers[0].W
    on_constant = int(np.count_nonzero(first.indices == 3))
    assert on_constant > 0
    upd = TopologyUpdater(0.3, "random", cosine_samples=10_000, grow_init="zeros",
                          prune="activity", backend="reference")
    upd.update(model, X, rng=np.random.default_rng(1))
    W = model.layers[0].W
    assert np.all(W.data[W.indices == 3] == 0)   # only regrown (zero) ones can sit there


@pytest.mark.parametrize("growth", ["random", "cosine", "ctre_sim", "rigl"])
def test_every_growth_runs_with_activity_pruning(growth):
    model, X = _model_and_data(np.float32)
    y = np.arange(X.shape[1]) % 3
    nnz = [layer.W.nnz for layer in model.layers]
    upd = TopologyUpdater(0.2, growth, cosine_samples=16, prune="activity",
                          grow_init="threshold")
    stats = upd.update(model, X, y, rng=np.random.default_rng(2))
    assert [layer.W.nnz for layer in model.layers] == nnz
    assert stats["n_pruned"] == stats["n_cosine"] + stats["n_random"] > 0
    if growth in ("random", "rigl"):   # the activation pass does not make them cosine growth
        assert stats["cosine_modes"] == [None] * model.n_layers


def test_magnitude_pruning_is_unchanged_by_the_option():
    """prune="magnitude" (and the threshold rule's quantile) reproduce the plain update."""
    runs = []
    for prune in (None, "magnitude"):
        model, X = _model_and_data(np.float32, seed=3)
        kw = {} if prune is None else {"prune": prune}
        upd = TopologyUpdater(0.3, "ctre_sim", cosine_samples=40, grow_init="threshold", **kw)
        upd.update(model, X, rng=np.random.default_rng(5))
        runs.append([(layer.W.toarray(), layer.b.copy()) for layer in model.layers])
    for (a, ab), (b, bb) in zip(*runs):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ab, bb)


def test_updater_state_and_validation():
    with pytest.raises(ValueError, match="prune must be one of"):
        TopologyUpdater(0.2, prune="gradient")
    state = TopologyUpdater(0.2, prune="activity").state_dict()
    assert state["prune"] == "activity"
    other = TopologyUpdater(0.2)
    other.load_state_dict(state)
    assert other.prune == "activity" and "prune='activity'" in repr(other)
    del state["prune"]                       # a file written before the option existed
    other.load_state_dict(state)
    assert other.prune == "magnitude"
    with pytest.raises(ValueError, match="prune must be one of"):
        other.load_state_dict({**state, "prune": "os.system"})


# --------------------------------------------------------------------- the estimator
def test_the_estimators_lists_of_rules_are_the_updaters():
    from ctre_sparse import _params
    from ctre_sparse.topology import updater

    assert _params.PRUNES == updater.PRUNES and _params.GROW_INITS == updater.GROW_INITS


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)


def test_presets_and_explicit_values_reach_the_updater():
    X, y = _data()
    got = {}
    for kw in ({}, {"preset": "paper"}, {"prune": "magnitude"},
               {"preset": "paper", "prune": "activity"}):
        est = CTREClassifier((16,), epsilon=2, max_epochs=2, random_state=0, **kw).fit(X, y)
        got[str(kw)] = est._trainer.updater.prune
    assert got == {"{}": "activity", "{'preset': 'paper'}": "magnitude",
                   "{'prune': 'magnitude'}": "magnitude",
                   "{'preset': 'paper', 'prune': 'activity'}": "activity"}


@pytest.mark.parametrize("value", ["gradient", 1, True, ""])
def test_bad_prune_is_refused_at_fit(value):
    X, y = _data()
    with pytest.raises(ValueError, match="prune"):
        CTREClassifier((8,), max_epochs=1, prune=value).fit(X, y)


def test_partial_fit_may_change_prune_and_files_keep_it(tmp_path):
    from ctre_sparse._estimator_state import with_legacy_defaults

    X, y = _data()
    est = CTREClassifier((16,), epsilon=2, random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    est.set_params(prune="magnitude").partial_fit(X, y)
    assert est._trainer.updater.prune == "magnitude"
    est.save(tmp_path / "m.npz")
    back = CTREClassifier.load(tmp_path / "m.npz")
    assert back.prune == "magnitude" and back._trainer.updater.prune == "magnitude"
    assert with_legacy_defaults({"preset": "default"})["prune"] == "magnitude"
