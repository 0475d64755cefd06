"""Data loaders for training and benchmarks.

Every loader returns a :class:`Dataset` with a train and a test part. Features
are float32 arrays of shape ``(n_samples, n_features)`` (sample-major, as
scikit-learn expects; the estimator transposes them once to the feature-major
layout of the kernels); labels keep their original values (ints or strings).
Nothing is standardized by the loaders: call :meth:`Dataset.standardized`
(or :func:`standardize`) to scale with statistics of the training part only.

Sources
-------
``load_digits``
    scikit-learn's bundled 8x8 digits (1797 images, 10 classes): the embedded
    default, no download.
``load_madelon``
    The UCI text format of MADELON (``madelon_train.data/.labels``,
    ``madelon_valid.data/.labels``; labels -1/+1). The ``valid`` part is the
    test set (the challenge's test labels were never published).
``load_mat``, ``load_npz``, ``load_csv``
    Files of your own (see each function for the expected keys / layout).
``fetch_openml_cached``
    :func:`sklearn.datasets.fetch_openml` behind a local ``.npz`` cache.
``load_dataset``
    Resolves a spec string: ``"digits"``, ``"madelon"``, ``"openml:NAME"``
    or a path (a directory in MADELON format, a ``.mat``, ``.npz`` or
    ``.csv`` file).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import warnings
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Dataset", "standardize", "load_digits", "load_madelon", "load_mat", "load_npz",
           "load_csv", "fetch_openml_cached", "load_dataset", "default_data_dir"]

DATA_ENV = "CTRE_SPARSE_DATA"
DEFAULT_TEST_SIZE = 0.25


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split.

    Attributes
    ----------
    X_train, X_test : ndarray of float32, shape (n_samples, n_features)
    y_train, y_test : ndarray, shape (n_samples,)
        Labels as found in the source (ints or strings).
    name : str
        Short name (``"digits"``, ``"madelon"``, a file stem, ...).
    image_shape : tuple of int or None
        ``(height, width)`` when each sample is an image (``(8, 8)`` for the
        digits), else None; used to draw input connectivity as an image.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    image_shape: tuple | None = None

    @property
    def n_features(self):
        """Number of input features."""
        return int(self.X_train.shape[1])

    @property
    def classes(self):
        """Sorted unique labels of the training part."""
        return np.unique(self.y_train)

    def standardized(self):
        """Return a copy scaled to zero mean / unit variance with training statistics.

        Examples
        --------
        >>> ds = load_digits().standardized()
        >>> bool(abs(ds.X_train.mean()) < 1e-5)
        True
        """
        X_train, X_test, _, _ = standardize(self.X_train, self.X_test)
        return dataclasses.replace(self, X_train=X_train, X_test=X_test)

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, train={self.X_train.shape}, "
                f"test={self.X_test.shape}, classes={len(self.classes)}, "
                f"image_shape={self.image_shape})")


def standardize(X_train, X_test=None):
    """Standardize with the training part's mean and standard deviation.

    Features that are constant on the training part get scale 1 (they stay
    constant instead of becoming NaN).

    Parameters
    ----------
    X_train : array, shape (n_train, n_features)
    X_test : array, shape (n_test, n_features), optional

    Returns
    -------
    X_train_s, X_test_s : ndarray of float32
        ``X_test_s`` is None when ``X_test`` is None.
    mean, scale : ndarray of float64, shape (n_features,)

    Examples
    --------
    >>> a, b, mean, scale = standardize(np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[4.0, 1.0]]))
    >>> a.tolist(), b.tolist(), scale.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[3.0, 0.0]], [1.0, 1.0])
    """
    X_train = np.asarray(X_train, dtype=np.float64)
    mean = X_train.mean(axis=0)
    scale = X_train.std(axis=0)
    scale[scale == 0] = 1.0
    train_s = ((X_train - mean) / scale).astype(np.float32)
    test_s = None
    if X_test is not None:
        test_s = ((np.asarray(X_test, dtype=np.float64) - mean) / scale).astype(np.float32)
    return train_s, test_s, mean, scale


def _split(X, y, name, *, test_size, random_state, image_shape=None):
    """Stratified train/test split of one (X, y) pair into a Dataset."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 else None
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, stratify=stratify,
                                              random_state=random_state)
    return Dataset(X_tr, y_tr, X_te, y_te, name, image_shape)


def _features(X, source):
    """Dense float32 (n, d) features, densifying scipy sparse input."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D feature matrix, got shape {X.shape}")
    return np.ascontiguousarray(X)


def _labels(y, n_samples, source):
    """1-D labels; (n, 1) / (1, n) column vectors are flattened."""
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(f"{source}: expected {n_samples} labels in a vector, got shape {y.shape}")
    if y.dtype.kind == "f" and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return y


def _require(path, what):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (expected {what})")
    return path


def load_digits(*, test_size=DEFAULT_TEST_SIZE, random_state=0):
    """scikit-learn's bundled 8x8 handwritten digits, split stratified.

    Parameters
    ----------
    test_size : float, default 0.25
        Fraction of the 1797 images held out as the test part.
    random_state : int, default 0
        Seed of the split.

    Returns
    -------
    Dataset
        64 features (pixel intensities 0..16), 10 classes, ``image_shape=(8, 8)``.

    Examples
    --------
    >>> ds = load_digits()
    >>> ds.X_train.shape, ds.X_test.shape, ds.image_shape
    ((1347, 64), (450, 64), (8, 8))
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    X = _features(bunch.data, "digits")
    y = bunch.target.astype(np.int64)
    return _split(X, y, "digits", test_size=test_size, random_state=random_state,
                  image_shape=(8, 8))


def _read_madelon_part(directory, part):
    data = _require(directory / f"madelon_{part}.data",
                    "the MADELON text format: one example per line, space-separated integers")
    labels = _require(directory / f"madelon_{part}.labels",
                      "the MADELON labels: one -1/+1 label per line")
    X = np.loadtxt(data, dtype=np.float32, ndmin=2)
    y = np.loadtxt(labels, dtype=np.int64, ndmin=1)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{data}: {X.shape[0]} examples but {labels} has {y.shape[0]} labels")
    return X, y


def load_madelon(directory):
    """MADELON in its UCI text format.

    Parameters
    ----------
    directory : str or Path
        Folder holding ``madelon_train.data``, ``madelon_train.labels``,
        ``madelon_valid.data`` and ``madelon_valid.labels``.

    Returns
    -------
    Dataset
        Train = the 2000 training examples, test = the 600 ``valid`` ones;
        labels -1 / +1 as in the files.

    Raises
    ------
    FileNotFoundError
        Naming the first missing file.
    """
    directory = _require(directory, "a folder with madelon_train.data/.labels and "
                                    "madelon_valid.data/.labels")
    X_train, y_train = _read_madelon_part(directory, "train")
    X_test, y_test = _read_madelon_part(directory, "valid")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"{directory}: train has {X_train.shape[1]} features, "
                         f"valid has {X_test.shape[1]}")
    logger.info("loaded MADELON from %s: train %s, test %s", directory, X_train.shape,
                X_test.shape)
    return Dataset(X_train, y_train, X_test, y_test, "madelon")


def _from_arrays(arrays, path, *, x_keys, y_keys, test_size, random_state):
    """Build a Dataset from a mapping holding train/test keys or one X/y pair."""
    name = Path(path).stem
    if all(k in arrays for k in ("X_train", "y_train", "X_test", "y_test")):
        X_train = _features(arrays["X_train"], str(path))
        X_test = _features(arrays["X_test"], str(path))
        y_train = _labels(arrays["y_train"], X_train.shape[0], str(path))
        y_test = _labels(arrays["y_test"], X_test.shape[0], str(path))
        return Dataset(X_train, y_train, X_test, y_test, name)
    for xk, yk in zip(x_keys, y_keys):
        if xk in arrays and yk in arrays:
            X = _features(arrays[xk], str(path))
            y = _labels(arrays[yk], X.shape[0], str(path))
            return _split(X, y, name, test_size=test_size, random_state=random_state)
    found = sorted(k for k in arrays if not k.startswith("__"))
    wanted = " or ".join(f"{xk}/{yk}" for xk, yk in zip(x_keys, y_keys))
    raise ValueError(f"{path}: expected keys {wanted} (or X_train/y_train/X_test/y_test), "
                     f"found {found}")


def load_mat(path, *, test_size=DEFAULT_TEST_SIZE, random_state=0):
    """A MATLAB ``.mat`` file (as in the scikit-feature repository).

    Parameters
    ----------
    path : str or Path
        File with ``X``/``Y`` or ``fea``/``gnd`` (features, labels), or
        ``X_train``/``y_train``/``X_test``/``y_test``. Sparse ``X`` is densified.
    test_size : float, default 0.25
        Held-out fraction when the file has no predefined split.
    random_state : int, default 0
        Seed of that split (stratified).

    Returns
    -------
    Dataset
    """
    from scipy.io import loadmat

    path = _require(path, "a MATLAB .mat file with X/Y or fea/gnd")
    arrays = loadmat(path)
    return _from_arrays(arrays, path, x_keys=("X", "fea"), y_keys=("Y", "gnd"),
                        test_size=test_size, random_state=random_state)


def load_npz(path, *, test_size=DEFAULT_TEST_SIZE, random_state=0):
    """A NumPy ``.npz`` file with ``X`` and ``y`` (or ``X_train``... ``y_test``).

    Loaded with ``allow_pickle=False``: labels must be numbers or fixed-width
    strings, not Python objects.

    Parameters
    ----------
    path : str or Path
    test_size : float, default 0.25
        Held-out fraction when the file has no predefined split.
    random_state : int, default 0

    Returns
    -------
    Dataset
    """
    path = _require(path, "a .npz file with X and y arrays")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return _from_arrays(arrays, path, x_keys=("X",), y_keys=("y",), test_size=test_size,
                        random_state=random_state)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_csv(path, *, label_column=-1, delimiter=",", test_size=DEFAULT_TEST_SIZE,
             random_state=0):
    """A delimited text file: one example per row, one column holds the label.

    A first row whose feature fields are not all numbers is taken as a header
    and skipped. Labels that all parse as integers become int64, else they
    stay strings.

    Parameters
    ----------
    path : str or Path
    label_column : int, default -1
        Index of the label column (negative counts from the end).
    delimiter : str, default ","
    test_size : float, default 0.25
    random_state : int, default 0

    Returns
    -------
    Dataset
    """
    path = _require(path, "a delimited text file, one example per row with a label column")
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter=delimiter) if row]
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    width = len(rows[0])
    if width < 2:
        raise ValueError(f"{path}: expected at least 2 columns (features and a label), got {width}")
    col = label_column % width
    if not all(_is_number(v) for i, v in enumerate(rows[0]) if i != col):
        rows = rows[1:]
    if any(len(r) != width for r in rows):
        raise ValueError(f"{path}: rows must all have {width} columns")
    table = np.array(rows, dtype=str)
    labels = np.char.strip(table[:, col])
    try:
        X = table[:, [i for i in range(width) if i != col]].astype(np.float32)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric feature value ({exc})") from None
    try:
        y = labels.astype(np.int64)
    except ValueError:
        y = labels
    return _split(np.ascontiguousarray(X), y, path.stem, test_size=test_size,
                  random_state=random_state)


def fetch_openml_cached(name, cache_dir=None, *, version="active", test_size=DEFAULT_TEST_SIZE,
                        random_state=0):
    """An OpenML data set, downloaded once and kept as ``.npz`` in ``cache_dir``.

    Parameters
    ----------
    name : str
        OpenML data set name (e.g. ``"mnist_784"``).
    cache_dir : str or Path, optional
        Where the cache lives; default ``$CTRE_SPARSE_DATA/openml`` or
        ``~/.cache/ctre_sparse/openml``. A cache hit never touches the network.
    version : int or "active", default "active"
    test_size : float, default 0.25
    random_state : int, default 0

    Returns
    -------
    Dataset
    """
    if cache_dir is None:
        root = os.environ.get(DATA_ENV)
        cache_dir = Path(root) / "openml" if root else Path.home() / ".cache/ctre_sparse/openml"
    cache_dir = Path(cache_dir)
    cache = cache_dir / f"{name}-{version}.npz"
    if not cache.exists():
        from sklearn.datasets import fetch_openml

        logger.info("fetching OpenML data set %r (version %s) into %s", name, version, cache_dir)
        try:
            with warnings.catch_warnings():   # its retry warnings: the error below says it all
                warnings.simplefilter("ignore", UserWarning)
                bunch = fetch_openml(name, version=version, as_frame=False,
                                     data_home=str(cache_dir), parser="auto")
        except OSError as exc:  # URLError, timeouts, DNS failures: no network or no server
            raise ValueError(
                f"openml:{name}: could not download it from OpenML ({_reason(exc)}); OpenML "
                f"needs a network connection, or a cached copy {cache} made earlier") from None
        X = _features(bunch.data, f"openml:{name}")
        y = np.asarray(bunch.target)
        y = y.astype(str) if y.dtype == object else y
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, X=X, y=y)
        os.replace(tmp, cache)
    ds = load_npz(cache, test_size=test_size, random_state=random_state)
    return dataclasses.replace(ds, name=name)


def _reason(exc):
    """The short cause of a network error (URLError keeps it in ``reason``)."""
    return str(getattr(exc, "reason", None) or exc) or type(exc).__name__


def default_data_dir():
    """The data root: ``$CTRE_SPARSE_DATA`` if set, else ``../shared/data`` from the cwd."""
    root = os.environ.get(DATA_ENV)
    return Path(root) if root else Path.cwd().parent / "shared" / "data"


def _madelon_dir():
    root = default_data_dir()
    if (root / "madelon_train.data").exists():
        return root
    return root / "madelon"


def load_dataset(spec, *, test_size=DEFAULT_TEST_SIZE, random_state=0):
    """Resolve a data set spec and load it.

    Parameters
    ----------
    spec : str or Path
        ``"digits"`` (embedded); ``"madelon"`` (``$CTRE_SPARSE_DATA/madelon``,
        or ``$CTRE_SPARSE_DATA`` itself when it holds the files, default
        ``../shared/data/madelon`` relative to the working directory);
        ``"openml:NAME"``; or a path: a directory in MADELON format, a
        ``.mat``, ``.npz`` or ``.csv`` file.
    test_size, random_state
        Split of sources without a predefined test part.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> load_dataset("digits").name
    'digits'
    """
    spec = str(spec)
    split = dict(test_size=test_size, random_state=random_state)
    if spec == "digits":
        return load_digits(**split)
    if spec == "madelon":
        return load_madelon(_madelon_dir())
    if spec.startswith("openml:"):
        return fetch_openml_cached(spec[len("openml:"):], **split)
    path = Path(spec)
    if path.is_dir():
        return load_madelon(path)
    loaders = {".mat": load_mat, ".npz": load_npz, ".csv": load_csv}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise ValueError(f"unknown data set {spec!r}: expected 'digits', 'madelon', "
                         f"'openml:NAME', a MADELON directory or a .mat/.npz/.csv file")
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (expected a {path.suffix} data file)")
    return loader(path, **split)
