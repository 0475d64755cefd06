"""The sparse multi-layer perceptron (feature-major, softmax output)."""

from __future__ import annotations

import logging

import numpy as np

from .._random import check_random_state
from ..backends import get_backend
from ..sparse import CSRMatrix
from .activations import get_activation
from .init import erdos_renyi
from .layers import SparseLinear
from .losses import cross_entropy_grad, softmax

logger = logging.getLogger(__name__)

__all__ = ["SparseMLP"]


class SparseMLP:
    """A multi-layer perceptron whose weights are sparse CSR matrices.

    Activations are feature-major: an input batch has shape
    ``(n_features, batch)``. Hidden layers use ``activation`` (and inverted
    dropout while training); the output layer is a softmax trained with the
    mean cross-entropy.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_in, h1, ..., n_classes]``, at least two entries.
    activation : str, default "relu"
        See :func:`~ctre_sparse.nn.activations.get_activation`.
    epsilon : float, optional
        Erdős–Rényi sparsity level (about ``epsilon * (n_in + n_out)``
        connections per layer). Default 20 when ``density`` is not given.
    density : float, optional
        Fraction of connections per layer, instead of ``epsilon``.
    dropout : float, default 0.0
        Dropout rate on hidden activations during training.
    dtype : dtype, default float32
    init : {"he", "glorot"}, default "he"
    backend : str, default "auto"
        Backend of the sparse ops.
    index_dtype : dtype, optional
        Index dtype of the weights (default: the index-dtype policy).
    random_state : int, Generator or None
        Draws the topology and the initial weights.

    Examples
    --------
    >>> import numpy as np
    >>> model = SparseMLP([4, 8, 3], epsilon=1, random_state=0, backend="reference")
    >>> P = model.forward(np.ones((4, 5), dtype=np.float32))
    >>> P.shape, bool(np.allclose(P.sum(axis=0), 1))
    ((3, 5), True)
    """

    def __init__(self, layer_sizes, activation="relu", *, epsilon=None, density=None,
                 dropout=0.0, dtype=np.float32, init="he", backend="auto", index_dtype=None,
                 random_state=None):
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer_sizes must hold at least 2 positive sizes, got {layer_sizes}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        if epsilon is None and density is None:
            epsilon = 20.0
        if backend != "auto":
            get_backend(backend)  # unknown or unavailable backends fail here, with the reason
        self.layer_sizes = sizes
        self.activation = activation
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        self.backend = backend
        rng = check_random_state(random_state)
        self.layers = [
            SparseLinear(erdos_renyi(n_out, n_in, epsilon, density, random_state=rng,
                                     dtype=self.dtype, index_dtype=index_dtype, init=init),
                         backend=backend)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        self._make_activations()
        self._ws = {}
        self._cache = None

    def _make_activations(self):
        self.hidden_activations = [get_activation(self.activation, i)
                                   for i in range(len(self.layer_sizes) - 2)]

    # ------------------------------------------------------------ properties
    @property
    def n_layers(self):
        """Number of weight layers."""
        return len(self.layers)

    @property
    def n_connections(self):
        """Total number of stored connections over all layers."""
        return sum(layer.W.nnz for layer in self.layers)

    def _buf(self, key, shape):
        arr = self._ws.get(key)
        if arr is None or arr.shape != shape:
            arr = np.empty(shape, dtype=self.dtype)
            self._ws[key] = arr
        return arr

    def _check_input(self, X, contiguous=True):
        if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[0] != self.layer_sizes[0]:
            raise ValueError(f"X must be a feature-major array of shape ({self.layer_sizes[0]}, "
                             f"batch), got {getattr(X, 'shape', type(X).__name__)}")
        if X.dtype != self.dtype or (contiguous and not X.flags.c_contiguous):
            raise ValueError(f"X must be C-contiguous {self.dtype}, got "
                             f"{X.dtype} (C-contiguous: {X.flags.c_contiguous})")

    # ------------------------------------------------------------- forward
    def forward(self, X, training=False, rng=None):
        """Return the softmax probabilities, shape ``(n_classes, batch)``.

        Parameters
        ----------
        X : ndarray, shape (n_in, batch), C-contiguous, the model's dtype
        training : bool, default False
            Keep what :meth:`backward` needs and apply dropout (drawn from
            ``rng``, required then when ``dropout > 0``).
        rng : numpy.random.Generator, optional

        Returns
        -------
        ndarray, shape (n_classes, batch)
            A buffer of the model, valid until the next call; copy it to keep it.
        """
        self._check_input(X)
        if training and self.dropout > 0 and rng is None:
            raise ValueError("forward(training=True) with dropout needs rng")
        batch = X.shape[1]
        inputs, Zs, As, masks = [X], [], [], []
        H = X
        last = self.n_layers - 1
        for i, layer in enumerate(self.layers):
            Z = layer.forward(H, out=self._buf(("Z", i), (layer.W.n_out, batch)))
            Zs.append(Z)
            if i == last:
                break
            A = self.hidden_activations[i].forward(Z, out=self._buf(("A", i), Z.shape))
            As.append(A)
            H = A
            if training and self.dropout > 0:
                M = self._buf(("M", i), Z.shape)
                rng.random(out=M, dtype=self.dtype)
                np.greater_equal(M, self.dtype.type(self.dropout), out=M)  # 1.0 = keep
                M *= self.dtype.type(1.0 / (1.0 - self.dropout))
                H = np.multiply(A, M, out=self._buf(("D", i), Z.shape))
                masks.append(M)
            inputs.append(H)
        P, lse = softmax(Zs[-1], out=self._buf("P", Zs[-1].shape), return_lse=True)
        self._cache = (inputs, Zs, As, masks, P, lse) if training else None
        return P

    def backward(self, y):
        """Back-propagate the mean softmax cross-entropy of the last training forward.

        Fills ``grad_W``/``grad_b`` of every layer.

        Parameters
        ----------
        y : int ndarray, shape (batch,)
            Class codes of the batch given to ``forward(..., training=True)``.

        Returns
        -------
        float
            The mean cross-entropy of the batch (NaN/Inf when training diverged).
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a preceding forward(X, training=True)")
        inputs, Zs, As, masks, P, lse = self._cache
        self._cache = None
        cols = np.arange(P.shape[1])
        loss = float(np.mean(lse - Zs[-1][y, cols]))
        G = cross_entropy_grad(P, y, out=self._buf(("G", self.n_layers - 1), P.shape))
        for i in range(self.n_layers - 1, -1, -1):
            dH = self.layers[i].backward(G, inputs[i], need_dX=i > 0,
                                         out=self._buf(("dH", i), inputs[i].shape)
                                         if i > 0 else None)
            if i == 0:
                break
            if masks:
                dH *= masks[i - 1]
            G = self.hidden_activations[i - 1].backward(Zs[i - 1], As[i - 1], dH,
                                                        work=self._buf(("W", i), dH.shape))
        return loss

    def activations(self, X, batch_size=1024):
        """Per-layer post-activation outputs, for cosine growth.

        Computed ``batch_size`` columns at a time, so the temporaries stay
        small however many samples are asked for.

        Parameters
        ----------
        X : ndarray, shape (n_in, n_samples)
            Any memory order (copied to C order when it is not).
        batch_size : int, default 1024

        Returns
        -------
        list of ndarray
            ``[X, h1, ..., softmax]`` (``n_layers + 1`` arrays; all but ``X``
            freshly allocated; no dropout). Layer ``l`` connects ``acts[l]``
            to ``acts[l + 1]``.
        """
        self._check_input(X, contiguous=False)
        X = np.ascontiguousarray(X)
        n = X.shape[1]
        acts = [X] + [np.empty((size, n), dtype=self.dtype) for size in self.layer_sizes[1:]]
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            P = self.forward(X if e - s == n else np.ascontiguousarray(X[:, s:e]))
            for i in range(self.n_layers - 1):
                acts[i + 1][:, s:e] = self._ws[("A", i)]
            acts[-1][:, s:e] = P
        return acts

    def predict_proba(self, X, batch_size=1024):
        """Probabilities for every column of ``X``, shape ``(n_classes, n_samples)``.

        ``X`` (model dtype, shape ``(n_in, n_samples)``) may be in any memory
        order; it is copied ``batch_size`` columns at a time.
        """
        self._check_input(X, contiguous=False)
        n = X.shape[1]
        out = np.empty((self.layer_sizes[-1], n), dtype=self.dtype)
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            out[:, s:e] = self.forward(np.ascontiguousarray(X[:, s:e]))
        return out

    def predict_codes(self, X, batch_size=1024):
        """Most probable class code for every column of ``X`` (int64)."""
        return np.argmax(self.predict_proba(X, batch_size), axis=0).astype(np.int64)

    # ------------------------------------------------------------ state
    def state_dict(self):
        """Everything needed to rebuild the model: arrays and JSON-able scalars.

        Keys: ``layer_sizes`` (list), ``activation``, ``dropout``, ``dtype``
        (str), and per layer ``l``: ``layers.{l}.indptr``, ``.indices``,
        ``.data``, ``.bias`` (copies).
        """
        if not isinstance(self.activation, str):
            raise ValueError("state_dict() needs activation given by name")
        d = {"layer_sizes": list(self.layer_sizes), "activation": self.activation,
             "dropout": self.dropout, "dtype": self.dtype.name}
        for i, layer in enumerate(self.layers):
            d[f"layers.{i}.indptr"] = layer.W.indptr.copy()
            d[f"layers.{i}.indices"] = layer.W.indices.copy()
            d[f"layers.{i}.data"] = layer.W.data.copy()
            d[f"layers.{i}.bias"] = layer.b.copy()
        return d

    def load_state_dict(self, d):
        """Load a :meth:`state_dict` of a model with the same layer sizes and dtype."""
        if [int(s) for s in d["layer_sizes"]] != self.layer_sizes:
            raise ValueError(f"state has layer_sizes {list(d['layer_sizes'])}, this model "
                             f"{self.layer_sizes}")
        if np.dtype(str(d["dtype"])) != self.dtype:
            raise ValueError(f"state has dtype {d['dtype']}, this model {self.dtype}")
        self.activation = str(d["activation"])
        self.dropout = float(d["dropout"])
        self._make_activations()
        for i, layer in enumerate(self.layers):
            W = CSRMatrix(np.array(d[f"layers.{i}.data"], dtype=self.dtype),
                          np.array(d[f"layers.{i}.indices"]), np.array(d[f"layers.{i}.indptr"]),
                          layer.W.shape, full_check=True)
            layer.set_weight(W)
            layer.b[...] = d[f"layers.{i}.bias"]
        self._cache = None

    @classmethod
    def from_state_dict(cls, d, *, backend="auto"):
        """Build a model from a :meth:`state_dict` (no random draws matter)."""
        model = cls(d["layer_sizes"], str(d["activation"]), epsilon=1e-9,
                    dtype=np.dtype(str(d["dtype"])), backend=backend, random_state=0)
        model.load_state_dict(d)
        return model

    def __repr__(self):
        return (f"SparseMLP(layer_sizes={self.layer_sizes}, activation={self.activation!r}, "
                f"n_connections={self.n_connections}, dtype={self.dtype.name})")
