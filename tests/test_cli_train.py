"""``ctre-sparse train`` end to end (tiny runs), the progress bar, and the figures."""

import io
import json

import numpy as np
import pytest

from ctre_sparse.cli import main
from ctre_sparse.cli.train import ProgressBar

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_outputs(out, epochs):
    history = json.loads((out / "history.json").read_text())
    assert history["epochs"] == epochs and len(history["history"]) == epochs
    assert 0.0 <= history["test_accuracy"] <= 1.0
    assert 0.0 < history["density"] <= 1.0
    with np.load(out / "model.npz", allow_pickle=False) as z:
        assert str(z["format"]) == "ctre_sparse.CTREClassifier"
        assert json.loads(str(z["meta_json"]))["n_iter"] == epochs
    for name in ("learning_curves.png", "input_connectivity.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    return history


def test_train_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--epochs", "3", "--hidden", "32", "--epsilon", "5", "--lr", "0.1",
                 "--out", str(out), "--seed", "1"])
    assert code == 0
    history = _check_outputs(out, 3)
    assert history["dataset"] == "digits" and history["layer_sizes"] == [64, 32, 10]
    assert history["test_accuracy"] > 0.7          # 3 epochs already learn the digits
    captured = capsys.readouterr()
    assert "epoch 3/3" in captured.err and "[" in captured.err       # progress on stderr
    assert "test accuracy" in captured.out and "connections" in captured.out
    from ctre_sparse import CTREClassifier

    model = CTREClassifier.load(out / "model.npz")
    assert model.n_iter_ == 3 and model.hidden_layer_sizes == (32,)
    assert model.weight_decay is None and model._trainer.optimizer.weight_decay == 1e-3
    assert model.dropout is None and model._trainer.model.dropout == 0.05
    assert model.grad_clip is None and model._trainer.optimizer.clip.factor == 5.0
    assert model.prune is None and model._trainer.updater.prune == "activity"


def test_train_weight_decay_and_dropout_flags_reach_the_model(tmp_path):
    out = tmp_path / "wd"
    assert main(["train", "--epochs", "1", "--hidden", "16", "--epsilon", "5", "--quiet",
                 "--weight-decay", "0.02", "--dropout", "0.2", "--preset", "paper",
                 "--grad-clip", "3", "--prune", "activity", "--out", str(out)]) == 0
    from ctre_sparse import CTREClassifier

    model = CTREClassifier.load(out / "model.npz")
    assert model.weight_decay == 0.02 and model._trainer.optimizer.weight_decay == 0.02
    assert model.dropout == 0.2 and model._trainer.model.dropout == 0.2
    assert model.grad_clip == 3.0 and model._trainer.optimizer.clip.factor == 3.0
    assert model.prune == "activity" and model._trainer.updater.prune == "activity"
    assert model.preset == "paper" and model._trainer.optimizer.learning_rate == 0.01


def test_train_csv_and_resume(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    path = tmp_path / "toy.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.5f")
    out = tmp_path / "csvrun"
    args = ["train", "--dataset", str(path), "--hidden", "8", "--epsilon", "2",
            "--growth", "random", "--out", str(out), "--quiet", "--checkpoint-every", "1"]
    assert main(args + ["--epochs", "2"]) == 0
    _check_outputs(out, 2)
    # a longer run picks up the checkpoint of the short one
    assert main(args + ["--epochs", "4", "--resume"]) == 0
    history = _check_outputs(out, 4)
    assert history["dataset"] == "toy"
    assert capsys.readouterr().err.count("epoch ") == 0           # --quiet: no bar


def test_train_errors_exit_nonzero(tmp_path, capsys):
    assert main(["train", "--dataset", str(tmp_path / "absent.npz"), "--out",
                 str(tmp_path / "o")]) == 1
    assert "absent.npz" in capsys.readouterr().err
    assert main(["train", "--hidden", "8,x", "--out", str(tmp_path / "o")]) == 1
    assert "--hidden" in capsys.readouterr().err
    assert main(["train", "--epsilon", "-2", "--epochs", "1", "--out",
                 str(tmp_path / "o")]) == 1
    assert "epsilon" in capsys.readouterr().err


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _record(epoch, val=0.5):
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": 0.5,
            "val_accuracy": val, "seconds": 0.1}


def test_progress_bar_non_tty_one_line_per_epoch():
    stream = io.StringIO()
    bar = ProgressBar(4, stream=stream, width=8)
    for e in (1, 2, 3, 4):
        assert bar(None, _record(e)) is False
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert lines[1].startswith("epoch 2/4 [####....]") and "val acc 0.5000" in lines[1]
    assert "val acc" not in bar.format(_record(1, val=None))


def test_progress_bar_tty_redraws_in_place():
    stream = _Tty()
    bar = ProgressBar(2, stream=stream, width=4)
    bar(None, _record(1))
    bar(None, _record(2))
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_plots_write_pngs(tmp_path):
    from ctre_sparse.plots import plot_input_connectivity, plot_learning_curves

    history = [_record(e) | {"n_cosine": 5, "n_random": 1} for e in (1, 2, 3)]
    for path in (plot_learning_curves(history, tmp_path / "lc.png"),
                 plot_input_connectivity(np.full(64, 1 / 64), tmp_path / "img.png",
                                         image_shape=(8, 8)),
                 plot_input_connectivity(np.linspace(0, 1, 30), tmp_path / "bars.png")):
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="image_shape"):
        plot_input_connectivity(np.ones(10), tmp_path / "x.png", image_shape=(3, 3))
