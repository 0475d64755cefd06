"""The sparse multi-layer perceptron (feature-major, softmax output)."""

from __future__ import annotations

import logging

import numpy as np

from .._random import check_random_state
from ..backends import get_backend
from ..device import (PicklesArrayModule, check_device, empty_aligned, fill_uniform, host_scalar,
                      module_for, require_cuda, to_host)
from ..sparse import CSRMatrix
from .activations import get_activation
from .init import erdos_renyi
from .layers import SparseLinear
from .losses import cross_entropy_grad, softmax

logger = logging.getLogger(__name__)

__all__ = ["SparseMLP", "ForwardBuffers"]


class ForwardBuffers(PicklesArrayModule):
    """The work arrays of forward and backward passes, reused from one call to the next.

    A model keeps one set for its training batches; a caller that runs
    passes of another shape (the topology update's activation pass) keeps
    its own (:meth:`SparseMLP.new_buffers`), so neither reallocates the
    other's arrays at every switch.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    dtype : dtype
    """

    def __init__(self, xp, dtype):
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.arrays = {}

    def get(self, key, shape):
        """The array called ``key``, of ``shape`` (allocated, uninitialised, when that changed)."""
        arr = self.arrays.get(key)
        if arr is None or arr.shape != shape:
            arr = empty_aligned(self.xp, shape, self.dtype)   # line-aligned rows: fast kernels
            self.arrays[key] = arr
        return arr

    @property
    def nbytes(self):
        """Bytes held by the arrays."""
        return sum(int(arr.nbytes) for arr in self.arrays.values())

    def fits(self, model):
        """Whether these buffers suit ``model`` (same array module and dtype)."""
        return self.xp is model.xp and self.dtype == model.dtype

    def __getstate__(self):
        state = super().__getstate__()
        state["arrays"] = {}  # scratch space, not state
        return state


class SparseMLP(PicklesArrayModule):
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
    init : {"he_sparse", "he", "glorot"}, default "he_sparse"
        Initial weights (:func:`~ctre_sparse.nn.init.erdos_renyi`): "he_sparse"
        scales each neuron's weights to its real number of inputs, so the
        signal keeps its scale through very sparse layers; "he" and "glorot"
        to the dense fan-in (the CTRE authors' choice, under which a layer
        with a few inputs per neuron shrinks the signal; docs/accuracy.md).
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
                 dropout=0.0, dtype=np.float32, init="he_sparse", backend="auto", index_dtype=None,
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
        self.device = "cpu"
        self.xp = np  # array module of every array of the model, kept for the hot loops
        self._make_activations()
        self._buffers = ForwardBuffers(self.xp, self.dtype)
        self._cache = None

    def _make_activations(self):
        self.hidden_activations = [get_activation(self.activation, i)
                                   for i in range(len(self.layer_sizes) - 2)]
        for act in self.hidden_activations:
            act.xp = self.xp

    def to_device(self, device):
        """Move the model to ``"cpu"`` (NumPy arrays) or ``"cuda"`` (CuPy arrays), in place.

        Weights, biases, gradients and work buffers all move; the kernels then
        follow the arrays (``backend="auto"`` picks ``cuda`` for CuPy). Move
        the optimizer state as well (:meth:`SGD.to_device`, or
        :meth:`Trainer.to_device` for both).

        Parameters
        ----------
        device : {"cpu", "cuda"}

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If ``device`` is unknown, if it is "cuda" and the CUDA backend is
            not available here (the message gives the reason), or if the
            model's ``backend`` cannot run on that device.
        """
        device = check_device(device)
        if device == "cuda":
            require_cuda("SparseMLP.to_device('cuda')")
        if (self.backend == "cuda") != (device == "cuda") and self.backend != "auto":
            raise ValueError(f"backend {self.backend!r} cannot run on device {device!r}; "
                             "use backend='auto'")
        xp = module_for(device)
        for layer in self.layers:
            layer.to_device(device)
        self.device, self.xp = device, xp
        self._make_activations()
        self._buffers = ForwardBuffers(xp, self.dtype)
        self._cache = None
        return self

    @property
    def buffers(self):
        """The model's own :class:`ForwardBuffers` (the work arrays of its training batches)."""
        return self._buffers

    def new_buffers(self):
        """Empty :class:`ForwardBuffers` for this model's device and dtype.

        For callers that run passes of their own shape between training
        batches (see :meth:`activations`).
        """
        return ForwardBuffers(self.xp, self.dtype)

    def _to_model(self, X):
        """``X`` (NumPy, or this model's array type) as a C-contiguous array of the model."""
        if isinstance(X, np.ndarray):
            X = np.ascontiguousarray(X)  # one contiguous host block per copy to a device
        return self.xp.ascontiguousarray(self.xp.asarray(X))

    # ------------------------------------------------------------ properties
    @property
    def n_layers(self):
        """Number of weight layers."""
        return len(self.layers)

    @property
    def n_connections(self):
        """Total number of stored connections over all layers."""
        return sum(layer.W.nnz for layer in self.layers)

    def _check_input(self, X, contiguous=True):
        """``contiguous=False``: any memory order, and NumPy input to a GPU model is accepted."""
        ok = isinstance(X, self.xp.ndarray) or (not contiguous and isinstance(X, np.ndarray))
        if not ok or X.ndim != 2 or X.shape[0] != self.layer_sizes[0]:
            raise ValueError(f"X must be a feature-major {self.xp.__name__} array (the model is "
                             f"on {self.device}) of shape ({self.layer_sizes[0]}, batch), got "
                             f"{getattr(X, 'shape', type(X).__name__)} ({type(X).__name__})")
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
            A CuPy generator when the model is on the GPU (see
            :func:`ctre_sparse.device.dropout_generator`).

        Returns
        -------
        ndarray, shape (n_classes, batch)
            A buffer of the model, valid until the next call; copy it to keep it.
        """
        self._check_input(X)
        if training and self.dropout > 0 and rng is None:
            raise ValueError("forward(training=True) with dropout needs rng")
        return self._forward(X, self._buffers, training, rng)[0]

    def _forward(self, X, buffers, training=False, rng=None):
        """``(P, hidden outputs)`` of a checked ``X``, computed in ``buffers``."""
        batch = X.shape[1]
        inputs, Zs, As, masks = [X], [], [], []
        H = X
        last = self.n_layers - 1
        for i, layer in enumerate(self.layers):
            Y = layer.forward(H, out=buffers.get(("Z", i), (layer.W.n_out, batch)),
                              bias=i == last)
            if i == last:
                Zs.append(Y)
                break
            Z, A = self.hidden_activations[i].forward_with_bias(
                Y, layer.b, out=buffers.get(("A", i), Y.shape), backend=self.backend)
            Zs.append(Z)
            As.append(A)
            H = A
            if training and self.dropout > 0:
                M = fill_uniform(rng, buffers.get(("M", i), Z.shape))
                self.xp.greater_equal(M, self.dtype.type(self.dropout), out=M)  # 1.0 = keep
                M *= self.dtype.type(1.0 / (1.0 - self.dropout))
                H = self.xp.multiply(A, M, out=buffers.get(("D", i), Z.shape))
                masks.append(M)
            inputs.append(H)
        P, lse = softmax(Zs[-1], out=buffers.get("P", Zs[-1].shape), return_lse=True,
                         xp=self.xp)
        self._cache = (inputs, Zs, As, masks, P, lse) if training else None
        return P, As

    def backward(self, y, n_total=None):
        """Back-propagate the mean softmax cross-entropy of the last training forward.

        Fills ``grad_W``/``grad_b`` of every layer.

        Parameters
        ----------
        y : int ndarray, shape (batch,)
            Class codes of the batch given to ``forward(..., training=True)``.
        n_total : int, optional
            Data-parallel training: this batch is one shard of a global batch
            of ``n_total`` samples; the loss and the gradients are this
            shard's part of the global batch's mean (the shards' results add
            up to it). Default: the mean over this batch.

        Returns
        -------
        float
            The mean cross-entropy of the batch (NaN/Inf when training diverged).
            On the GPU a 0-d CuPy array instead, so that no batch waits for
            the device (``float(loss)`` reads it).
        """
        return self._backward(y, n_total, self._buffers)

    def _backward(self, y, n_total, buffers, output_grads=None):
        """:meth:`backward` in ``buffers``; slot ``i`` of ``output_grads`` (a list of
        ``n_layers``), when given, receives the loss gradient at layer ``i``'s output
        before its activation, ``(n_out_i, batch)`` (a buffer, valid until the next pass)."""
        if self._cache is None:
            raise RuntimeError("backward() needs a preceding forward(X, training=True)")
        inputs, Zs, As, masks, P, lse = self._cache
        self._cache = None
        xp = self.xp
        y = xp.asarray(y)  # host labels on a GPU model: one small copy
        losses = lse - Zs[-1][y, xp.arange(P.shape[1])]
        loss = host_scalar(xp.mean(losses) if n_total is None else xp.sum(losses) / n_total)
        G = cross_entropy_grad(P, y, out=buffers.get(("G", self.n_layers - 1), P.shape), xp=xp,
                               n_total=n_total)
        for i in range(self.n_layers - 1, 0, -1):
            if output_grads is not None:
                output_grads[i] = G
            dH = self.layers[i].backward(G, inputs[i], out=buffers.get(("dH", i),
                                                                        inputs[i].shape))
            if masks:
                dH *= masks[i - 1]
            act = self.hidden_activations[i - 1]
            work = buffers.get(("W", i), dH.shape) if act.needs_work else None
            G = act.backward(Zs[i - 1], As[i - 1], dH, work=work, backend=self.backend)
        if output_grads is not None:
            output_grads[0] = G
        self.layers[0].backward(G, inputs[0], need_dX=False)
        return loss

    def activations(self, X, batch_size=1024, *, buffers=None):
        """Per-layer post-activation outputs, for cosine growth.

        Computed ``batch_size`` columns at a time, so the temporaries stay
        small however many samples are asked for.

        Parameters
        ----------
        X : ndarray, shape (n_in, n_samples)
            Any memory order (copied to C order when it is not).
        batch_size : int, default 1024
        buffers : ForwardBuffers, optional
            Work arrays of the forward passes (:meth:`new_buffers`); default:
            the model's own, which its training batches use. A caller that
            alternates this pass with training keeps its own, so that neither
            reallocates the other's arrays. The values do not depend on it.

        Returns
        -------
        list of ndarray
            ``[X, h1, ..., softmax]`` (``n_layers + 1`` arrays; all but ``X``
            freshly allocated; no dropout). Layer ``l`` connects ``acts[l]``
            to ``acts[l + 1]``. Arrays of the model's device (a NumPy ``X``
            is copied to a GPU model's device first).
        """
        self._check_input(X, contiguous=False)
        if buffers is None:
            buffers = self._buffers
        elif not buffers.fits(self):
            raise ValueError("buffers are for another device or dtype; use model.new_buffers()")
        X = self._to_model(X)
        n = X.shape[1]
        xp = self.xp
        acts = [X] + [xp.empty((size, n), dtype=self.dtype) for size in self.layer_sizes[1:]]
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            P, hidden = self._forward(X if e - s == n else xp.ascontiguousarray(X[:, s:e]),
                                      buffers)
            for i, A in enumerate(hidden):
                acts[i + 1][:, s:e] = A
            acts[-1][:, s:e] = P
        return acts

    def loss_gradients(self, X, y, *, rng=None, batch_size=1024, buffers=None):
        """Every layer's input and the loss gradient at its output, over the columns of ``X``.

        What gradient-based growth scores absent connections by: the gradient
        of the mean cross-entropy over the ``n`` samples with respect to a
        weight ``W_l[j, i]``, present or not, is ``G_l[j, :] . H_l[i, :]``.
        Computed ``batch_size`` columns at a time (a training forward pass,
        with dropout when the model has it, and a backward pass, which also
        overwrites the layers' ``grad_W`` / ``grad_b``), so the temporaries
        stay small.

        Parameters
        ----------
        X : ndarray, shape (n_in, n)
            Any memory order (NumPy input is copied to a GPU model's device).
        y : int ndarray, shape (n,)
            Class codes.
        rng : Generator, optional
            For dropout (required when ``dropout > 0``; a CuPy generator for a
            model on the GPU).
        batch_size : int, default 1024
        buffers : ForwardBuffers, optional
            As in :meth:`activations`.

        Returns
        -------
        inputs : list of ndarray
            ``H_l``, shape ``(n_in_l, n)``: the raw input for layer 0.
        grads : list of ndarray
            ``G_l = dL / dZ_l``, shape ``(n_out_l, n)``, with ``L`` the mean
            loss over the ``n`` samples.
        """
        self._check_input(X, contiguous=False)
        if buffers is None:
            buffers = self._buffers
        elif not buffers.fits(self):
            raise ValueError("buffers are for another device or dtype; use model.new_buffers()")
        if self.dropout > 0 and rng is None:
            raise ValueError("loss_gradients with dropout needs rng")
        X = self._to_model(X)
        xp = self.xp
        n = X.shape[1]
        y = xp.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {tuple(y.shape)}")
        sizes = self.layer_sizes
        inputs = [X] + [xp.empty((s, n), dtype=self.dtype) for s in sizes[1:-1]]
        grads = [xp.empty((s, n), dtype=self.dtype) for s in sizes[1:]]
        slots = [None] * self.n_layers
        for s in range(0, n, max(1, int(batch_size))):
            e = min(n, s + max(1, int(batch_size)))
            self._forward(X if e - s == n else xp.ascontiguousarray(X[:, s:e]), buffers,
                          training=True, rng=rng)
            for i in range(1, self.n_layers):
                inputs[i][:, s:e] = self._cache[0][i]
            self._backward(y[s:e], n, buffers, output_grads=slots)  # the chunk's part of the mean
            for i, G in enumerate(slots):
                grads[i][:, s:e] = G
        return inputs, grads

    def predict_proba(self, X, batch_size=1024):
        """Probabilities for every column of ``X``, shape ``(n_classes, n_samples)``.

        ``X`` (model dtype, shape ``(n_in, n_samples)``) may be in any memory
        order; it is copied ``batch_size`` columns at a time (to the device,
        for a NumPy ``X`` and a GPU model). The result is an array of the
        model's device.
        """
        self._check_input(X, contiguous=False)
        n = X.shape[1]
        out = self.xp.empty((self.layer_sizes[-1], n), dtype=self.dtype)
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            out[:, s:e] = self.forward(self._to_model(X[:, s:e]))
        return out

    def predict_codes(self, X, batch_size=1024):
        """Most probable class code for every column of ``X`` (int64, model's device)."""
        return self.xp.argmax(self.predict_proba(X, batch_size), axis=0).astype(np.int64)

    # ------------------------------------------------------------ state
    def state_dict(self):
        """Everything needed to rebuild the model: arrays and JSON-able scalars.

        Keys: ``layer_sizes`` (list), ``activation``, ``dropout``, ``dtype``
        (str), and per layer ``l``: ``layers.{l}.indptr``, ``.indices``,
        ``.data``, ``.bias`` (NumPy copies, also from a GPU model).
        """
        if not isinstance(self.activation, str):
            raise ValueError("state_dict() needs activation given by name")
        d = {"layer_sizes": list(self.layer_sizes), "activation": self.activation,
             "dropout": self.dropout, "dtype": self.dtype.name}
        for i, layer in enumerate(self.layers):
            d[f"layers.{i}.indptr"] = _host_copy(layer.W.indptr)
            d[f"layers.{i}.indices"] = _host_copy(layer.W.indices)
            d[f"layers.{i}.data"] = _host_copy(layer.W.data)
            d[f"layers.{i}.bias"] = _host_copy(layer.b)
        return d

    def load_state_dict(self, d):
        """Load a :meth:`state_dict` of a model with the same layer sizes and dtype.

        The arrays (NumPy or CuPy) are copied to the model's device.
        """
        if [int(s) for s in d["layer_sizes"]] != self.layer_sizes:
            raise ValueError(f"state has layer_sizes {list(d['layer_sizes'])}, this model "
                             f"{self.layer_sizes}")
        if np.dtype(str(d["dtype"])) != self.dtype:
            raise ValueError(f"state has dtype {d['dtype']}, this model {self.dtype}")
        self.activation = str(d["activation"])
        self.dropout = float(d["dropout"])
        self._make_activations()
        for i, layer in enumerate(self.layers):
            W = CSRMatrix(_host_array(d[f"layers.{i}.data"], dtype=self.dtype),
                          _host_array(d[f"layers.{i}.indices"]),
                          _host_array(d[f"layers.{i}.indptr"]), layer.W.shape, full_check=True)
            layer.set_weight(W.to_device(self.device))
            bias = _host_array(d[f"layers.{i}.bias"], dtype=self.dtype)
            if bias.shape != (W.n_out,) or not np.all(np.isfinite(bias)):
                raise ValueError(f"layer {i}: the bias must be {W.n_out} finite values, got "
                                 f"shape {bias.shape}")
            layer.b[...] = self.xp.asarray(bias)
        self._cache = None

    @classmethod
    def from_state_dict(cls, d, *, backend="auto", device="cpu"):
        """Build a model from a :meth:`state_dict` (no random draws matter) on ``device``."""
        model = cls(d["layer_sizes"], str(d["activation"]), epsilon=1e-9,
                    dtype=np.dtype(str(d["dtype"])), backend=backend, random_state=0)
        if device != "cpu":
            model.to_device(device)
        model.load_state_dict(d)
        return model

    def __repr__(self):
        return (f"SparseMLP(layer_sizes={self.layer_sizes}, activation={self.activation!r}, "
                f"n_connections={self.n_connections}, dtype={self.dtype.name})")


def _host_copy(arr):
    """A NumPy copy of ``arr`` (NumPy or CuPy)."""
    host = to_host(arr)
    return host.copy() if host is arr else host


def _host_array(arr, dtype=None):
    """``np.array(arr, dtype)`` for NumPy input; CuPy input is copied to the host first."""
    return np.array(to_host(arr), dtype=dtype)
