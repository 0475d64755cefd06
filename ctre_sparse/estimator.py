"""The scikit-learn estimator: :class:`CTREClassifier`.

A truly-sparse MLP trained with SGD while its topology evolves after every
epoch (prune the ``zeta`` fraction of weakest connections, regrow as many by
cosine similarity of activations and/or at random: SET, CTRE-seq, CTRE-sim;
or by gradient magnitude: RigL). ``preset="default"`` is the configuration
that docs/accuracy.md chose for extreme sparsity (weights scaled to each
neuron's real fan-in, warm-up and cosine decay, L2 1e-3, dropout 0.05, outlier
gradient clipping, activity-aware pruning); ``preset="paper"`` is the CTRE paper's MADELON run (Atashgahi
et al., "A brain-inspired algorithm for training highly sparse neural networks",
Machine Learning 2022: ``--lr 0.01 --zeta 0.2 --epsilon 1`` with three ReLU
hidden layers of 1000), except ``max_epochs`` (100 here, 500 there).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._estimator_state import (CHECKPOINT_NAME, EstimatorState, fingerprint, host_csr, plain,
                               read_saved_state)
from ._fit_data import class_codes, fitted_classes, standardization
from ._params import check_params, params_json
from ._random import seed_entropy
from ._split import validation_indices
from .device import to_host
from .distributed import fitting as mpi

logger = logging.getLogger(__name__)

__all__ = ["CTREClassifier", "GROWTHS", "ACTIVATIONS", "CHECKPOINT_NAME"]

GROWTHS = ("ctre_sim", "ctre_seq", "cosine", "rigl", "random", "set", "static")
ACTIVATIONS = ("relu", "alternated_left_relu", "leaky_relu", "tanh", "sigmoid")
_PREDICT_CHUNK = 4096


class CTREClassifier(EstimatorState, ClassifierMixin, BaseEstimator):
    """Truly-sparse MLP classifier with CTRE / SET dynamic topology.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (1000, 1000, 1000)
        Neurons of each hidden layer (the CTRE paper's MADELON network).
    epsilon : float, default 1
        Erdős–Rényi sparsity: a layer ``n_in -> n_out`` gets
        ``round(epsilon * (n_in + n_out))`` connections (dense when that
        exceeds ``n_in * n_out``). Ignored when ``density`` is given.
    density : float in (0, 1], optional
        Fraction of connections per layer; overrides ``epsilon``.
    zeta : float in [0, 1), default 0.2
        Fraction of each layer's connections pruned (smallest ``|w|``) and
        regrown after every epoch.
    growth : {"ctre_seq", "ctre_sim", "cosine", "rigl", "random", "static"}, default "ctre_seq"
        How regrown connections are chosen: ``"random"`` is SET; ``"cosine"``
        the absent pairs of neurons whose activations have the largest
        absolute cosine similarity; ``"ctre_seq"`` cosine until validation
        accuracy stalls for ``patience`` epochs, then random; ``"set"`` is an
        alias of ``"random"``; ``"ctre_sim"``
        cosine, where a pick re-adding a just-pruned connection is replaced by
        a random one; ``"rigl"`` the absent connections with the largest
        loss-gradient magnitude over ``cosine_samples`` samples (Evci et al.
        2020; not with ``distributed``); ``"static"`` keeps the initial
        topology.
    activation : {"relu", "alternated_left_relu", "leaky_relu", "tanh", "sigmoid"}, default "relu"
        Hidden activation. ReLU as in the CTRE code base;
        ``"alternated_left_relu"`` is the All-ReLU of Curci et al. (negative
        slope +/-0.6 alternating with depth) used by the truly-sparse SET
        implementations.
    preset : {"default", "paper"}, default "default"
        Where the parameters left at None take their values from:

        ==============  ===================  ==================================
        parameter       "default"            "paper" (the CTRE authors' regime)
        ==============  ===================  ==================================
        init            "he_sparse"          "he"
        grow_init       "threshold"          "he"
        learning_rate   0.4 / sqrt(k) <= 0.3 0.01
        lr_schedule     "cosine"             "constant"
        warmup_epochs   5                    0
        weight_decay    1e-3                 1e-4
        dropout         0.05                 0.0
        grad_clip       5.0                  0.0 (none)
        prune           "activity"           "magnitude"
        ==============  ===================  ==================================

        ``k`` is the network's mean number of inputs per neuron (about
        ``2 * epsilon`` for wide layers; :func:`ctre_sparse._params.fan_in_learning_rate`).
        With ``growth="rigl"``: ``grow_init`` "zeros" (RigL's rule) and the
        learning rate at most 0.1 (it diverged at 0.3). "default" trained
        best in docs/accuracy.md; "paper" keeps docs/reproduction.md
        reproducible. Explicit parameters win.
    init : {"he", "he_sparse"}, optional
        Initial weights U(+-sqrt(6 / n)): ``"he"`` with n = n_in (the dense
        fan-in), ``"he_sparse"`` with n = each neuron's real fan-in. None:
        the preset's.
    grow_init : {"he", "he_sparse", "zeros", "kept", "threshold"}, optional
        Weights of regrown connections (see
        :class:`~ctre_sparse.topology.TopologyUpdater`). None: the preset's.
    learning_rate : float, optional
        Peak learning rate of SGD. None: the preset's.
    lr_schedule : {"constant", "cosine"}, optional
        ``"cosine"``: linear warm-up over ``warmup_epochs`` epochs, then
        cosine decay over the rest of ``max_epochs``
        (:class:`~ctre_sparse.nn.optim.WarmupCosine`). None: the preset's.
    warmup_epochs : int, optional
        Warm-up epochs of the ``"cosine"`` schedule. None: the preset's.
    momentum : float in [0, 1), default 0.9
    nesterov : bool, default True
    weight_decay : float, optional
        L2 penalty, applied to the existing connections only. None: the
        preset's (``"default"`` 1e-3, ``"paper"`` 1e-4).
    batch_size : int, default 100
        Capped at the number of training samples.
    max_epochs : int, default 100
        Epochs of :meth:`fit` (one epoch = one pass + one topology update).
    validation_fraction : float in [0, 1), default 0.1
        Part of the training data held out (stratified) by :meth:`fit` to
        measure validation accuracy (CTRE-seq's switch uses it). 0 disables.
        A split smaller than 20 rows or than the number of classes is not
        made (a UserWarning says so): CTRE-seq then monitors the training
        accuracy.
    patience : int, default 40
        Epochs without validation improvement before CTRE-seq switches from
        cosine to random growth (40, the CTRE authors' ``early_stop_epoch``).
    cosine_samples : int, optional
        Training samples whose activations feed the cosine similarity after
        each epoch; None uses all.
    cosine_approx_dim : int, optional
        Off (None, the default): cosine growth scores every absent
        connection exactly. An int >= 1: in layers of at least 4096 x 4096
        positions (``n_out * n_in >= 4096 * 4096``) the cosine picks of
        ``"cosine"``, ``"ctre_seq"`` and ``"ctre_sim"`` come from
        :func:`ctre_sparse.cosine_sketch.topk_cosine_sketch` with this sketch
        dimension (random-projection candidates, re-scored exactly):
        faster there, but some of the exact top pairs are missed; smaller
        layers stay exact. The projections are drawn from the topology's
        random stream. Measured trade-off and a starting point (128) in
        docs/cosine_sketch.md.
    cosine_approx_oversample : int, default 4
        Sketched candidates re-scored exactly per grown connection (higher:
        more of the exact top pairs found, slower). Used only with
        ``cosine_approx_dim``.
    cosine_mode : {"auto", "exact", "sketch", "index"}, default "auto"
        How the cosine picks are found in each layer: exact scan, sketch
        (``cosine_approx_dim`` or 128 coordinates), or a nearest-neighbour
        index (sublinear in pairs, for very wide layers); "auto" picks exact
        where it is cheap (``n_out * n_in * S <= 2**34``) and the index
        above, and caps the samples of wide networks
        (:class:`~ctre_sparse.topology.TopologyUpdater`; docs/cosine_index.md).
        Each epoch's choices are in ``history_`` (``cosine_modes``). Models
        saved before this parameter existed load as ``"exact"`` (or
        ``"auto"`` with ``cosine_approx_dim``), which is what they ran.
    dropout : float in [0, 1), optional
        Dropout on hidden activations during training. None: the preset's
        (``"default"`` 0.05, ``"paper"`` 0.0).
    grad_clip : float, 0 or >= 1, optional
        Outlier clipping of the SGD steps: a step whose gradient norm exceeds
        ``grad_clip`` times the median norm of the last 200 steps (from the
        20th step on) is scaled down to that bound
        (:class:`~ctre_sparse.nn.clip.OutlierClip`); 0: no clipping. None: the
        preset's (``"default"`` 5.0, ``"paper"`` 0). Models saved before this
        parameter existed load with 0, which is what they ran.
    prune : {"magnitude", "activity"}, optional
        Which connections each topology update removes. ``"magnitude"``: the
        ``zeta`` fraction with the smallest ``|w|`` (SET, CTRE). ``"activity"``:
        the smallest ``|w_ij|`` times the standard deviation of the input
        neuron's activation over the update's samples, each removed
        connection's mean contribution moving into its neuron's bias
        (:class:`~ctre_sparse.topology.TopologyUpdater`; with random growth
        this adds one activation pass per update). None: the preset's
        (``"default"`` "activity", ``"paper"`` "magnitude"). Models saved
        before this parameter existed load with "magnitude", which is what
        they ran.
    standardize : bool, default True
        Scale every input feature to zero mean and unit variance with the
        statistics of the data given to the first :meth:`fit` (or the first
        :meth:`partial_fit` call), kept in ``input_mean_`` / ``input_scale_``
        and applied by every later call (prediction included). A feature
        that is constant there is only centred. Sparse networks at small
        ``epsilon`` see each input through one or two connections, so raw
        features far from unit scale (pixel values 0-255, say) make them
        diverge or stall at chance. False: the inputs are used as given.
    random_state : int, Generator or None, default None
        Seed of initialisation, validation split, shuffling and topology.
    verbose : int, default 0
        >= 1: one progress line per epoch on stderr (the training core logs
        each epoch at INFO level regardless).
    backend : str, default "auto"
        Kernel backend (``"auto"``, ``"native"``, ``"numba"``, ``"reference"``, ``"cuda"``).
    device : {"cpu", "cuda"}, default "cpu"
        Where training runs. ``"cuda"``: weights, optimizer state,
        activations and the training data stay on the GPU (CuPy arrays) for
        the whole fit, topology updates included; needs the CUDA backend
        (a ValueError gives the reason when it is unavailable) and
        ``backend`` "auto" or "cuda". Saved files hold NumPy arrays either way.
    distributed : {None, "mpi"}, default None
        ``"mpi"``: one rank of a data-parallel fit (``mpiexec -n P python
        script.py``, the same data and parameters on every rank), training
        one model; only rank 0 writes files. Needs ``ctre_sparse[mpi]``;
        CPU only. See :mod:`ctre_sparse.distributed`, docs/distributed.md.
    checkpoint_dir : str or Path, optional
        Write ``checkpoint.npz`` (the :meth:`save` format) there every
        ``checkpoint_every`` epochs and at the end of :meth:`fit`, atomically.
    checkpoint_every : int, default 1
    dtype : {numpy.float32, numpy.float64}, default numpy.float32

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_iter_ : int
        Epochs trained so far.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_loss``, ``train_accuracy``,
        ``val_accuracy`` (None without validation), ``seconds``,
        ``n_cosine`` / ``n_random`` (connections regrown), ``n_connections``.
    coefs_ : list of scipy.sparse.csr_matrix
        ``coefs_[i]`` has shape ``(n_in, n_out)`` like MLPClassifier's (a CSR
        copy of the transpose of the stored ``(n_out, n_in)`` weight).
    intercepts_ : list of ndarray
    input_mean_, input_scale_ : ndarray of shape (n_features_in_,)
        The input standardization (``(X - input_mean_) / input_scale_``);
        zeros and ones with ``standardize=False``.
    feature_importances_ : ndarray of shape (n_features_in_,)
        Each input's share of the input layer's connections (CTRE's
        feature-selection signal): connections of input ``i`` / all of them.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = CTREClassifier(hidden_layer_sizes=(32,), epsilon=4, max_epochs=5,
    ...                      learning_rate=0.05, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape, clf.n_iter_
    ((2, 3), 5)
    """

    def __init__(self, hidden_layer_sizes=(1000, 1000, 1000), *, epsilon=1.0, density=None,
                 zeta=0.2, growth="ctre_seq", activation="relu", learning_rate=None,
                 momentum=0.9, nesterov=True, weight_decay=None, batch_size=100,
                 max_epochs=100, validation_fraction=0.1, patience=40, cosine_samples=None,
                 cosine_approx_dim=None, cosine_approx_oversample=4, cosine_mode="auto",
                 dropout=None, standardize=True, random_state=None, verbose=0, backend="auto",
                 device="cpu", distributed=None, checkpoint_dir=None, checkpoint_every=1,
                 dtype=np.float32, preset="default", init=None, grow_init=None,
                 lr_schedule=None, warmup_epochs=None, grad_clip=None, prune=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.epsilon = epsilon
        self.density = density
        self.zeta = zeta
        self.growth = growth
        self.activation = activation
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.cosine_samples = cosine_samples
        self.cosine_approx_dim = cosine_approx_dim
        self.cosine_approx_oversample = cosine_approx_oversample
        self.cosine_mode = cosine_mode
        self.dropout = dropout
        self.grad_clip = grad_clip
        self.prune = prune
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose
        self.backend = backend
        self.device = device
        self.distributed = distributed
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.dtype = dtype
        self.preset = preset
        self.init = init
        self.grow_init = grow_init
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs

    # ---------------------------------------------------------------- checks
    def validate_params(self):
        """Check every constructor parameter now (``fit`` does it first thing).

        For callers that want parameter errors before loading data.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Naming the parameter, the expected values and the value given.

        Examples
        --------
        >>> CTREClassifier(zeta=1.5).validate_params()
        Traceback (most recent call last):
        ...
        ValueError: zeta must be in [0, 1), got 1.5
        """
        check_params(self, GROWTHS, ACTIVATIONS)
        return self

    def _validate_X(self, X, reset):
        return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])

    def _feature_major(self, X):
        """Standardized, sample-major (n, d) -> feature-major (d, n), in the model dtype.

        One copy: the transpose of a C-ordered array, so the result is
        F-ordered; the training core gathers each mini-batch as whole sample
        rows from it (faster than from a C-ordered (d, n) array) and copies
        the batch to C order.
        """
        dtype = np.dtype(self.dtype)
        out = np.subtract(X, self.input_mean_.astype(dtype), dtype=dtype)
        out /= self.input_scale_.astype(dtype)
        return out.T

    # ------------------------------------------------------------------ fitting
    def _split_validation(self, y_codes, seed):
        """The held-out validation rows (:func:`~ctre_sparse._split.validation_indices`)."""
        return validation_indices(y_codes, len(self.classes_), self.validation_fraction,
                                  int(np.random.default_rng(seed).integers(2**31)))

    def fit(self, X, y, *, resume=False, callbacks=None):
        """Train for ``max_epochs`` epochs (from scratch, or resumed).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        resume : bool or path, default False
            True: continue from ``checkpoint_dir/checkpoint.npz`` when it
            exists (else start fresh); a path: continue from that file. The
            data must be the same as in the interrupted run (checked by a
            fingerprint); training goes on until ``max_epochs`` epochs in all,
            and ends identical to an uninterrupted run with the same seed.
        callbacks : sequence of callable, optional
            ``callback(estimator, record)`` after each epoch (after the
            checkpoint); a truthy return value stops training.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False, resume=resume, callbacks=callbacks)

    def partial_fit(self, X, y, classes=None):
        """Train one epoch on (X, y), continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, optional
            All classes; required on the first call unless ``y`` has them all.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X, y, *, incremental, classes=None, resume=False, callbacks=None):
        self.validate_params()
        first = not (incremental and hasattr(self, "_trainer"))
        X, y = validate_data(self, X, y, reset=first, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        if first:
            self.classes_ = fitted_classes(y, classes)
            self.input_mean_, self.input_scale_ = standardization(X, self.standardize)
        codes = class_codes(self.classes_, y)
        comm = self._comm = mpi.connect(self) if self.distributed else None
        try:
            self._prepare(X, codes, incremental, first, resume)
            epochs = 1 if incremental else self.max_epochs - self.n_iter_
            val_idx = np.zeros(0, np.int64) if incremental else self._val_idx
            if comm is not None:
                mpi.check_before_training(comm, params=params_json(self), n_iter=self.n_iter_,
                                          seed=self._entropy, X=X, codes=codes,
                                          n_train=X.shape[0] - val_idx.size)
                self._trainer.communicator = comm
            with mpi.collective_errors(comm):
                self._train(X, codes, val_idx, epochs, callbacks or (), final=not incremental)
        finally:
            self._comm = None
            if comm is not None:
                mpi.disconnect(comm, getattr(self, "_trainer", None))
        return self

    def _prepare(self, X, codes, incremental, first, resume):
        """Restore the checkpoint to resume from, or build the model (MPI: rank 0 reads, seeds)."""
        comm = self._comm
        checkpoint = mpi.from_root(comm, self._resume_path, resume) if not incremental else None
        if checkpoint is not None:
            state = mpi.from_root(comm, read_saved_state, checkpoint)
            self._set_state(state, X, codes, source=checkpoint)
        elif not first:
            self._apply_changed_params()
        else:
            entropy = mpi.from_root(comm, seed_entropy, self.random_state)
            split_seed = self._build(X.shape[1], len(self.classes_), entropy)
            self._entropy = entropy
            self._val_idx = (np.zeros(0, np.int64) if incremental
                             else self._split_validation(codes, split_seed))
            self._fingerprint = None if incremental else fingerprint(X, codes, self.dtype)
            self.history_ = []
            self.n_iter_ = 0

    def _train(self, X, codes, val_idx, epochs, callbacks, final):
        train_mask = np.ones(X.shape[0], dtype=bool)
        train_mask[val_idx] = False
        X_fm = self._feature_major(X[train_mask])
        y_tr = codes[train_mask]
        X_val_fm = self._feature_major(X[val_idx]) if val_idx.size else None
        y_val = codes[val_idx] if val_idx.size else None
        self._trainer.batch_size = min(int(self.batch_size), int(y_tr.shape[0]))
        try:
            self._epochs(X_fm, y_tr, X_val_fm, y_val, epochs, callbacks, final)
        finally:
            self._trainer.clear_device_cache()   # GPU: the data's device copy (one per fit)

    def _epochs(self, X_fm, y_tr, X_val_fm, y_val, epochs, callbacks, final):
        for i in range(max(0, epochs)):
            record = self._one_epoch(X_fm, y_tr, X_val_fm, y_val)
            written = self._after_epoch(record, last=final and i == epochs - 1)
            stop = any([bool(cb(self, record)) for cb in callbacks])   # every callback is called
            if self._comm is not None:
                stop = self._comm.any_rank(stop)     # the ranks stop together
            if stop:
                logger.info("training stopped by a callback after epoch %d", self.n_iter_)
                if not written and self._checkpoint_path() is not None:
                    self._write(self._checkpoint_path())
                break

    def _one_epoch(self, X_fm, y, X_val_fm, y_val):
        from . import training     # lazily, as the build does (it pulls in the kernels)
        try:
            record = self._trainer.run_epoch(X_fm, y, X_val_fm, y_val)
        except training.TrainingDivergedError as exc:
            ckpt = self._checkpoint_path()
            kept = (f"; the last good checkpoint {ckpt} is kept" if ckpt is not None
                    and ckpt.exists() else "")
            raise training.TrainingDivergedError(f"{exc}{kept}") from exc
        record = {k: plain(v) for k, v in dict(record).items()}
        self.n_iter_ += 1
        record["epoch"] = self.n_iter_
        self.history_.append(record)
        return record

    def _after_epoch(self, record, last):
        """Checkpoint when due and report progress; return whether a checkpoint was written."""
        ckpt = self._checkpoint_path()
        written = ckpt is not None and (self.n_iter_ % self.checkpoint_every == 0 or last)
        if written:
            self._write(ckpt)
        val = record.get("val_accuracy")
        line = (f"epoch {record['epoch']}: loss {record.get('train_loss', float('nan')):.4f}, "
                f"train acc {record.get('train_accuracy', float('nan')):.4f}"
                + ("" if val is None else f", val acc {val:.4f}")
                + f", {record.get('seconds', 0.0):.2f}s")
        logger.debug(line)     # the training core logs each epoch at INFO already
        if self.verbose and self._writes_files():
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        return written

    # --------------------------------------------------------------- predicting
    def __sklearn_is_fitted__(self):
        return hasattr(self, "_trainer")

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        model = self._trainer.model
        out = np.empty((X.shape[0], len(self.classes_)), dtype=np.dtype(self.dtype))
        for start in range(0, X.shape[0], _PREDICT_CHUNK):
            stop = min(start + _PREDICT_CHUNK, X.shape[0])
            proba = model.predict_proba(self._feature_major(X[start:stop]))
            out[start:stop] = np.asarray(to_host(proba)).T
        return out

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # ----------------------------------------------------------- learned state
    def _layers(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; "
                                 f"call 'fit' first.")
        return self._trainer.model.layers

    @property
    def coefs_(self):
        """Weights per layer as scipy CSR of shape (n_in, n_out) (copies)."""
        return [host_csr(layer.W).T.tocsr() for layer in self._layers()]

    @property
    def intercepts_(self):
        """Biases per layer, shape (n_out,) (copies)."""
        return [np.array(to_host(layer.b)) for layer in self._layers()]

    @property
    def feature_importances_(self):
        """Share of the input layer's connections per input feature."""
        W = self._layers()[0].W
        counts = np.bincount(np.asarray(to_host(W.indices)), minlength=W.n_in).astype(np.float64)
        total = counts.sum()
        return counts / total if total else counts

    @property
    def n_connections_(self):
        """Number of connections in each layer (list of int)."""
        return [int(layer.W.nnz) for layer in self._layers()]
