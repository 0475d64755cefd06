"""benchmarks/accuracy_study.py: which recorded runs count as the current default
(``--current``), and the dense baseline's validation rows."""

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
