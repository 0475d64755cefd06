"""CUDA backend: CuPy arrays in and out, own kernels where they win, vendor libraries elsewhere.

Same kernel contract as :mod:`ctre_sparse.backends.reference` (raw arrays,
caller-allocated outputs), with every array a C-contiguous CuPy array on the
current device.

How each op runs
----------------
- ``spmm`` / ``spmm_t``: ``csrc/cuda/spmm.cu`` / ``spmm_t.cu``; one warp per
  output row (one block per row when rows are long), lanes along the batch
  axis so every load of ``X[col, :]`` is coalesced; ``spmm_t`` reads the
  values through the cached transpose's ``t_perm`` (no atomics). cuSPARSE
  (``cupyx.scipy.sparse``) can be switched on per op with :data:`USE_CUSPARSE`
  (int32 indices only; cupyx does not take int64).
- ``sddmm``: ``sddmm.cu``, one warp per 32 consecutive nonzeros.
- ``cosine_pairs``: ``cosine.cu`` (row norms, then one warp per 32 pairs).
- ``topk_cosine`` / ``topk_abs_product``: blocks of scores by cuBLAS
  (``cupy.matmul``; of the unit-normalised rows for the cosine), existing
  connections masked by a kernel
  (``cosine.cu``), then a threshold and a stable CuPy sort of the candidates.
- ``prune_magnitude`` / ``insert``: CuPy array operations (stable sort,
  binary searches, scatters); no custom kernel.
- the training step: ``bias_activation``, ``activation_backward`` and
  ``sgd_update`` are grid-stride element-wise kernels (``training.cu``);
  ``gather_columns`` is ``cupy.take`` (which wraps out-of-range indices
  around instead of reading out of bounds).

The ``.cu`` sources are read from the installed package (``ctre_sparse/cuda``,
copied there by ``setup.py``) or, in a source checkout, from ``csrc/cuda``;
local ``#include "x.cuh"`` lines are inlined, and each source file is compiled
by NVRTC (``cupy.RawModule``, which adds ``-ftz=true``: float32 denormals
are flushed) on first use, once per device. Nothing here has run on a GPU
yet; see ``docs/gpu.md`` for what is verified and what waits for one.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

NAME = "cuda"

#: Ops that use cuSPARSE (cupyx.scipy.sparse CSR @ dense) instead of the own
#: kernels when the indices are int32. Off until measured on a GPU; set from the
#: environment as ``CTRE_SPARSE_CUSPARSE=spmm,spmm_t`` or by assigning here.
USE_CUSPARSE = {op: op in os.environ.get("CTRE_SPARSE_CUSPARSE", "").split(",")
                for op in ("spmm", "spmm_t")}
#: Mean row length (nnz / rows) from which spmm/spmm_t use one block per row.
BLOCK_ROW_MIN_MEAN = 256
#: Below this many (row, batch tile) warps the GPU is underfed by one warp per
#: row, so rows of at least 64 nonzeros are split across a block's warps instead
#: (e.g. a 10-row output layer).
SMALL_GRID_WARPS = 2048
#: Warps per thread block in the warp-per-row / warp-per-group kernels.
WARPS_PER_BLOCK = 8
#: Warps splitting one row in the block-per-row kernels.
ROW_BLOCK_WARPS = 8
#: Options passed to NVRTC.
NVRTC_OPTIONS = ("-std=c++17",)
#: A block of top-k scores is pre-filtered with a sampled threshold when more
#: than this many times k entries pass the running threshold.
TOPK_SLACK = 4
_TOPK_SAMPLE = 1 << 16
_MAX_GRID = (1 << 31) - 1

INDEX_CTYPES = {np.dtype(np.int32): "int", np.dtype(np.int64): "long long"}
VALUE_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
VECTOR_WIDTHS = (1, 2, 4, 8)  # batch columns per lane in spmm/spmm_t
_PARAMS = {"I": tuple(INDEX_CTYPES.values()), "F": tuple(VALUE_CTYPES.values()),
           "V": tuple(str(v) for v in VECTOR_WIDTHS)}

#: stem (csrc/cuda/<stem>.cu) -> kernels it defines, with their template parameters.
KERNELS = {
    "spmm": (("spmm_warp", "IFV"), ("spmm_block", "IFV")),
    "spmm_t": (("spmm_t_warp", "IFV"), ("spmm_t_block", "IFV")),
    "sddmm": (("sddmm_group", "IF"),),
    "cosine": (("row_norms", "F"), ("cosine_pairs_group", "IF"), ("topk_mask_block", "IF")),
    "training": (("bias_left_relu", "F"), ("left_relu_backward", "F"), ("sgd_update", "F")),
}

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)
_modules = {}


# ------------------------------------------------------------ availability
def _import_cupy():
    import cupy

    return cupy


def unavailable_reason():
    """Why this backend cannot run here, or None when it can.

    Reasons: CuPy is not installed or fails to import, the CUDA driver or
    runtime fails, no CUDA device is visible, the kernel sources are missing.
    """
    try:
        cp = _import_cupy()
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); install e.g. 'pip install cupy-cuda12x'"
    except Exception as exc:  # a broken CuPy install raises all sorts of things
        return f"CuPy failed to import ({type(exc).__name__}: {exc})"
    try:
        n_devices = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, insufficient driver, no device
        return f"no CUDA device (CUDA runtime/driver error: {type(exc).__name__}: {exc})"
    if n_devices == 0:
        return "no CUDA device (the CUDA runtime reports 0 devices)"
    if source_dir() is None:
        return ("CUDA kernel sources not found (looked in " +
                ", ".join(str(d) for d in _source_candidates()) + ")")
    return None


def _cupy():
    return _import_cupy()


# ----------------------------------------------------------------- sources
def _source_candidates():
    package = Path(__file__).resolve().parents[1]
    return [package / "cuda", package.parent / "csrc" / "cuda"]


def source_dir():
    """The directory holding the ``.cu`` sources: installed package first, then the checkout."""
    for d in _source_candidates():
        if (d / "common.cuh").is_file():
            return d
    return None


def load_source(stem, directory=None):
    """Return ``<stem>.cu`` with its local ``#include "x.cuh"`` lines inlined (each once).

    The result is self-contained, as NVRTC sees it (no include path needed),
    so CuPy's compile cache is keyed on the full text.
    """
    directory = Path(directory) if directory is not None else source_dir()
    if directory is None:
        raise FileNotFoundError("CUDA kernel sources not found in " +
                                ", ".join(str(d) for d in _source_candidates()))
    seen = set()

    def expand(name):
        if name in seen:
            return f"// {name} already included\n"
        seen.add(name)
        text = (directory / name).read_text()
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(f"{stem}.cu")


def template_name(kernel, *params):
    """The C++ name of one kernel instantiation, e.g. ``ctre::spmm_warp<int, float, 4>``."""
    return f"ctre::{kernel}<{', '.join(str(p) for p in params)}>"


def name_expressions(stem):
    """Every instantiation of the kernels of ``<stem>.cu`` (what NVRTC and the CI compile)."""
    names = []
    for kernel, kinds in KERNELS[stem]:
        for params in itertools.product(*(_PARAMS[k] for k in kinds)):
            names.append(template_name(kernel, *params))
    return names


def _module(stem):
    cp = _cupy()
    key = (stem, cp.cuda.Device().id)
    if key not in _modules:
        logger.debug("compiling %s.cu for device %d", stem, key[1])
        _modules[key] = cp.RawModule(code=load_source(stem), options=NVRTC_OPTIONS,
                                     name_expressions=name_expressions(stem))
    return _modules[key]


def _kernel(stem, kernel, *params):
    return _module(stem).get_function(template_name(kernel, *params))


def _ctypes(index_dtype, value_dtype):
    return INDEX_CTYPES[np.dtype(index_dtype)], VALUE_CTYPES[np.dtype(value_dtype)]


def _blocks(n, per_block):
    return int(max(1, min(-(-n // per_block), _MAX_GRID)))


def vector_width(batch):
    """Batch columns per lane for spmm/spmm_t: the smallest of 1, 2, 4, 8 covering ``batch``."""
    for v in VECTOR_WIDTHS:
        if batch <= 32 * v:
            return v
    return VECTOR_WIDTHS[-1]


# ---------------------------------------------------------------- products
def use_row_blocks(n_rows, nnz, tiles):
    """True when spmm/spmm_t should run one block (not one warp) per row: long rows, or
    few rows of moderate length (see :data:`BLOCK_ROW_MIN_MEAN`, :data:`SMALL_GRID_WARPS`)."""
    if nnz >= BLOCK_ROW_MIN_MEAN * n_rows:
        return True
    return n_rows * tiles < SMALL_GRID_WARPS and nnz >= 64 * n_rows


def _csr_rows_product(stem, indptr, indices, perm, data, dense, out):
    """Launch the warp- or block-per-row kernel of ``stem`` ("spmm" or "spmm_t")."""
    n_rows, batch = out.shape
    v = vector_width(batch)
    tiles = int(min(-(-batch // (32 * v)), 65535))
    idx_c, val_c = _ctypes(indices.dtype, data.dtype)
    arrays = (indptr, indices) + ((perm,) if perm is not None else ()) + (data, dense, out)
    args = arrays + (np.int64(n_rows), np.int64(batch))
    if use_row_blocks(n_rows, indices.shape[0], tiles):
        threads = 32 * ROW_BLOCK_WARPS
        kernel = _kernel(stem, f"{stem}_block", idx_c, val_c, v)
        kernel((_blocks(n_rows, 1), tiles), (threads,), args,
               shared_mem=threads * v * data.dtype.itemsize)
    else:
        kernel = _kernel(stem, f"{stem}_warp", idx_c, val_c, v)
        kernel((_blocks(n_rows, WARPS_PER_BLOCK), tiles), (32 * WARPS_PER_BLOCK,), args)


def _cusparse_product(indptr, indices, data, n_cols, dense, out):
    import cupyx.scipy.sparse as csp

    matrix = csp.csr_matrix((data, indices, indptr), shape=(out.shape[0], n_cols))
    out[...] = matrix @ dense


def _trivial_product(out, nnz):
    """Handle empty outputs and nnz == 0; True when nothing is left to compute."""
    if out.size == 0:
        return True
    if nnz == 0:
        out.fill(0)
        return True
    return False


def spmm(indptr, indices, data, X, out):
    """``out = W @ X``; see the reference contract."""
    if _trivial_product(out, indices.shape[0]):
        return
    if USE_CUSPARSE["spmm"] and indices.dtype == np.int32:
        _cusparse_product(indptr, indices, data, X.shape[0], X, out)
        return
    _csr_rows_product("spmm", indptr, indices, None, data, X, out)


def spmm_t(t_indptr, t_indices, t_perm, data, G, out):
    """``out = W.T @ G`` through the cached transpose; see the reference contract."""
    if _trivial_product(out, t_indices.shape[0]):
        return
    if USE_CUSPARSE["spmm_t"] and t_indices.dtype == np.int32:
        _cusparse_product(t_indptr, t_indices, data[t_perm], G.shape[0], G, out)
        return
    perm = t_perm if t_perm.dtype == t_indices.dtype else t_perm.astype(t_indices.dtype)
    _csr_rows_product("spmm_t", t_indptr, t_indices, perm, data, G, out)


def sddmm(indptr, indices, G, X, out):
    """``out[p] = dot(G[row(p)], X[indices[p]])``; see the reference contract."""
    nnz = out.shape[0]
    if nnz == 0:
        return
    n_rows, batch = G.shape
    if batch == 0:
        out.fill(0)
        return
    idx_c, val_c = _ctypes(indices.dtype, G.dtype)
    kernel = _kernel("sddmm", "sddmm_group", idx_c, val_c)
    kernel((_blocks(-(-nnz // 32), WARPS_PER_BLOCK),), (32 * WARPS_PER_BLOCK,),
           (indptr, indices, G, X, out, np.int64(n_rows), np.int64(nnz), np.int64(batch)))


# ------------------------------------------------------------------ cosine
def row_norms(M):
    """Euclidean norm of every row of a C-contiguous 2-D CuPy array."""
    cp = _cupy()
    n, length = M.shape
    norms = cp.empty(n, dtype=M.dtype)
    if n:
        kernel = _kernel("cosine", "row_norms", VALUE_CTYPES[M.dtype])
        kernel((_blocks(n, WARPS_PER_BLOCK),), (32 * WARPS_PER_BLOCK,),
               (M, norms, np.int64(n), np.int64(length)))
    return norms


def normalize_rows(M):
    """Rows scaled to unit norm; all-zero rows stay zero."""
    cp = _cupy()
    n = row_norms(M)
    return M / cp.where(n > 0, n, 1)[:, None]


def _pair_indices(rows, cols):
    cp = _cupy()
    if rows.dtype == cols.dtype and rows.dtype in INDEX_CTYPES:
        return rows, cols
    return rows.astype(cp.int64), cols.astype(cp.int64)


def cosine_pairs(A, B, rows, cols, out):
    """``out[i] = |cos(A[rows[i]], B[cols[i]])|``; see the reference contract."""
    k = rows.shape[0]
    if k == 0:
        return
    rows, cols = _pair_indices(rows, cols)
    na, nb = row_norms(A), row_norms(B)
    idx_c, val_c = _ctypes(rows.dtype, A.dtype)
    kernel = _kernel("cosine", "cosine_pairs_group", idx_c, val_c)
    kernel((_blocks(-(-k // 32), WARPS_PER_BLOCK),), (32 * WARPS_PER_BLOCK,),
           (A, B, rows, cols, na, nb, out, np.int64(k), np.int64(A.shape[1])))


def _mask_block(indptr, indices, r0, r1, n_cols, S):
    idx_c, val_c = _ctypes(indices.dtype, S.dtype)
    kernel = _kernel("cosine", "topk_mask_block", idx_c, val_c)
    kernel((_blocks(r1 - r0, WARPS_PER_BLOCK),), (32 * WARPS_PER_BLOCK,),
           (indptr, indices, np.int64(r0), np.int64(r1), np.int64(n_cols), S))


def topk_cosine(A, B, k, indptr, indices, block_rows):
    """The ``k`` absent pairs with the largest ``|cos(B[row], A[col])|``; see the contract.

    :func:`topk_abs_product` of the unit-normalised rows.
    """
    return topk_abs_product(normalize_rows(A), normalize_rows(B), k, indptr, indices, block_rows)


def topk_abs_product(A, B, k, indptr, indices, block_rows):
    """The ``k`` absent pairs with the largest ``|B[row] . A[col]|``; see the contract.

    Blocks of ``block_rows`` rows of scores are formed by cuBLAS, the stored
    connections masked to -1, and merged into a running top-k.
    """
    cp = _cupy()
    n_out, n_in = B.shape[0], A.shape[0]
    top = _DeviceTopK(k, A.dtype)
    if k > 0 and n_out and n_in:
        if indptr.dtype != indices.dtype:
            indptr = indptr.astype(indices.dtype)
        block_rows = max(1, min(int(block_rows), n_out))
        buf = cp.empty((block_rows, n_in), dtype=A.dtype)
        for r0 in range(0, n_out, block_rows):
            r1 = min(r0 + block_rows, n_out)
            S = buf[: r1 - r0]
            cp.matmul(B[r0:r1], A.T, out=S)
            cp.abs(S, out=S)
            _mask_block(indptr, indices, r0, r1, n_in, S)
            top.push(S.ravel(), r0 * n_in)
    keys, scores = top.keys, top.scores
    return keys // n_in if n_in else keys, keys % n_in if n_in else keys, scores


class _DeviceTopK:
    """Streaming top-k on the device; ties by smaller key first (the reference's rule).

    Invariant: ``keys``/``scores`` are ordered by (score desc, key asc). Every
    pushed block has keys above all kept ones and its candidates come in
    ascending key order, so a *stable* sort by descending score of
    [kept, candidates] keeps equal scores in ascending key order
    (``cupy.argsort`` is documented stable).
    """

    def __init__(self, k, dtype):
        cp = _cupy()
        self.k = int(k)
        self.keys = cp.zeros(0, dtype=cp.int64)
        self.scores = cp.zeros(0, dtype=dtype)

    def threshold(self):
        """Scores must exceed this to enter (-0.5 until k are kept; masked entries are -1)."""
        if self.k and self.keys.shape[0] == self.k:
            return float(self.scores[-1])
        return -0.5

    def push(self, flat, key_offset):
        cp = _cupy()
        if self.k == 0:
            return
        cand = self._candidates(flat, self.threshold())
        if cand.shape[0] == 0:
            return
        keys = cp.concatenate([self.keys, cand + key_offset])
        scores = cp.concatenate([self.scores, flat[cand]])
        order = cp.argsort(-scores)[: self.k]
        self.keys, self.scores = keys[order], scores[order]

    def _candidates(self, flat, threshold):
        """Ascending positions in ``flat`` holding a superset of its top-k above ``threshold``."""
        cp = _cupy()
        mask = flat > threshold
        n_pass = int(cp.count_nonzero(mask))
        if n_pass > TOPK_SLACK * self.k and n_pass > _TOPK_SAMPLE:
            est = self._sampled_threshold(flat)
            if est > threshold:
                tight = flat > est
                # exact whenever at least k entries beat est: then the k-th best does too
                if int(cp.count_nonzero(tight)) >= self.k:
                    mask = tight
        return cp.flatnonzero(mask)

    def _sampled_threshold(self, flat):
        """A score about 2k-th from the top, estimated from a strided sample."""
        cp = _cupy()
        step = max(1, flat.shape[0] // _TOPK_SAMPLE)
        sample = cp.sort(flat[::step])
        rank = int(np.ceil(2.0 * self.k * sample.shape[0] / flat.shape[0])) + 1
        if rank >= sample.shape[0]:
            return -np.inf
        return float(sample[sample.shape[0] - 1 - rank])


# ---------------------------------------------------------------- topology
def prune_magnitude(indptr, indices, data, n_remove):
    """Sorted positions kept after removing the ``n_remove`` smallest ``|data|`` (ties: lowest
    position removed first, through the stable ``cupy.argsort``)."""
    cp = _cupy()
    nnz = data.shape[0]
    if n_remove <= 0:
        return cp.arange(nnz, dtype=cp.int64)
    order = cp.argsort(cp.abs(data))
    keep = cp.ones(nnz, dtype=bool)
    keep[order[:n_remove]] = False
    return cp.flatnonzero(keep).astype(cp.int64)


def rows_of(indptr, nnz):
    """Row of every stored position (int64), by binary search on ``indptr``."""
    cp = _cupy()
    return cp.searchsorted(indptr[1:], cp.arange(nnz, dtype=indptr.dtype),
                           side="right").astype(cp.int64)


def insert(indptr, indices, data, rows, cols, values, n_cols):
    """Merge new entries into the CSR arrays; see the reference contract.

    O(nnz log m + m log m): the new keys are sorted, and each old entry moves
    by the number of new keys below it (binary search), each new one by the
    number of old keys below it. No sort of the old entries.
    """
    cp = _cupy()
    n_rows, nnz, m = indptr.shape[0] - 1, indices.shape[0], rows.shape[0]
    new_keys = rows.astype(cp.int64) * n_cols + cols.astype(cp.int64)
    order = cp.argsort(new_keys)
    sorted_new = new_keys[order]
    old_keys = rows_of(indptr, nnz) * n_cols + indices.astype(cp.int64)
    old_pos = cp.arange(nnz, dtype=cp.int64)
    new_pos_sorted = cp.arange(m, dtype=cp.int64)
    if m and nnz:
        old_pos += cp.searchsorted(sorted_new, old_keys)
        new_pos_sorted += cp.searchsorted(old_keys, sorted_new)
    new_pos = cp.empty(m, dtype=cp.int64)
    new_pos[order] = new_pos_sorted
    out_indices = cp.empty(nnz + m, dtype=indices.dtype)
    out_data = cp.empty(nnz + m, dtype=data.dtype)
    out_indices[old_pos] = indices
    out_indices[new_pos] = cols.astype(indices.dtype)
    out_data[old_pos] = data
    out_data[new_pos] = values.astype(data.dtype)
    out_indptr = indptr.astype(cp.int64)
    if m:
        out_indptr += cp.searchsorted(sorted_new // n_cols,
                                      cp.arange(n_rows + 1, dtype=cp.int64), side="left")
    return out_indptr.astype(indptr.dtype), out_indices, out_data, old_pos, new_pos


# ---------------------------------------------------------------- training step
#: Threads per block of the element-wise training kernels.
ELEMENTWISE_THREADS = 256


def _elementwise(kernel_name, dtype, n, args):
    if n == 0:
        return
    kernel = _kernel("training", kernel_name, VALUE_CTYPES[np.dtype(dtype)])
    kernel((_blocks(n, ELEMENTWISE_THREADS),), (ELEMENTWISE_THREADS,), args)


def gather_columns(X, idx, out):
    """``out[...] = X[:, idx]`` by ``cupy.take`` (an F-ordered ``X`` by whole sample rows)."""
    cp = _cupy()
    if X.flags.c_contiguous:
        cp.take(X, idx, axis=1, out=out)
    else:
        out[...] = cp.take(X.T, idx, axis=0).T


def bias_activation(Y, b, slope, Z, A):
    """``Z = Y + b[:, None]``, ``A = max(Z * slope, Z)``; see the reference contract."""
    t = Y.dtype.type
    n_rows, n_cols = Y.shape
    _elementwise("bias_left_relu", Y.dtype, n_rows * n_cols,
                 (Y, b, t(slope), Z, A, np.int64(n_rows), np.int64(n_cols)))


def activation_backward(Z, G, slope, out):
    """``out = G * f'(Z)`` for the left-slope ReLU; see the reference contract."""
    t = G.dtype.type
    _elementwise("left_relu_backward", G.dtype, G.size,
                 (Z, G, t(slope), t(1.0 - slope), np.int32(slope == 0), out, np.int64(G.size)))


def sgd_update(w, g, v, lr, mu, decay, nesterov):
    """The fused SGD step, in place; see the reference contract."""
    _elementwise("sgd_update", w.dtype, w.shape[0],
                 (w, g, v, lr, mu, decay, np.int32(bool(nesterov)), np.int64(w.shape[0])))
