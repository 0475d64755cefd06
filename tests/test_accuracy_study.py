"""benchmarks/accuracy_study.py: which recorded runs count as the current default
(``--current``), and the dense baseline's validation rows."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks import accuracy_study as study


def _record(params, resolved):
    return {"dataset": "digits", "method": "ctre_seq", "epsilon": 1.0, "epochs": 100,
            "params": params, "resolved": resolved}


def _current(params):
    return study.resolved_params(params, 100, "ctre_seq", "digits", 1.0)


def test_a_run_of_the_current_default_counts_as_current():
    params = {"preset": "default"}
    assert study.recorded_resolution(_record(params, _current(params))) == _current(params)


def test_runs_from_before_weight_decay_and_dropout_followed_the_preset():
    """Such records lack both keys: they trained with the estimator's fixed 1e-4 and 0.0, or
    with what their params gave, and are not the current default's runs."""
    params = {"preset": "default"}
    old = {k: v for k, v in _current(params).items() if k not in ("weight_decay", "dropout")}
    rec = study.recorded_resolution(_record(params, old))
    assert (rec["weight_decay"], rec["dropout"]) == (1e-4, 0.0)
    assert rec != _current(params)
    screened = {"preset": "default", "dropout": 0.05}          # the screen of the new value
    rec = study.recorded_resolution(_record(screened, {**old, "weight_decay": 1e-3}))
    assert rec == _current(screened) == _current(params)


def test_a_run_without_dropout_is_not_the_current_default():
    params = {"preset": "default"}
    before = {**_current(params), "dropout": 0.0}
    assert study.recorded_resolution(_record(params, before)) != _current(params)


def test_runs_from_before_prune_pruned_by_magnitude():
    params = {"preset": "default"}
    old = {k: v for k, v in _current(params).items() if k != "prune"}
    rec = study.recorded_resolution(_record(params, old))
    assert rec["prune"] == "magnitude" and rec != _current(params)
    screened = {"preset": "default", "prune": "activity"}     # a screen of the new value
    assert study.recorded_resolution(_record(screened, old)) == _current(params)


@pytest.mark.parametrize("seed", [0, 7])
def test_the_dense_baseline_holds_out_the_rows_the_estimator_holds_out(seed):
    """The dense MLP is scored on the validation rows of CTREClassifier(random_state=seed)."""
    from ctre_sparse import CTREClassifier

    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((600, 5)).astype(np.float32), np.arange(600) % 4
    est = CTREClassifier((8,), epsilon=2, max_epochs=1, random_state=seed).fit(X, y)
    rows = study.validation_rows(y, seed)
    np.testing.assert_array_equal(np.sort(rows), np.sort(est._val_idx))
    assert rows.size == 60


def _args(**kw):
    base = {"datasets": None, "seeds": [0, 1, 2], "methods": None, "epochs": None,
            "dense_config": None, "config": [], "epsilons": None, "scaling": "standard",
            "commits": None, "current": False}
    return type("Args", (), {**base, **kw})()


def test_reports_read_each_data_sets_study_length_unless_epochs_names_one():
    """A 300-epoch run of digits is another table than the study's 100-epoch ones."""
    rows = [{**_record({"preset": "default"}, {}), "config": "default", "seed": 0,
             "epochs": e} for e in (100, 300)]
    assert [r["epochs"] for r in study.select(rows, _args())] == [100]
    assert [r["epochs"] for r in study.select(rows, _args(epochs=300))] == [300]


@pytest.mark.parametrize("name", study.CHECK_SETS)
def test_the_check_sets_have_the_shapes_the_learning_rate_follows(name):
    """The check sets load with the (features, classes) that SHAPES gives the network, and
    stratified splits. ``usps_small`` needs the USPS file of ../shared/data."""
    data_dir = Path(__file__).resolve().parents[2] / "shared" / "data"
    if name == "usps_small" and not (data_dir / "usps" / "usps.npz").is_file():
        pytest.skip(f"{data_dir / 'usps' / 'usps.npz'} is not present")
    X, y, X_te, y_te = study.load(name, data_dir)
    n_features, n_classes = study.SHAPES[name]
    assert X.shape[1] == X_te.shape[1] == n_features and X.dtype == np.float32
    assert np.unique(y).size == np.unique(y_te).size == n_classes
    assert 1000 <= X.shape[0] + X_te.shape[0] <= 1600
