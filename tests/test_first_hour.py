"""What a new user meets in the first hour: the main command, and one clear line per mistake.

Each failure a user can cause from the command line ends with exit code 1 and one line
``ctre-sparse: error: ...`` naming the option or file, never a traceback.
"""

import json
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

from ctre_sparse import CTREClassifier
from ctre_sparse.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("ctre-sparse: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_main_command_default_writes_every_output(tmp_path):
    # the README's main command with its defaults (40 epochs on the embedded digits), as a
    # separate process exactly like a user's shell runs it
    out = tmp_path / "digits"
    proc = subprocess.run([sys.executable, "-m", "ctre_sparse", "train", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    history = json.loads((out / "history.json").read_text())
    assert history["epochs"] == 40 and len(history["history"]) == 40
    assert history["test_accuracy"] > 0.9
    for name in ("model.npz", "checkpoint.npz"):
        with np.load(out / name, allow_pickle=False) as z:
            assert str(z["format"]) == "ctre_sparse.CTREClassifier"
    for name in ("learning_curves.png", "input_connectivity.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    assert "checkpoint.npz" in proc.stdout.splitlines()[-1]          # the "wrote ..." line
    assert CTREClassifier.load(out / "model.npz").n_iter_ == 40


def test_openml_without_network_is_one_line(monkeypatch, tmp_path, capsys):
    import sklearn.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", offline)
    monkeypatch.setenv("CTRE_SPARSE_DATA", str(tmp_path / "data"))
    code = main(["train", "--dataset", "openml:iris", "--out", str(tmp_path / "run")])
    assert code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "openml:iris" in line and "network" in line and "cached copy" in line


def test_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    assert main(["train", "--out", str(target), "--epochs", "1"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {target}" in line and "not a folder" in line
    assert target.read_text() == "not a folder"                      # nothing lost


def test_parameters_are_checked_before_the_data_loads(monkeypatch, tmp_path, capsys):
    from ctre_sparse import datasets

    def no_load(*args, **kwargs):
        raise AssertionError("the data set must not be loaded before the parameters pass")

    monkeypatch.setattr(datasets, "load_dataset", no_load)
    assert main(["train", "--zeta", "3", "--out", str(tmp_path / "run")]) == 1
    captured = capsys.readouterr()
    assert "zeta must be in [0, 1), got 3.0" in _one_error_line(captured.err)
    assert "training on" not in captured.err
    assert not (tmp_path / "run").exists()


def test_resume_without_checkpoint_says_so(tmp_path, capsys):
    out = tmp_path / "typo"
    code = main(["train", "--resume", "--out", str(out), "--epochs", "1", "--hidden", "16",
                 "--quiet"])
    assert code == 0
    err = capsys.readouterr().err
    assert f"--resume: no checkpoint in {out}" in err and "from scratch" in err


def test_resume_true_without_checkpoint_warns(tmp_path, caplog):
    X, y = _digits()
    clf = CTREClassifier(hidden_layer_sizes=(16,), epsilon=5, max_epochs=1, random_state=0,
                         checkpoint_dir=tmp_path / "none")
    with caplog.at_level("WARNING", logger="ctre_sparse.estimator"):
        clf.fit(X[:200], y[:200], resume=True)
    assert any("no checkpoint" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("content, reason", [
    (b"garbage, not a model\n", "not an .npz archive"),
    (b"", "it is empty"),
    (None, "truncated or corrupt"),                  # the first half of a real model file
])
def test_load_corrupt_file_says_what_is_wrong(tmp_path, content, reason):
    path = tmp_path / "model.npz"
    if content is None:
        good = tmp_path / "good.npz"
        X, y = _digits()
        CTREClassifier(hidden_layer_sizes=(8,), epsilon=2, max_epochs=1,
                       random_state=0).fit(X[:100], y[:100]).save(good)
        data = good.read_bytes()
        content = data[:len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a valid ctre_sparse model file") as info:
        CTREClassifier.load(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    assert "allow_pickle" not in str(info.value)


def test_load_pickled_npy_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "model.npz"
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    path.write_bytes((tmp_path / "obj.npy").read_bytes())
    with pytest.raises(ValueError, match="not a valid ctre_sparse model file"):
        CTREClassifier.load(path)


def test_load_a_folder(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        CTREClassifier.load(tmp_path)


def test_cli_load_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "data.npz"
    bad.write_bytes(b"PK\x03\x04 but then nothing")
    assert main(["train", "--dataset", str(bad), "--out", str(tmp_path / "run")]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "data.npz" in line or "zip" in line.lower()


def _digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def test_unscaled_digits_learn_by_default():
    # raw pixel intensities 0..16, as scikit-learn ships them: MLPClassifier learns them, and so
    # must the estimator with its defaults (the features are standardized inside)
    X, y = _digits()
    kw = dict(hidden_layer_sizes=(128,), epsilon=10, learning_rate=0.05, max_epochs=15,
              random_state=0)
    clf = CTREClassifier(**kw).fit(X[:1400], y[:1400])
    assert clf.score(X[1400:], y[1400:]) > 0.85
    assert np.allclose(clf.input_mean_, X[:1400].mean(axis=0))
    scaled = (X - clf.input_mean_) / clf.input_scale_
    same = CTREClassifier(**kw, standardize=False).fit(scaled[:1400], y[:1400])
    assert np.array_equal(same.input_mean_, np.zeros(64))
    # the same network on data scaled by hand: the same scaled inputs, up to float32 rounding
    assert abs(same.score(scaled[1400:], y[1400:]) - clf.score(X[1400:], y[1400:])) < 0.05


def test_scaling_is_saved_with_the_model(tmp_path):
    X, y = _digits()
    clf = CTREClassifier(hidden_layer_sizes=(16,), epsilon=4, max_epochs=2,
                         random_state=0).fit(X[:300], y[:300])
    clf.save(tmp_path / "m.npz")
    again = CTREClassifier.load(tmp_path / "m.npz")
    assert np.array_equal(again.input_scale_, clf.input_scale_)
    assert np.array_equal(again.predict_proba(X[300:400]), clf.predict_proba(X[300:400]))


def test_standardize_must_be_a_bool():
    with pytest.raises(ValueError, match="standardize must be True or False, got 'yes'"):
        CTREClassifier(standardize="yes").validate_params()


def test_messages_show_values_as_typed():
    with pytest.raises(ValueError) as info:
        CTREClassifier(growth=np.str_("foo")).validate_params()
    assert "got 'foo'" in str(info.value) and "np.str_" not in str(info.value)


def test_small_wording(capsys, tmp_path):
    from ctre_sparse.cli import build_parser
    from ctre_sparse.cli.train import _plural

    assert _plural(1, "class") == "1 class" and _plural(10, "class") == "10 classes"
    assert _plural(1, "feature") == "1 feature" and _plural(64, "feature") == "64 features"
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    device = next(a for a in train._actions if "--device" in a.option_strings)
    assert device.help and "cuda" in device.help
