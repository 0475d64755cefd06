"""What gets timed: our backends and the peers they are compared with.

Every competitor is turned into a :class:`Runner` for one op on one set of
:class:`Operands`: a no-argument callable returning the result (so it can be
checked against the reference before it is timed) plus a device sync hook.

Competitors (``name``):

``reference``, ``numba``, ``native``, ``cuda``
    Our backends, through the public ops with a preallocated ``out`` and
    ``check_finite=False`` (the O(nnz) NaN check is optional and left out).
    ``spmm_t`` uses the matrix's cached transpose, built before timing.
``scipy``
    ``scipy.sparse.csr_matrix @ X``; for ``spmm_t`` the transposed CSR is
    built once before timing (a cached transpose, as ours); scipy has no
    SDDMM, so ``sddmm`` is what a scipy/numpy user writes: gather the rows
    of G and X at the pattern and take row-wise dots, in chunks.
``torch``
    ``torch.sparse_csr_tensor(...) @ X`` sharing the NumPy buffers; the
    transposed CSR for ``spmm_t`` built before timing;
    ``torch.sparse.sampled_addmm`` for ``sddmm``.
``dense``
    BLAS on the dense equivalent: ``W_dense @ X``, ``W_dense.T @ G``, and for
    ``sddmm`` the full product ``G @ X.T`` then a gather at the pattern.
    Skipped (with the reason) when an ``n_out x n_in`` array exceeds the cap.
``cusparse``
    (GPU) ``cupyx.scipy.sparse.csr_matrix @ X`` (cuSPARSE SpMM); no SDDMM.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from ctre_sparse import ops
from ctre_sparse.backends import BACKENDS, get_backend

logger = logging.getLogger(__name__)

__all__ = ["PEER_NAMES", "Operands", "Runner", "SkipCase", "make_runner", "peer_available",
           "DEFAULT_DENSE_CAP_BYTES"]

PEER_NAMES = ("scipy", "torch", "dense", "cusparse")
#: Largest dense ``n_out x n_in`` array the dense peer may allocate (bytes).
DEFAULT_DENSE_CAP_BYTES = 4 << 30


class SkipCase(Exception):
    """This competitor cannot run this case; the message says why."""


@dataclass
class Operands:
    """The operands of one case, on the device they run on.

    ``W`` is (n_out, n_in), ``X`` is (n_in, batch), ``G`` is (n_out, batch).
    ``cache`` holds derived forms (scipy/torch/dense copies) shared by the
    ops of this case and freed with it.
    """

    W: object
    X: object
    G: object
    device: str = "cpu"
    cache: dict = field(default_factory=dict)

    def cached(self, key, build):
        """Return ``cache[key]``, building it with ``build()`` the first time."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


@dataclass
class Runner:
    """One competitor on one op: ``fn()`` runs it and returns the result."""

    fn: object
    sync: object = None
    note: str = ""


def _cuda_sync():
    import cupy

    cupy.cuda.get_current_stream().synchronize()


def peer_available(name, device="cpu"):
    """None if peer ``name`` can run on ``device`` here, else the reason it cannot."""
    if name not in PEER_NAMES:
        return f"unknown peer {name!r}; peers are {PEER_NAMES}"
    if name in ("scipy", "torch") and device != "cpu":
        return f"peer {name!r} is CPU-only in this benchmark"
    if name == "cusparse" and device != "cuda":
        return "cusparse is a GPU peer (use --device cuda)"
    module = "torch" if name == "torch" else ("cupyx.scipy.sparse" if device == "cuda" else None)
    if module is not None:
        try:
            importlib.import_module(module)
        except Exception as exc:
            return f"{module} not importable ({type(exc).__name__}: {exc})"
    return None


def make_runner(name, op, operands, *, dense_cap_bytes=DEFAULT_DENSE_CAP_BYTES):
    """Build the :class:`Runner` of competitor ``name`` for ``op`` on ``operands``.

    Raises
    ------
    SkipCase
        When the competitor cannot run this case (with the reason).
    ValueError
        For an unknown name or op.
    """
    if op not in ("spmm", "spmm_t", "sddmm"):
        raise ValueError(f"op must be 'spmm', 'spmm_t' or 'sddmm', got {op!r}")
    if name in BACKENDS:
        return _ours(name, op, operands)
    builders = {"scipy": _scipy, "torch": _torch, "dense": _dense, "cusparse": _cusparse}
    if name not in builders:
        raise ValueError(f"competitor must be one of {BACKENDS + PEER_NAMES}, got {name!r}")
    reason = peer_available(name, operands.device)
    if reason:
        raise SkipCase(reason)
    if name == "dense":
        return _dense(op, operands, dense_cap_bytes)
    return builders[name](op, operands)


# ----------------------------------------------------------------- ours
def _ours(name, op, o):
    get_backend(name)  # raises BackendUnavailableError with the reason
    if (name == "cuda") != (o.device == "cuda"):
        raise SkipCase(f"backend {name!r} does not run on device {o.device!r}")
    W, X, G = o.W, o.X, o.G
    xp = W.xp
    sync = _cuda_sync if o.device == "cuda" else None
    if op == "spmm":
        out = xp.empty((W.n_out, X.shape[1]), dtype=W.dtype)
        return Runner(lambda: ops.spmm(W, X, out=out, backend=name, check_finite=False), sync)
    if op == "spmm_t":
        W.transpose_arrays()  # built once, outside the clock
        out = xp.empty((W.n_in, G.shape[1]), dtype=W.dtype)
        return Runner(lambda: ops.spmm_t(W, G, out=out, backend=name, check_finite=False), sync)
    out = xp.empty(W.nnz, dtype=W.dtype)
    return Runner(lambda: ops.sddmm(W, G, X, out=out, backend=name), sync)


# ----------------------------------------------------------------- scipy
def _scipy(op, o):
    W, X, G = o.W, o.X, o.G
    if op == "spmm":
        S = o.cached("scipy", W.to_scipy)
        return Runner(lambda: S @ X)
    if op == "spmm_t":
        St = o.cached("scipy_t", lambda: W.to_scipy().T.tocsr())
        return Runner(lambda: St @ G)
    reference = get_backend("reference")
    out = np.empty(W.nnz, dtype=W.dtype)

    def gather_dots():
        reference.sddmm(W.indptr, W.indices, G, X, out)
        return out

    return Runner(gather_dots, note="numpy gather + row dots (scipy has no SDDMM)")


# ----------------------------------------------------------------- torch
def _torch_csr(torch, indptr, indices, data, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(indices),
                                       torch.from_numpy(data), size=shape)


def _torch(op, o):
    import torch

    W = o.W
    X, G = torch.from_numpy(o.X), torch.from_numpy(o.G)
    T = o.cached("torch", lambda: _torch_csr(torch, W.indptr, W.indices, W.data, W.shape))
    if op == "spmm":
        return Runner(lambda: torch.matmul(T, X))
    if op == "spmm_t":
        def build_t():
            t_indptr, t_indices, t_perm = W.transpose_arrays()
            return _torch_csr(torch, t_indptr, t_indices, np.ascontiguousarray(W.data[t_perm]),
                              (W.n_in, W.n_out))

        Tt = o.cached("torch_t", build_t)
        return Runner(lambda: torch.matmul(Tt, G))
    Xt = X.T

    def sampled():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse.sampled_addmm(T, G, Xt, beta=0.0).values()

    return Runner(sampled, note="torch.sparse.sampled_addmm")


# ----------------------------------------------------------------- dense
def _dense(op, o, cap_bytes):
    W = o.W
    xp = W.xp
    need = W.n_out * W.n_in * W.dtype.itemsize
    if need > cap_bytes:
        raise SkipCase(f"dense {W.n_out}x{W.n_in} {W.dtype} needs {need / 2**30:.1f} GiB "
                       f"> cap {cap_bytes / 2**30:.1f} GiB")
    sync = _cuda_sync if o.device == "cuda" else None
    X, G = o.X, o.G
    if op in ("spmm", "spmm_t"):
        Wd = o.cached("dense", W.toarray)
        if op == "spmm":
            out = xp.empty((W.n_out, X.shape[1]), dtype=W.dtype)
            return Runner(lambda: xp.matmul(Wd, X, out=out), sync)
        out = xp.empty((W.n_in, G.shape[1]), dtype=W.dtype)
        return Runner(lambda: xp.matmul(Wd.T, G, out=out), sync)
    o.cache.pop("dense", None)  # sddmm needs the product buffer, not W: free W first
    keys = (W.row_indices().astype(np.int64) * W.n_in + W.indices.astype(np.int64))
    P = xp.empty((W.n_out, W.n_in), dtype=W.dtype)
    out = xp.empty(W.nnz, dtype=W.dtype)

    def product_then_gather():
        xp.matmul(G, X.T, out=P)
        xp.take(P.ravel(), keys, out=out)
        return out

    return Runner(product_then_gather, sync, note="dense G @ X.T then gather at the pattern")


# ----------------------------------------------------------------- cusparse
def _cusparse(op, o):
    import cupyx.scipy.sparse as csp

    W, X, G = o.W, o.X, o.G
    if op == "sddmm":
        raise SkipCase("cupyx.scipy.sparse exposes no SDDMM")
    if op == "spmm":
        S = o.cached("cusparse", lambda: csp.csr_matrix((W.data, W.indices, W.indptr),
                                                        shape=W.shape))
        return Runner(lambda: S @ X, _cuda_sync)
    St = o.cached("cusparse_t", lambda: csp.csr_matrix((W.data, W.indices, W.indptr),
                                                       shape=W.shape).T.tocsr())
    return Runner(lambda: St @ G, _cuda_sync)
