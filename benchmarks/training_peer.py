"""The training benchmark's peer: the same MLP in PyTorch, dense weights times binary masks.

This is how sparse training is usually done in PyTorch (and what a user of
this package would otherwise write): every layer keeps a dense weight
``W`` (n_out x n_in) and a fixed 0/1 mask ``M``; the forward pass uses
``W * M``, so autograd's weight gradient is masked (``dL/dW = dL/d(WM) * M``);
``torch.optim.SGD`` with Nesterov momentum and weight decay on the weights
(not the biases) updates them. Batches are sample-major (``(batch, 784)``),
PyTorch's natural layout. Work per sample is that of the dense network,
whatever the sparsity.

The peer starts from the initial weights and pattern of our model, so the
first mini-batch's probabilities and gradients can be checked against the
reference backend before anything is timed.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["TorchDenseMasked", "peer_unavailable_reason", "DENSE_PEER_CAP_BYTES"]

#: Largest total of dense weight-sized tensors (weights, masks, gradients, momentum,
#: products) the peer may hold, in bytes.
DENSE_PEER_CAP_BYTES = 8 << 30


def peer_unavailable_reason(device="cpu"):
    """None if the torch peer can run on ``device``, else the reason it cannot."""
    try:
        import torch
    except Exception as exc:  # not installed or broken: the peer is skipped, not the run
        return f"torch not importable ({type(exc).__name__}: {exc})"
    if device == "cuda" and not torch.cuda.is_available():
        return "torch has no CUDA device"
    return None


class TorchDenseMasked:
    """Dense-with-masks training of the layers of a :class:`~ctre_sparse.nn.SparseMLP`.

    Parameters
    ----------
    model : SparseMLP
        Source of the layer sizes, the initial weights, biases and masks.
    learning_rate, momentum, weight_decay : float
        As our :class:`~ctre_sparse.nn.SGD` (Nesterov momentum, decay on weights only).
    device : {"cpu", "cuda"}, default "cpu"
    """

    #: Dense weight-sized tensors alive during a step: W, M, W*M, grad, momentum.
    TENSORS_PER_WEIGHT = 5

    def __init__(self, model, *, learning_rate, momentum, weight_decay, device="cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        dev = self.device
        self.weights, self.masks, self.biases = [], [], []
        for layer in model.layers:
            W = layer.W
            mask = np.zeros(W.shape, dtype=W.dtype)
            mask[W.row_indices(), W.indices] = 1
            self.weights.append(torch.from_numpy(W.toarray()).to(dev).requires_grad_(True))
            self.masks.append(torch.from_numpy(mask).to(dev))
            self.biases.append(torch.from_numpy(np.asarray(layer.b).copy()).to(dev)
                               .requires_grad_(True))
        self.patterns = [(layer.W.row_indices(), layer.W.indices) for layer in model.layers]
        self.optimizer = torch.optim.SGD(
            [{"params": self.weights, "weight_decay": weight_decay},
             {"params": self.biases, "weight_decay": 0.0}],
            lr=learning_rate, momentum=momentum, nesterov=momentum > 0)

    @classmethod
    def too_large(cls, layer_sizes, dtype, cap_bytes=DENSE_PEER_CAP_BYTES):
        """None if the dense peer fits under ``cap_bytes``, else the reason it does not."""
        n = sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
        need = cls.TENSORS_PER_WEIGHT * n * np.dtype(dtype).itemsize
        if need > cap_bytes:
            return (f"dense peer needs about {need / 2**30:.1f} GiB for weights, masks, products, "
                    f"gradients and momentum > cap {cap_bytes / 2**30:.1f} GiB")
        return None

    def logits(self, x):
        """Logits, shape ``(batch, n_classes)``, of sample-major ``x``."""
        F = self.torch.nn.functional
        h = x
        last = len(self.weights) - 1
        for i, (W, M, b) in enumerate(zip(self.weights, self.masks, self.biases)):
            h = F.linear(h, W * M, b)
            if i < last:
                h = self.torch.relu(h)
        return h

    def sync(self):
        """Wait for the device (no-op on the CPU)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def _loss(self, xb, yb):
        logits = self.logits(xb)
        return logits, self.torch.nn.functional.cross_entropy(logits, yb)

    def check(self, Xb, yb, ref):
        """Max relative error of the first batch (probabilities, gradients) against ``ref``.

        ``Xb`` is feature-major (as ours); ``ref`` is what
        :func:`benchmarks.training.reference_pass` returns. The
        gradients are read at the pattern (weights) and for the biases, then
        cleared; no step is taken. Doubles as the peer's warm-up.
        """
        from .harness import relative_error

        torch = self.torch
        logits, loss = self._loss(
            torch.from_numpy(np.ascontiguousarray(Xb.T)).to(self.device),
            torch.from_numpy(np.asarray(yb, dtype=np.int64)).to(self.device))
        loss.backward()
        P = torch.softmax(logits.detach(), dim=1).cpu().numpy().T
        errors = [relative_error(P, ref["P"])]
        for W, b, (rows, cols), (gW, gb) in zip(self.weights, self.biases, self.patterns,
                                               ref["grads"]):
            errors.append(relative_error(W.grad.cpu().numpy()[rows, cols], gW))
            errors.append(relative_error(b.grad.cpu().numpy(), gb))
        self.optimizer.zero_grad(set_to_none=True)
        return max(errors)

    def run_epoch(self, X, y, batch, *, seed=0, max_batches=0):
        """Train one epoch (or its first ``max_batches`` batches) and time it.

        Parameters
        ----------
        X : ndarray, shape (n_features, n_samples)
            Feature-major data (as ours); transposed to sample-major once,
            before the clock starts.
        y : int ndarray, shape (n_samples,)
        batch : int
        seed : int
            Seeds the batch order.
        max_batches : int, default 0
            0 times the whole epoch; otherwise only the first ``max_batches``
            batches are run and the time is scaled to the epoch by sample count
            (``extrapolated`` is True then).

        Returns
        -------
        dict
            ``seconds_per_epoch``, ``timed_seconds``, ``batches_timed``,
            ``n_batches``, ``extrapolated``, ``train_loss``,
            ``train_accuracy`` (over the timed batches), ``threads``.
        """
        torch = self.torch
        Xs = torch.from_numpy(np.ascontiguousarray(X.T)).to(self.device)
        ys = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)
        n = Xs.shape[0]
        order = torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(self.device)
        n_batches = math.ceil(n / batch)
        timed = n_batches if not max_batches else min(int(max_batches), n_batches)
        total_loss, correct, seen = 0.0, 0, 0
        self.sync()
        t0 = time.perf_counter()
        for k in range(timed):
            idx = order[k * batch:(k + 1) * batch]
            xb, yb = Xs.index_select(0, idx), ys.index_select(0, idx)
            logits, loss = self._loss(xb, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += float(loss.detach()) * idx.shape[0]
            correct += int((logits.detach().argmax(dim=1) == yb).sum())
            seen += idx.shape[0]
        self.sync()
        seconds = time.perf_counter() - t0
        return {"seconds_per_epoch": seconds * n / seen, "timed_seconds": seconds,
                "batches_timed": timed, "n_batches": n_batches, "extrapolated": timed < n_batches,
                "train_loss": total_loss / seen, "train_accuracy": correct / seen,
                "threads": int(torch.get_num_threads())}
