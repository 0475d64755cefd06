"""The state of :class:`~ctre_sparse.CTREClassifier` (private to estimator.py).

:class:`EstimatorState`, a mixin of the estimator, holds its training core and
what moves its state: building the core from the parameters, carrying
``set_params`` changes into it, the fitted state as one dict and back
(``_get_state`` / ``_set_state``), ``save`` / ``load`` and the checkpoints.
The functions before it are functions of the values they are given (but
:func:`read_saved_state`, which reads a file); :mod:`ctre_sparse.persistence`
turns a state into a file and back.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._params import hidden_sizes, params_json, resolved
from ._random import run_seeds
from ._version import __version__
from .device import to_host

logger = logging.getLogger(__name__)
#: The logger of the estimator's own messages (resuming, restoring): their name stays the
#: estimator module's, wherever the method that logs them is defined.
estimator_logger = logging.getLogger("ctre_sparse.estimator")

#: The checkpoint file in ``checkpoint_dir`` (estimator.py exports it).
CHECKPOINT_NAME = "checkpoint.npz"
_ALL_SAMPLES = 2**62      # cosine_samples=None: every training sample

#: Parameters that may differ between an interrupted fit and the one resuming it.
RESUMABLE_PARAMS = ("max_epochs", "verbose", "checkpoint_dir", "checkpoint_every", "backend",
                    "device", "distributed")


def fingerprint(X, codes, dtype):
    """SHA-256 of the training data as the model sees it (``dtype``) and the class codes."""
    X = np.ascontiguousarray(X, dtype=np.dtype(dtype))
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    digest = hashlib.sha256(f"{X.shape}|{X.dtype.name}|".encode())
    digest.update(X.reshape(-1).view(np.uint8))      # a view: no bytes copy of X
    digest.update(codes.view(np.uint8))
    return digest.hexdigest()


def storable_classes(classes):
    """The class labels as saved: object labels become fixed-width strings."""
    classes = np.asarray(classes)
    return classes.astype(str) if classes.dtype.hasobject else classes


def check_resumable(state, *, params, classes, X, codes, dtype, source):
    """Raise ValueError unless the saved ``state`` can continue a fit on ``(X, codes)``.

    The parameters (except :data:`RESUMABLE_PARAMS`), the number of features,
    the classes and the data fingerprint must be those of the saved fit.
    """
    meta = state["meta"]
    saved = with_legacy_defaults(meta["params"])
    changed = sorted(k for k in saved if k not in RESUMABLE_PARAMS and saved[k] != params.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {params.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume from {source}: parameters differ ({diffs})")
    if meta["n_features_in"] != X.shape[1]:
        raise ValueError(f"cannot resume from {source}: it was trained on "
                         f"{meta['n_features_in']} features, X has {X.shape[1]}")
    saved_classes, now_classes = state["arrays"]["classes"], storable_classes(classes)
    if saved_classes.shape != now_classes.shape or np.any(saved_classes != now_classes):
        raise ValueError(f"cannot resume from {source}: classes differ "
                         f"({saved_classes.tolist()} vs {now_classes.tolist()})")
    val = state["arrays"]["validation_indices"]
    if val.shape[0] and int(val.max()) >= X.shape[0]:
        raise ValueError(f"cannot resume from {source}: its validation rows go up to "
                         f"{int(val.max())}, X has {X.shape[0]} rows")
    if meta["fingerprint"] is not None and fingerprint(X, codes, dtype) != meta["fingerprint"]:
        raise ValueError(f"cannot resume from {source}: X, y are not the data of the "
                         f"interrupted run (fingerprint differs)")


def with_legacy_defaults(params):
    """Saved parameters, with the value a file older than a parameter actually ran with.

    ``cosine_mode`` (added with the index mode): such files ran exact cosine
    growth, or the sketch's size rule with ``cosine_approx_dim``, which is
    ``"auto"`` with ``cosine_approx_dim`` set. ``preset`` (added with it and
    ``init``, ``grow_init``, ``lr_schedule``, ``warmup_epochs``): such files
    trained in the CTRE authors' regime, ``"paper"``, with their saved
    learning rate. ``grad_clip``: such files trained without clipping, 0.
    ``prune``: such files pruned by magnitude.
    """
    params = dict(params)
    params.setdefault("grad_clip", 0.0)  # files older than it trained without clipping
    params.setdefault("prune", "magnitude")
    if "cosine_mode" not in params:
        params["cosine_mode"] = "exact" if params.get("cosine_approx_dim") is None else "auto"
    if "preset" not in params:
        params["preset"] = "paper"
        for name in ("init", "grow_init", "lr_schedule", "warmup_epochs"):
            params.setdefault(name, None)
    return params


def restored_scaling(arrays, n_features, source):
    """``(input_mean, input_scale)`` from saved arrays, checked; files from before: the identity.

    Raises
    ------
    ValueError
        Unless both are ``n_features`` finite values, the scales > 0.
    """
    n = int(n_features)
    if "input_mean" not in arrays:
        return np.zeros(n), np.ones(n)
    mean = np.asarray(arrays["input_mean"], dtype=np.float64)
    scale = np.asarray(arrays.get("input_scale"), dtype=np.float64)
    if mean.shape != (n,) or scale.shape != (n,) or not (
            np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError(f"{source}: input_mean/input_scale must be {n} finite values "
                         "(scales > 0)")
    return mean, scale


def params_for_this_machine(params, device, path):
    """Saved parameters with ``device`` (and a GPU-only ``backend``) fitted to this machine."""
    from .backends import backend_status
    from .device import check_device

    if device is not None:
        params["device"] = check_device(device)
    elif params.get("device") == "cuda" and backend_status()["cuda"] is not None:
        logger.warning("%s was trained with device='cuda', unavailable here (%s); loading it on "
                       "the CPU", path, backend_status()["cuda"])
        params["device"] = "cpu"
    if params.get("device") == "cpu" and params.get("backend") == "cuda":
        params["backend"] = "auto"
    return params


def host_csr(W):
    """A ``scipy.sparse.csr_matrix`` copy of a (NumPy or CuPy) CSRMatrix."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.array(to_host(W.data)), np.array(to_host(W.indices)),
                          np.array(to_host(W.indptr))), shape=W.shape)


def plain(value):
    """JSON-friendly scalar (history records are saved as JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


#: Arrays of a saved estimator besides its layers (``feature_names_in`` only with names).
_BASE_ARRAYS = ("classes", "validation_indices", "feature_names_in", "input_mean", "input_scale")
_LAYER_PARTS = ("indptr", "indices", "data", "shape", "bias")


def saved_array_names(meta):
    """The array members a saved estimator holds, by its metadata: all that ``load`` reads."""
    n_layers = meta.get("n_layers")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= 4096:
        raise ValueError(f"meta n_layers must be an int in [1, 4096], got {n_layers!r}")
    return list(_BASE_ARRAYS) + [f"layers/{i}/{part}" for i in range(n_layers)
                                 for part in _LAYER_PARTS]


def _require_int(meta, key, low):
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"meta {key} must be an int >= {low}, got {value!r}")
    return value


def _require_array(arrays, name, *, ndim, kinds, length=None):
    arr = arrays.get(name)
    if arr is None:
        raise ValueError(f"member {name!r} is missing")
    if arr.ndim != ndim or arr.dtype.kind not in kinds:
        raise ValueError(f"member {name!r} must be a {ndim}-D array of kind {kinds!r}, got "
                         f"{arr.dtype} with shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"member {name!r} must have {length} entries, got {arr.shape[0]}")
    return arr


def check_saved_model(state, hidden):
    """Raise ValueError unless a read state describes one consistent model; return its sizes.

    Checked before anything is built from it: the metadata's counts, the
    classes (at least 2, unique), and each layer's declared shape, array
    lengths and bias (finite, one per output neuron) against the layer
    sizes ``[n_features] + hidden + [n_classes]``. The CSR structure itself
    is validated when the weights load.
    """
    meta, arrays = state["meta"], state["arrays"]
    n_features = _require_int(meta, "n_features_in", 1)
    _require_int(meta, "n_iter", 0)
    _require_int(meta, "entropy", 0)
    classes = _require_array(arrays, "classes", ndim=1, kinds="biufUS")
    if classes.shape[0] < 2 or np.unique(classes).shape[0] != classes.shape[0]:
        raise ValueError(f"classes must hold at least 2 distinct labels, got {classes.tolist()}")
    sizes = [n_features] + list(hidden) + [int(classes.shape[0])]
    if meta["n_layers"] != len(sizes) - 1:
        raise ValueError(f"meta n_layers is {meta['n_layers']}, the parameters give "
                         f"{len(sizes) - 1} layers")
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        _check_saved_layer(arrays, i, n_in, n_out)
    val = _require_array(arrays, "validation_indices", ndim=1, kinds="iu")
    if val.shape[0] and int(val.min()) < 0:
        raise ValueError("validation_indices must be >= 0")
    if "feature_names_in" in arrays:
        _require_array(arrays, "feature_names_in", ndim=1, kinds="US", length=n_features)
    return sizes


def _check_saved_layer(arrays, i, n_in, n_out):
    key = f"layers/{i}/"
    shape = _require_array(arrays, key + "shape", ndim=1, kinds="iu", length=2)
    if tuple(int(v) for v in shape) != (n_out, n_in):
        raise ValueError(f"layer {i} has shape {tuple(shape.tolist())}, the parameters give "
                         f"{(n_out, n_in)}")
    indptr = _require_array(arrays, key + "indptr", ndim=1, kinds="i", length=n_out + 1)
    nnz = int(indptr[-1])
    if not 0 <= nnz <= n_out * n_in:
        raise ValueError(f"layer {i}: indptr ends at {nnz}, outside [0, {n_out * n_in}]")
    _require_array(arrays, key + "indices", ndim=1, kinds="i", length=nnz)
    _require_array(arrays, key + "data", ndim=1, kinds="f", length=nnz)
    bias = _require_array(arrays, key + "bias", ndim=1, kinds="f", length=n_out)
    if not np.all(np.isfinite(bias)):
        raise ValueError(f"layer {i}: the bias holds NaN or Inf")


def read_saved_state(path):
    """The state in a model file or checkpoint (only the members a model file defines)."""
    return persistence.read_state(path, select=saved_array_names)


def loadable_params(meta, known, device, path):
    """The constructor parameters of a saved estimator, checked, for this machine.

    ``known``: the names the estimator's constructor takes; unknown names are
    refused. ``checkpoint_dir`` is never taken from a file (where training
    writes is a choice of the caller, not of the file's author): a loaded
    estimator checkpoints only after ``set_params``.
    """
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"{path}: not a valid ctre_sparse model file (meta params must be an "
                         "object)")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path}: not a valid ctre_sparse model file (unknown parameters "
                         f"{unknown})")
    params = params_for_this_machine(with_legacy_defaults(params), device, path)
    try:
        params["dtype"] = np.dtype(params["dtype"]).type
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{path}: not a valid ctre_sparse model file (parameter "
                         f"{exc})") from None
    params["checkpoint_dir"] = None
    return params


def _core():
    """Import the training core lazily (it pulls in the kernels)."""
    from . import training
    from .nn.mlp import SparseMLP
    from .nn.optim import SGD
    from .topology import TopologyUpdater

    return SparseMLP, SGD, TopologyUpdater, training


def _clip(factor):
    """The optimizer's outlier clip for a resolved ``grad_clip`` (0: None)."""
    from .nn.clip import OutlierClip

    return OutlierClip(factor) if factor > 0 else None


#: Parameters that ``partial_fit`` carries into a trained model's training core.
_LIVE_PARAMS = frozenset({"learning_rate", "momentum", "nesterov", "weight_decay", "zeta",
                          "lr_schedule", "warmup_epochs", "grad_clip", "prune"})
#: Parameters that ``partial_fit`` does not use or reads at every call.
_IDLE_PARAMS = frozenset({"max_epochs", "verbose", "checkpoint_dir", "checkpoint_every",
                          "batch_size", "validation_fraction", "random_state"})


class EstimatorState:
    """The training core of :class:`~ctre_sparse.CTREClassifier` and its state (a mixin).

    Builds the core (``_trainer``: model, optimizer, topology updater and
    trainer) from the estimator's parameters, carries ``set_params`` changes
    into it, gives the fitted state as one dict and rebuilds from one, and
    saves, loads and checkpoints it. Besides what it sets itself, it reads
    the estimator's parameters and fitted attributes only; the run's seed,
    data fingerprint and validation rows (``_entropy``, ``_fingerprint``,
    ``_val_idx``) come from the estimator's fit, or from :meth:`_set_state`
    when a fit resumes. The estimator's fit loop uses ``_trainer`` and the
    checkpoint methods (a subclass may use its base's underscore names:
    tests/test_layout.py).
    """

    def _hidden_sizes(self):
        return hidden_sizes(self.hidden_layer_sizes)

    def _build(self, n_features, n_classes, entropy):
        """Create model, optimizer, topology updater and trainer (fresh weights).

        Returns the seed (a SeedSequence) of the validation split.
        """
        SparseMLP, SGD, TopologyUpdater, training = _core()
        if self.device == "cuda":
            from .device import require_cuda

            require_cuda("CTREClassifier(device='cuda')")
        seeds = run_seeds(entropy)  # split, model, trainer
        sizes = [int(n_features)] + self._hidden_sizes() + [int(n_classes)]
        sparsity = ({"density": float(self.density)} if self.density is not None
                    else {"epsilon": float(self.epsilon)})
        cfg = resolved(self, sizes)
        model = SparseMLP(sizes, activation=self.activation, dropout=cfg["dropout"],
                          dtype=np.dtype(self.dtype), backend=self.backend, init=cfg["init"],
                          random_state=np.random.default_rng(seeds[1]), **sparsity)
        if self.device == "cuda":
            model.to_device("cuda")     # the Trainer moves the optimizer state along
        optimizer = SGD(learning_rate=cfg["learning_rate"], momentum=float(self.momentum),
                        nesterov=bool(self.nesterov), weight_decay=cfg["weight_decay"],
                        schedule=cfg["schedule"], backend=self.backend,
                        clip=_clip(cfg["grad_clip"]))
        cosine_samples = _ALL_SAMPLES if self.cosine_samples is None else int(self.cosine_samples)
        updater = TopologyUpdater(zeta=float(self.zeta), growth=self.growth,
                                  cosine_samples=cosine_samples, patience=int(self.patience),
                                  backend=self.backend,
                                  cosine_approx_dim=(None if self.cosine_approx_dim is None
                                                     else int(self.cosine_approx_dim)),
                                  cosine_approx_oversample=int(self.cosine_approx_oversample),
                                  cosine_mode=self.cosine_mode, grow_init=cfg["grow_init"],
                                  prune=cfg["prune"])
        self._trainer = training.Trainer(model, optimizer, updater,
                                         batch_size=int(self.batch_size),
                                         random_state=np.random.default_rng(seeds[2]))
        self._built_with = params_json(self)
        return seeds[0]

    def _apply_changed_params(self):
        """Carry ``set_params`` changes since the build into the training core (``partial_fit``).

        The optimizer's hyper-parameters and ``zeta`` take effect from the
        next epoch (and are what :meth:`save` then records); the parameters
        that define the network or the topology strategy cannot change under
        a trained model: ValueError, naming them.
        """
        now = params_json(self)
        changed = {k for k in now if now[k] != self._built_with.get(k)}
        frozen = sorted(changed - _LIVE_PARAMS - _IDLE_PARAMS)
        if frozen:
            raise ValueError(f"partial_fit cannot change {frozen} of a trained model (they "
                             f"define its network or training core); call fit to start again")
        opt = self._trainer.optimizer
        cfg = resolved(self, self._trainer.model.layer_sizes)
        opt.learning_rate = opt.current_lr = cfg["learning_rate"]
        opt.schedule = cfg["schedule"]
        opt.momentum, opt.nesterov = float(self.momentum), bool(self.nesterov)
        opt.weight_decay = cfg["weight_decay"]
        if opt.clip is None or cfg["grad_clip"] == 0:
            opt.clip = _clip(cfg["grad_clip"])
        else:
            opt.clip.factor = cfg["grad_clip"]  # the recent norms carry over
        self._trainer.updater.zeta = float(self.zeta)
        self._trainer.updater.prune = cfg["prune"]
        self._built_with = now

    # ------------------------------------------------------------ persistence
    def save(self, path):
        """Save the fitted estimator and its full training state to ``path`` (.npz).

        The file loads with ``np.load(path, allow_pickle=False)``; see
        :mod:`ctre_sparse.persistence` for its members. Writing is atomic.
        """
        check_is_fitted(self)
        return self._write(Path(path))

    @classmethod
    def load(cls, path, *, device=None):
        """Load an estimator saved by :meth:`save` (or a checkpoint).

        The result predicts, and continues training with :meth:`partial_fit`
        or ``fit(X, y, resume=path)`` exactly where the saved one stopped.

        Parameters
        ----------
        path : str or Path
        device : {"cpu", "cuda"}, optional
            Where to put the model; default: the saved ``device``, except that
            a model saved with ``device="cuda"`` loads on the CPU (with a
            warning) where the CUDA backend is unavailable.
        """
        state = read_saved_state(path)
        est = cls(**loadable_params(state["meta"], cls().get_params(deep=False), device, path))
        est._set_state(state, source=path)
        return est

    def _checkpoint_path(self):
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / CHECKPOINT_NAME

    def _resume_path(self, resume):
        if resume is False or resume is None:
            return None
        if resume is True:
            path = self._checkpoint_path()
            if path is None:
                raise ValueError("fit(resume=True) needs checkpoint_dir to be set")
            if not path.exists():
                estimator_logger.warning("resume=True but there is no checkpoint at %s: "
                                         "training from scratch", path)
                return None
            return path
        return Path(resume)

    def _writes_files(self):
        """False on the ranks other than 0 of a distributed fit in progress."""
        comm = getattr(self, "_comm", None)
        return comm is None or comm.is_root

    def _write(self, path):
        if not self._writes_files():
            return Path(path)
        return persistence.write_state(path, self._get_state())

    def _get_state(self):
        """The fitted state, as :mod:`ctre_sparse.persistence` writes it.

        ``{"meta", "history", "arrays", "tree"}``: JSON-able metadata (the
        parameters, feature and epoch counts, the seed in use, the data
        fingerprint), the epoch records, named host arrays (classes, the
        validation split, feature names, the input standardization, every
        layer's CSR arrays and bias)
        and the training core's state (``Trainer.state_dict()``).
        """
        trainer = self._trainer
        meta = {"ctre_sparse_version": __version__, "params": params_json(self),
                "n_features_in": int(self.n_features_in_), "n_iter": int(self.n_iter_),
                "n_layers": len(trainer.model.layers), "entropy": int(self._entropy),
                "fingerprint": self._fingerprint}
        arrays = {"classes": storable_classes(self.classes_),
                  "validation_indices": np.asarray(self._val_idx, dtype=np.int64),
                  "input_mean": np.asarray(self.input_mean_, dtype=np.float64),
                  "input_scale": np.asarray(self.input_scale_, dtype=np.float64)}
        if hasattr(self, "feature_names_in_"):
            arrays["feature_names_in"] = np.asarray(self.feature_names_in_).astype(str)
        for i, layer in enumerate(trainer.model.layers):
            W = layer.W
            for name, arr in (("indptr", W.indptr), ("indices", W.indices), ("data", W.data),
                              ("bias", layer.b)):
                arrays[f"layers/{i}/{name}"] = np.ascontiguousarray(to_host(arr))
            arrays[f"layers/{i}/shape"] = np.array(W.shape, dtype=np.int64)
        return {"meta": meta, "history": list(self.history_), "arrays": arrays,
                "tree": trainer.state_dict()}

    def _set_state(self, state, X=None, codes=None, *, source="<memory>"):
        """Rebuild the fitted state from :meth:`_get_state`'s dict (e.g. read from a file).

        With ``X`` and ``codes`` (resuming ``fit``), the parameters, features,
        classes and data fingerprint are first checked against the state;
        without, the classes and features are taken from it.
        """
        try:
            self._restore(state, X, codes, source)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"{source}: not a valid ctre_sparse model file (malformed "
                             f"training state: {type(exc).__name__}: {exc})") from None
        except ValueError as exc:
            if str(exc).startswith(("cannot resume", f"{source}:")):
                raise
            raise ValueError(f"{source}: not a valid ctre_sparse model file ({exc})") from None
        estimator_logger.info("restored %s at epoch %d", source, self.n_iter_)

    def _restore(self, state, X, codes, source):
        self.validate_params()
        meta, arrays = state["meta"], state["arrays"]
        check_saved_model(state, self._hidden_sizes())
        if X is not None:
            check_resumable(state, params=params_json(self), classes=self.classes_, X=X,
                            codes=codes, dtype=self.dtype, source=source)
        else:
            self.classes_ = arrays["classes"]
            self.n_features_in_ = int(meta["n_features_in"])
            if "feature_names_in" in arrays:
                self.feature_names_in_ = arrays["feature_names_in"].astype(object)
        self.input_mean_, self.input_scale_ = restored_scaling(arrays, self.n_features_in_,
                                                               source)
        self._build(self.n_features_in_, len(self.classes_), meta["entropy"])
        self._trainer.load_state_dict(state["tree"])
        self._entropy = int(meta["entropy"])
        self._fingerprint = meta["fingerprint"]
        self._val_idx = np.asarray(arrays["validation_indices"], dtype=np.int64)
        self.n_iter_ = int(meta["n_iter"])
        self.history_ = list(state["history"])
