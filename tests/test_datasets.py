"""Data loaders: small files written to tmp_path, the embedded digits, and the
real MADELON when the shared data folder is present."""

from pathlib import Path

import numpy as np
import pytest

from ctre_sparse import datasets
from ctre_sparse.datasets import (Dataset, fetch_openml_cached, load_csv, load_dataset,
                                  load_digits, load_madelon, load_mat, load_npz, standardize)

MADELON_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "madelon"


def _write_madelon(directory, n_train=12, n_valid=6, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("valid", n_valid)):
        X = rng.integers(400, 600, size=(n, n_features))
        y = np.where(np.arange(n) % 2 == 0, -1, 1)
        np.savetxt(directory / f"madelon_{part}.data", X, fmt="%d", delimiter=" ")
        np.savetxt(directory / f"madelon_{part}.labels", y, fmt="%d")
    return directory


def test_digits_split_and_shapes():
    ds = load_digits()
    assert ds.X_train.shape == (1347, 64) and ds.X_test.shape == (450, 64)
    assert ds.X_train.dtype == np.float32
    assert ds.image_shape == (8, 8)
    assert set(ds.classes) == set(range(10))
    # stratified: every class in the test part
    assert set(np.unique(ds.y_test)) == set(range(10))
    again = load_digits()
    np.testing.assert_array_equal(ds.X_train, again.X_train)


def test_standardize_uses_training_statistics():
    X_train = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 3.0]])
    X_test = np.array([[4.0, 7.0, 2.0]])
    tr, te, mean, scale = standardize(X_train, X_test)
    np.testing.assert_allclose(mean, [1.0, 5.0, 2.0])
    np.testing.assert_allclose(scale, [1.0, 1.0, 1.0])   # constant column -> scale 1
    np.testing.assert_allclose(tr, [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]])
    np.testing.assert_allclose(te, [[3.0, 2.0, 0.0]])
    assert tr.dtype == np.float32


def test_dataset_standardized_keeps_metadata():
    ds = load_digits().standardized()
    assert ds.image_shape == (8, 8) and ds.name == "digits"
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0.0, atol=1e-5)
    assert np.all(np.isfinite(ds.X_test))


def test_madelon_text_format(tmp_path):
    d = _write_madelon(tmp_path / "madelon")
    ds = load_madelon(d)
    assert ds.X_train.shape == (12, 5) and ds.X_test.shape == (6, 5)
    assert set(ds.y_train) == {-1, 1}
    expected = np.loadtxt(d / "madelon_train.data")
    np.testing.assert_array_equal(ds.X_train, expected.astype(np.float32))
    assert ds.name == "madelon" and ds.image_shape is None


def test_madelon_missing_file_names_it(tmp_path):
    d = _write_madelon(tmp_path / "m")
    (d / "madelon_valid.labels").unlink()
    with pytest.raises(FileNotFoundError, match="madelon_valid.labels"):
        load_madelon(d)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_madelon(tmp_path / "nowhere")


def test_madelon_row_mismatch(tmp_path):
    d = _write_madelon(tmp_path / "m")
    np.savetxt(d / "madelon_train.labels", [1, -1, 1], fmt="%d")
    with pytest.raises(ValueError, match="labels"):
        load_madelon(d)


@pytest.mark.skipif(not MADELON_DIR.exists(),
                    reason=f"MADELON not found at {MADELON_DIR} (shared data folder absent)")
def test_real_madelon_matches_release_checksums():
    ds = load_madelon(MADELON_DIR)
    assert ds.X_train.shape == (2000, 500) and ds.X_test.shape == (600, 500)
    # check-sums of madelon.param: sum of all feature values per part
    assert ds.X_train.sum(dtype=np.float64) == 488083511.0
    assert ds.X_test.sum(dtype=np.float64) == 146395833.0
    assert np.sum(ds.y_train == 1) == 1000 and np.sum(ds.y_test == -1) == 300


@pytest.mark.parametrize("keys", [("X", "Y"), ("fea", "gnd")])
def test_mat(tmp_path, keys):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 7))
    y = np.repeat([1, 2], 20).reshape(-1, 1)      # MATLAB column vector
    path = tmp_path / "toy.mat"
    savemat(path, {keys[0]: X, keys[1]: y})
    ds = load_mat(path, test_size=0.25)
    assert ds.X_train.shape == (30, 7) and ds.X_test.shape == (10, 7)
    assert ds.y_train.dtype == np.int64 and set(ds.y_train) == {1, 2}
    assert ds.name == "toy"
    # rows are kept intact by the split
    full = np.concatenate([ds.X_train, ds.X_test])
    np.testing.assert_allclose(np.sort(full.sum(axis=1)), np.sort(X.sum(axis=1)), rtol=1e-5)


def test_mat_wrong_keys(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "bad.mat", {"data": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="X/Y or fea/gnd"):
        load_mat(tmp_path / "bad.mat")


def test_npz_single_and_presplit(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 3)).astype(np.float32)
    y = np.array(["a", "b"] * 10)
    np.savez(tmp_path / "one.npz", X=X, y=y)
    ds = load_npz(tmp_path / "one.npz", test_size=0.5)
    assert ds.X_train.shape == (10, 3) and set(ds.y_test) == {"a", "b"}
    np.savez(tmp_path / "two.npz", X_train=X[:15], y_train=y[:15], X_test=X[15:], y_test=y[15:])
    ds2 = load_npz(tmp_path / "two.npz")
    np.testing.assert_array_equal(ds2.X_test, X[15:])
    np.testing.assert_array_equal(ds2.y_train, y[:15])


def test_csv_header_and_label_column(tmp_path):
    path = tmp_path / "toy.csv"
    lines = ["f1,label,f2"] + [f"{i},{'yes' if i % 2 else 'no'},{i * 0.5}" for i in range(20)]
    path.write_text("\n".join(lines) + "\n")
    ds = load_csv(path, label_column=1, test_size=0.25)
    assert ds.X_train.shape == (15, 2)
    assert set(ds.y_train) == {"yes", "no"}
    row = ds.X_train[0]
    assert row[1] == row[0] * 0.5     # label column removed, feature order kept


def test_csv_numeric_labels_last_column(tmp_path):
    path = tmp_path / "num.csv"
    path.write_text("".join(f"{i},{i + 1},{i % 3}\n" for i in range(30)))
    ds = load_csv(path)
    assert ds.y_train.dtype == np.int64 and set(ds.y_train) == {0, 1, 2}
    assert ds.X_train.shape[1] == 2


def test_csv_bad_values(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,2,0\n3,x,1\n")
    with pytest.raises(ValueError, match="non-numeric"):
        load_csv(path)


def test_openml_cache_hit_does_not_download(tmp_path, monkeypatch):
    import sklearn.datasets

    def no_network(*args, **kwargs):
        raise AssertionError("fetch_openml must not be called on a cache hit")

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", no_network)
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.array(["1", "2"] * 10)
    np.savez(tmp_path / "toyset-active.npz", X=X, y=y)
    ds = fetch_openml_cached("toyset", tmp_path)
    assert ds.name == "toyset" and ds.X_train.shape == (15, 2)


def test_openml_cache_miss_fetches_once_and_saves(tmp_path, monkeypatch):
    import sklearn.datasets
    from sklearn.utils import Bunch

    calls = []

    def fake_fetch(name, **kwargs):
        calls.append((name, kwargs.get("data_home")))
        return Bunch(data=np.ones((12, 3)), target=np.array(["x", "y"] * 6, dtype=object))

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", fake_fetch)
    ds = fetch_openml_cached("fake", tmp_path)
    ds_again = fetch_openml_cached("fake", tmp_path)
    assert len(calls) == 1 and calls[0][0] == "fake"
    assert (tmp_path / "fake-active.npz").exists()
    np.testing.assert_array_equal(ds.y_train, ds_again.y_train)
    assert ds.y_train.dtype.kind == "U"
    # the cache is readable without pickle
    np.load(tmp_path / "fake-active.npz", allow_pickle=False)["y"]


def test_load_dataset_resolution(tmp_path, monkeypatch):
    assert load_dataset("digits").image_shape == (8, 8)
    d = _write_madelon(tmp_path / "root" / "madelon")
    assert load_dataset(d).name == "madelon"
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "root"))
    assert load_dataset("madelon").X_train.shape == (12, 5)
    np.savez(tmp_path / "p.npz", X=np.zeros((8, 2)), y=np.array([0, 1] * 4))
    assert load_dataset(tmp_path / "p.npz").name == "p"


def test_load_dataset_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_dataset(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset(tmp_path / "file.xyz")
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="madelon"):
        load_dataset("madelon")


def test_dataset_repr_and_properties():
    ds = Dataset(np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1]), np.zeros((2, 3), np.float32),
                 np.array([0, 1]), "z")
    assert ds.n_features == 3 and list(ds.classes) == [0, 1]
    assert "z" in repr(ds)
