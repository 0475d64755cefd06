"""Malformed-input fuzz cases for every op, run in a child process (see test_fuzz_csr.py).

``python tests/fuzz_csr.py BACKEND`` runs every case on one CPU backend and
prints one JSON object per line to stdout: the case id, the op, what was
expected ("error": a ValueError; "ok": a result equal to the dense oracle)
and what came; then ``{"done": number of cases}``. Before each case its id
goes to stderr, so that a crash (a signal kills the child) names the case it
died in. ``--list`` prints the
ids; ``--only ID`` runs one case, ``--after ID`` the cases after one (to go
on after a crash).

The cases use only the public API (no ``check=`` argument, no
``validate()``), so the same file also probes older code.

Cases
-----
* ``struct/...``: a malformed CSR structure (indptr not from 0, decreasing,
  not ending at nnz, negative, huge; columns out of range, negative, 1e9;
  unsorted or repeated columns; lengths, dtypes, layouts, shapes) given to
  every op taking a matrix, in three ways: built with ``CSRMatrix(...)``,
  as a scipy CSR matrix whose arrays were replaced after construction, and
  by assigning the bad arrays to an already validated ``CSRMatrix``;
* ``dense/...``: malformed dense operands and arguments per op (shapes,
  dtypes, layouts, read-only or overlapping ``out``, out-of-range pairs,
  absurd sizes, values that overflow the dtype);
* ``mutate/...``: seeded random edits of one entry of a valid structure;
  the op must raise exactly when a plain-Python oracle says the edit made
  it invalid, and must match the dense oracle otherwise;
* ``valid/...``: awkward but valid inputs that must go through.

Every ``out`` is a slice of a larger buffer whose guard bytes are checked
afterwards, and a rejected call must leave ``out`` untouched.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import scipy.sparse as sp

from ctre_sparse import (CSRMatrix, cosine_pairs, insert, prune_magnitude, sddmm, spmm, spmm_t,
                         topk_abs_product, topk_cosine)
from ctre_sparse.cosine_sketch import topk_cosine_sketch

F32, I32, I64 = np.float32, np.int32, np.int64
SHAPE = (3, 4)
# [[1, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 4]]
DATA = np.array([1, 2, 3, 4], F32)
INDICES = np.array([0, 2, 1, 3], I32)
INDPTR = np.array([0, 2, 2, 4], I32)
S = 8  # samples of the cosine activations
GUARD = 7.25  # value of the guard cells around every out


def _larger_buffer_view(values, dtype, extra=64):
    """``values`` as the head of a larger buffer (reads past the end find plausible data)."""
    buf = np.arange(len(values) + extra).astype(dtype) % 3
    buf[:len(values)] = values
    return buf[:len(values)]


def _layouts():
    """name -> (data, indices, indptr, shape): each breaks one rule of a CSR structure."""
    d, i, p = DATA, INDICES, INDPTR
    big = np.iinfo(I32).max
    return {
        "indptr_not_monotone": (d, i, np.array([0, 3, 1, 4], I32), SHAPE),
        "indptr_last_past_nnz_view": (np.ones(4, F32), _larger_buffer_view(i, I32),
                                      np.array([0, 2, 7], I32), (2, 2)),
        "indptr_last_past_nnz": (d, i, np.array([0, 2, 2, 7], I32), SHAPE),
        "indptr_last_before_nnz": (d, i, np.array([0, 1, 1, 2], I32), SHAPE),
        "indptr_first_not_zero": (d, i, np.array([1, 2, 2, 4], I32), SHAPE),
        "indptr_negative": (d, i, np.array([0, -5, 2, 4], I32), SHAPE),
        "indptr_huge": (d, i, np.array([0, big, big, 4], I32), SHAPE),
        "indptr_decreasing_at_end": (d, i, np.array([0, 2, 4, 3], I32), SHAPE),
        "indptr_longer": (d, i, np.array([0, 2, 2, 4, 4], I32), SHAPE),
        "indptr_shorter": (d, i, np.array([0, 2, 4], I32), SHAPE),
        "indptr_empty": (d, i, np.zeros(0, I32), SHAPE),
        "column_1e9": (d, np.array([0, 10**9, 1, 3], I32), p, SHAPE),
        "column_negative": (d, np.array([0, -1, 1, 3], I32), p, SHAPE),
        "column_n_in": (d, np.array([0, 2, 1, 4], I32), p, SHAPE),
        "column_n_in_plus_1": (d, np.array([0, 2, 1, 5], I32), p, SHAPE),
        "column_2pow40_int64": (d, np.array([0, 2**40, 1, 3], I64), p.astype(I64), SHAPE),
        "column_int32_min": (d, np.array([0, 2, np.iinfo(I32).min, 3], I32), p, SHAPE),
        "unsorted_row": (d, np.array([2, 0, 1, 3], I32), p, SHAPE),
        "duplicate_in_row": (d, np.array([2, 2, 1, 3], I32), p, SHAPE),
        "mixed_int64_indices_int32_indptr": (d, i.astype(I64), p, SHAPE),
        "mixed_int32_indices_int64_indptr": (d, i, p.astype(I64), SHAPE),
        "data_shorter": (d[:3], i, p, SHAPE),
        "data_longer": (np.ones(5, F32), i, p, SHAPE),
        "data_int64": (d.astype(I64), i, p, SHAPE),
        "data_float16": (d.astype(np.float16), i, p, SHAPE),
        "indices_float": (d, i.astype(np.float64), p.astype(np.float64), SHAPE),
        "indices_uint32": (d, i.astype(np.uint32), p.astype(np.uint32), SHAPE),
        "indices_2d": (d, i.reshape(2, 2), p, SHAPE),
        "indices_strided": (d, np.repeat(i, 2)[::2], p, SHAPE),
        "indices_big_endian": (d, i.astype(">i4"), p.astype(">i4"), SHAPE),
        "indices_object": (d, i.astype(object), p.astype(object), SHAPE),
        "shape_more_rows": (d, i, p, (5, 4)),
        "shape_fewer_cols": (d, i, p, (3, 2)),
        "shape_negative": (d, i, p, (-1, 4)),
        "int32_cannot_address": (d, i, p, (3, 2**31 + 5)),
    }


# ------------------------------------------------------------------ matrices three ways
def _direct(layout):
    d, i, p, shape = layout
    return CSRMatrix(d, i, p, shape)


def _scipy(layout):
    """A valid scipy CSR matrix whose arrays are then replaced (scipy checks nothing then)."""
    d, i, p, shape = layout
    m = sp.csr_matrix((DATA.copy(), INDICES.copy(), INDPTR.copy()), shape=SHAPE)
    m.data, m.indices, m.indptr = d, i, p
    if shape != SHAPE:
        m._shape = shape
    return m


def _reassigned(layout):
    """A matrix validated first, then given the bad arrays by attribute assignment."""
    d, i, p, shape = layout
    W = CSRMatrix(DATA.copy(), INDICES.copy(), INDPTR.copy(), SHAPE, full_check=True)
    W.indptr = p
    W.indices = i
    W.data = d
    if shape != SHAPE:
        W.shape = shape
    return W


def _guarded(shape, dtype=F32):
    """``out`` of ``shape`` inside a buffer with guard cells before and after it."""
    size = int(np.prod(shape))
    buf = np.full(size + 32, GUARD, dtype)
    out = buf[16:16 + size].reshape(shape)
    out[...] = 0
    return buf, out


def _guards_ok(buf, size):
    return bool(np.all(buf[:16] == GUARD) and np.all(buf[16 + size:] == GUARD))


def _activations(n, seed):
    return np.random.default_rng(seed).random((n, S)).astype(F32)


def _matrix_ops(backend):
    """op name -> f(W, n_out, n_in, nnz): the op on W with operands of that nominal size.

    Returns ``(value, guards intact)``. Sizes are capped at 64 so that an
    absurd shape is refused by the matrix checks, not by the allocator.
    """
    def operands(n_out, n_in):
        n_out, n_in = min(max(n_out, 0), 64), min(max(n_in, 0), 64)
        rng = np.random.default_rng(0)
        return (rng.random((n_in, 2)).astype(F32), rng.random((n_out, 2)).astype(F32),
                _activations(n_in, 1), _activations(n_out, 2))

    def with_out(shape, call):
        buf, out = _guarded(shape)
        call(out)
        return out, _guards_ok(buf, out.size)

    def product(name):
        def run(W, n_out, n_in, nnz):
            X, G, _, _ = operands(n_out, n_in)
            if name == "spmm":
                return with_out(G.shape, lambda o: spmm(W, X, out=o, backend=backend))
            if name == "spmm_t":
                return with_out(X.shape, lambda o: spmm_t(W, G, out=o, backend=backend))
            return with_out((min(nnz, 64),), lambda o: sddmm(W, G, X, out=o, backend=backend))
        return run

    def cosine(name):
        def run(W, n_out, n_in, nnz):
            _, _, A, B = operands(n_out, n_in)
            if name == "topk_cosine":
                return topk_cosine(A, B, 3, exclude=W, backend=backend), True
            if name == "topk_abs_product":
                return topk_abs_product(A, B, 3, exclude=W, backend=backend), True
            return topk_cosine_sketch(A, B, 3, exclude=W, dim=2, random_state=0,
                                      backend=backend), True
        return run

    return {
        "spmm": product("spmm"), "spmm_t": product("spmm_t"), "sddmm": product("sddmm"),
        "topk_cosine": cosine("topk_cosine"), "topk_cosine_sketch": cosine("sketch"),
        "topk_abs_product": cosine("topk_abs_product"),
        "prune_magnitude": lambda W, *_: (prune_magnitude(W, 0.5, backend=backend), True),
        "insert": lambda W, *_: (insert(W, np.array([0]), np.array([1]), np.array([7.0]),
                                        backend=backend), True),
    }


def structure_cases(backend):
    ops = _matrix_ops(backend)
    makers = {"direct": _direct, "scipy": _scipy, "reassigned": _reassigned}
    for name, layout in _layouts().items():
        _, indices, _, (n_out, n_in) = layout
        if n_out < 0:
            n_out, n_in = SHAPE
        nnz = int(np.size(indices))
        for how, make in makers.items():
            if how == "scipy" and name.startswith("mixed_"):
                continue  # from_scipy promotes mixed index dtypes: a valid matrix
            for op, run in ops.items():
                yield (f"struct/{name}/{how}/{op}", op, "error",
                       lambda make=make, layout=layout, run=run, size=(n_out, n_in, nnz):
                       run(make(layout), *size))


# ------------------------------------------------------------------ dense operands
def _W(square=False):
    if square:
        return CSRMatrix.from_dense(np.array([[1, 0, 2, 0], [0, 0, 0, 3], [4, 0, 0, 0],
                                              [0, 5, 0, 6]], F32))
    return CSRMatrix(DATA.copy(), INDICES.copy(), INDPTR.copy(), SHAPE)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _product_cases(backend):
    X, G = np.ones((4, 2), F32), np.ones((3, 2), F32)
    W4 = _W(square=True)
    X4 = np.ones((4, 4), F32)
    shared = np.ones(32, F32)
    data_buf = np.ones(16, F32)
    Wd = CSRMatrix(data_buf[:4], INDICES.copy(), INDPTR.copy(), SHAPE)
    bad_X = {
        "rows": np.ones((3, 2), F32), "dtype64": np.ones((4, 2)), "int": np.ones((4, 2), I64),
        "1d": np.ones(4, F32), "3d": np.ones((4, 2, 1), F32),
        "strided": np.ones((4, 4), F32)[:, ::2],
        "fortran": np.asfortranarray(np.ones((4, 3), F32)), "list": [[1.0, 2.0]] * 4,
        "object": np.ones((4, 2), object), "big_endian": np.ones((4, 2), ">f4"),
        "scalar": np.float32(1.0), "none": None,
    }
    bad_G = {name: (bad[:3] if isinstance(bad, np.ndarray) and bad.ndim >= 1 and bad.shape[0] == 4
                    else bad) for name, bad in bad_X.items()}
    bad_G["rows"] = np.ones((4, 2), F32)
    for name, bad in bad_X.items():
        yield f"dense/spmm/X_{name}", "spmm", lambda b=bad: spmm(_W(), b, backend=backend)
        yield f"dense/sddmm/X_{name}", "sddmm", lambda b=bad: sddmm(_W(), G, b, backend=backend)
        yield f"dense/spmm_t/G_{name}", "spmm_t", lambda b=bad_G[name]: spmm_t(
            _W(), b, backend=backend)
    bad_out = {
        "shape": np.zeros((2, 3), F32), "dtype": np.zeros((3, 2)), "readonly": _readonly(
            np.zeros((3, 2), F32)), "strided": np.zeros((3, 4), F32)[:, ::2], "0d": np.zeros(
            (), F32), "list": [[0.0, 0.0]] * 3,
    }
    for name, out in bad_out.items():
        yield f"dense/spmm/out_{name}", "spmm", lambda o=out: spmm(_W(), X, out=o, backend=backend)
    yield "dense/spmm/out_is_X", "spmm", lambda: spmm(W4, X4, out=X4, backend=backend)
    yield "dense/spmm/out_overlaps_X", "spmm", lambda: spmm(
        _W(), shared[:8].reshape(4, 2), out=shared[6:12].reshape(3, 2), backend=backend)
    yield "dense/spmm/out_overlaps_W_data", "spmm", lambda: spmm(
        Wd, X, out=data_buf[2:8].reshape(3, 2), backend=backend)
    yield "dense/spmm_t/out_is_G", "spmm_t", lambda: spmm_t(W4, X4, out=X4, backend=backend)
    yield "dense/spmm_t/out_readonly", "spmm_t", lambda: spmm_t(
        _W(), G, out=_readonly(np.zeros((4, 2), F32)), backend=backend)
    yield "dense/spmm_t/out_overlaps_W_data", "spmm_t", lambda: spmm_t(
        Wd, G, out=data_buf[:8].reshape(4, 2), backend=backend)
    yield "dense/sddmm/out_is_W_data", "sddmm", lambda: sddmm(Wd, G, X, out=Wd.data,
                                                              backend=backend)
    yield "dense/sddmm/out_overlaps_G", "sddmm", lambda: sddmm(
        _W(), shared[:6].reshape(3, 2), X, out=shared[2:6], backend=backend)
    yield "dense/sddmm/out_readonly", "sddmm", lambda: sddmm(
        _W(), G, X, out=_readonly(np.zeros(4, F32)), backend=backend)
    yield "dense/sddmm/out_length", "sddmm", lambda: sddmm(_W(), G, X, out=np.zeros(5, F32),
                                                           backend=backend)
    yield "dense/sddmm/batch_mismatch", "sddmm", lambda: sddmm(_W(), G, np.ones((4, 3), F32),
                                                               backend=backend)
    yield "dense/spmm/W_dense", "spmm", lambda: spmm(_W().toarray(), X, backend=backend)
    yield "dense/spmm/W_nan", "spmm", lambda: spmm(CSRMatrix(
        np.array([1, np.nan, 3, 4], F32), INDICES.copy(), INDPTR.copy(), SHAPE), X,
        backend=backend)


def _cosine_cases(backend):
    A, B = _activations(4, 1), _activations(5, 2)
    r, c = np.array([0, 3]), np.array([4, 0])
    nan_a = A.copy()
    nan_a[1, 1] = np.nan
    bad_pairs = {
        "rows_out_of_range": (np.array([0, 4]), c), "rows_negative": (np.array([-1, 0]), c),
        "cols_1e9": (r, np.array([10**9, 0])), "rows_uint64_huge": (
            np.array([2**63 + 5, 0], np.uint64), c), "rows_float": (r.astype(float), c),
        "rows_2d": (r.reshape(1, 2), c), "length_mismatch": (r, c[:1]), "rows_list": ([0, 1], c),
        "rows_bool": (np.array([True, False]), c),
    }
    for name, (rows, cols) in bad_pairs.items():
        yield f"dense/cosine_pairs/{name}", "cosine_pairs", lambda rr=rows, cc=cols: cosine_pairs(
            A, B, rr, cc, backend=backend)
    yield "dense/cosine_pairs/A_nan", "cosine_pairs", lambda: cosine_pairs(nan_a, B, r, c,
                                                                         backend=backend)
    yield "dense/cosine_pairs/samples_mismatch", "cosine_pairs", lambda: cosine_pairs(
        A, B[:, :3].copy(), r, c, backend=backend)
    yield "dense/cosine_pairs/A_int", "cosine_pairs", lambda: cosine_pairs(
        A.astype(I64), B.astype(I64), r, c, backend=backend)
    yield "dense/cosine_pairs/out_overlaps_A", "cosine_pairs", lambda: cosine_pairs(
        A, B, r, c, out=A.reshape(-1)[:2], backend=backend)
    yield "dense/cosine_pairs/out_readonly", "cosine_pairs", lambda: cosine_pairs(
        A, B, r, c, out=_readonly(np.zeros(2, F32)), backend=backend)
    At, Bt = _activations(4, 3), _activations(3, 4)
    bad_topk = {"k_negative": {"k": -1}, "k_float_1e12": {"k": 1e12}, "k_bool": {"k": True},
                "k_string": {"k": "3"}, "block_zero": {"block_bytes": 0},
                "block_negative": {"block_bytes": -5}, "block_float": {"block_bytes": 1.5},
                "exclude_shape": {"exclude": CSRMatrix.random(4, 4, density=0.5)},
                "exclude_dense": {"exclude": np.ones((3, 4), F32)}}
    for name, kw in bad_topk.items():
        kw = {"k": 3, **kw}
        for op, fn in (("topk_cosine", topk_cosine), ("topk_abs_product", topk_abs_product)):
            yield f"dense/{op}/{name}", op, lambda kw=kw, fn=fn: fn(At, Bt, backend=backend, **kw)
    yield "dense/topk_abs_product/A_nan", "topk_abs_product", lambda: topk_abs_product(
        np.full((4, S), np.nan, F32), Bt, 3, backend=backend)
    yield "dense/topk_abs_product/overflow", "topk_abs_product", lambda: topk_abs_product(
        np.full((4, S), 1e30, F32), np.full((3, S), 1e30, F32), 3, backend=backend)
    yield "dense/topk_cosine/A_nan", "topk_cosine", lambda: topk_cosine(
        np.full((4, S), np.nan, F32), Bt, 3, backend=backend)
    bad_sketch = {"k_negative": {"k": -1}, "dim_zero": {"dim": 0}, "oversample_zero": {
        "oversample": 0}, "rank_ge_dim": {"dim": 2, "rank": 2}, "k_float": {"k": 2.5}}
    for name, kw in bad_sketch.items():
        kw = {"k": 3, "dim": 2, "random_state": 0, **kw}
        yield f"dense/topk_cosine_sketch/{name}", "topk_cosine_sketch", lambda kw=kw: \
            topk_cosine_sketch(At, Bt, backend=backend, **kw)


def _topology_cases(backend):
    for name, frac in {"negative": -0.1, "above_one": 1.1, "nan": float("nan"), "string": "0.5",
                       "none": None, "inf": float("inf")}.items():
        yield f"dense/prune_magnitude/fraction_{name}", "prune_magnitude", lambda f=frac: \
            prune_magnitude(_W(), f, backend=backend)
    one, two = np.array([1]), np.array([1, 1])
    bad_insert = {
        "value_1e300_float32": (one, np.array([0]), np.array([1e300])),
        "value_minus_1e39_float32": (one, np.array([0]), np.array([-1e39])),
        "value_nan": (one, np.array([0]), np.array([np.nan])),
        "value_inf": (one, np.array([0]), np.array([np.inf])),
        "value_complex": (one, np.array([0]), np.array([1 + 2j])),
        "value_string": (one, np.array([0]), np.array(["7"])),
        "value_2d": (one, np.array([0]), np.ones((1, 1))),
        "rows_out_of_range": (np.array([3]), np.array([0]), np.ones(1)),
        "cols_1e9": (one, np.array([10**9]), np.ones(1)),
        "cols_negative": (one, np.array([-1]), np.ones(1)),
        "duplicate_positions": (two, np.array([2, 2]), np.ones(2)),
        "already_stored": (np.array([2]), np.array([3]), np.ones(1)),
        "length_mismatch": (two, np.array([0, 1]), np.ones(3)),
        "rows_float": (np.array([1.0]), np.array([0]), np.ones(1)),
    }
    for name, (rows, cols, vals) in bad_insert.items():
        yield f"dense/insert/{name}", "insert", lambda r=rows, c=cols, v=vals: insert(
            _W(), r, c, v, backend=backend)


def dense_cases(backend):
    for gen in (_product_cases, _cosine_cases, _topology_cases):
        for case_id, op, thunk in gen(backend):
            yield case_id, op, "error", lambda thunk=thunk: (thunk(), True)


# ------------------------------------------------------------------ oracle-checked cases
def valid_structure(indptr, indices, n_cols):
    """Plain-Python oracle of a canonical CSR structure (independent of the library)."""
    indptr, indices = [int(v) for v in indptr], [int(v) for v in indices]
    if not indptr or indptr[0] != 0 or indptr[-1] != len(indices):
        return False
    for r in range(len(indptr) - 1):
        if indptr[r + 1] < indptr[r]:
            return False
        row = indices[indptr[r]:indptr[r + 1]]
        if any(c < 0 or c >= n_cols for c in row) or any(b <= a for a, b in zip(row, row[1:])):
            return False
    return True


def _dense_of(data, indices, indptr, shape):
    D = np.zeros(shape)
    for r in range(shape[0]):
        for p in range(int(indptr[r]), int(indptr[r + 1])):
            D[r, int(indices[p])] += data[p]
    return D


def _oracle_checked(run_op, op, data, indices, indptr, shape, rng):
    """Run ``op`` on the structure; compare with the dense oracle; return a check result."""
    D = _dense_of(data, indices, indptr, shape) if valid_structure(
        indptr, indices, shape[1]) else None
    W = CSRMatrix(data.copy(), indices.copy(), indptr.copy(), shape)
    X = rng.standard_normal((shape[1], 3)).astype(F32)
    G = rng.standard_normal((shape[0], 3)).astype(F32)
    if op == "spmm":
        value, want = run_op("spmm", W, X), (D @ X if D is not None else None)
    elif op == "spmm_t":
        value, want = run_op("spmm_t", W, G), (D.T @ G if D is not None else None)
    else:  # sddmm: (G @ X.T) at the stored positions, in stored order
        value = run_op("sddmm", W, G, X)
        want = None if D is None else np.array([
            G[r] @ X[int(indices[p])] for r in range(shape[0])
            for p in range(int(indptr[r]), int(indptr[r + 1]))], dtype=np.float64).reshape(-1)
    return want is not None and np.allclose(value, want, rtol=1e-4, atol=1e-4)


def mutation_cases(backend, n=60, seed=1234):
    """Seeded single-entry edits of a valid random structure, with the oracle's verdict."""
    rng = np.random.default_rng(seed)
    ops = {"spmm": lambda W, X: spmm(W, X, backend=backend),
           "spmm_t": lambda W, G: spmm_t(W, G, backend=backend),
           "sddmm": lambda W, G, X: sddmm(W, G, X, backend=backend)}
    for t in range(n):
        n_out, n_in = int(rng.integers(1, 7)), int(rng.integers(1, 8))
        idx = (I32, I64)[t % 2]
        base = CSRMatrix.random(n_out, n_in, density=0.5, random_state=int(rng.integers(1 << 30)),
                                index_dtype=idx)
        indptr, indices = base.indptr.copy(), base.indices.copy()
        target = indptr if (rng.random() < 0.4 or not indices.size) else indices
        pos = int(rng.integers(target.size))
        choices = [-1, 0, 1, n_in - 1, n_in, n_in + 1, base.nnz, base.nnz + 1,
                   int(np.iinfo(idx).max), int(rng.integers(-3, max(n_in, base.nnz) + 3))]
        target[pos] = choices[int(rng.integers(len(choices)))]
        op = ("spmm", "spmm_t", "sddmm")[t % 3]
        expect = "ok" if valid_structure(indptr, indices, n_in) else "error"
        data = base.data.copy()
        yield (f"mutate/{t}/{op}", op, expect,
               lambda op=op, d=data, i=indices, p=indptr, s=(n_out, n_in), r=np.random.default_rng(
                   t): (_oracle_checked(lambda name, *a: ops[name](*a), op, d, i, p, s, r), True))


def valid_cases(backend):
    """Awkward but valid inputs: they must go through (and match the oracle)."""
    rng = np.random.default_rng(5)
    structures = {
        "empty_rows": (np.array([0, 0, 2, 2]), np.array([1, 3])),
        "nnz0": (np.zeros(4, I64), np.zeros(0, I64)),
        "drop_across_row_boundary": (np.array([0, 1, 1, 3]), np.array([3, 0, 1])),
        "full_row": (np.array([0, 4, 4, 4]), np.array([0, 1, 2, 3])),
    }
    for name, (indptr, indices) in structures.items():
        for idx in (I32, I64):
            for op in ("spmm", "spmm_t", "sddmm"):
                data = rng.standard_normal(indices.size).astype(F32)
                run = {"spmm": lambda W, X: spmm(W, X, backend=backend),
                       "spmm_t": lambda W, G: spmm_t(W, G, backend=backend),
                       "sddmm": lambda W, G, X: sddmm(W, G, X, backend=backend)}
                yield (f"valid/{name}/{np.dtype(idx).name}/{op}", op, "ok",
                       lambda op=op, d=data, i=indices.astype(idx), p=indptr.astype(idx),
                       run=run: (_oracle_checked(lambda n, *a: run[n](*a), op, d, i, p, SHAPE,
                                                 np.random.default_rng(0)), True))
    At, Bt = _activations(4, 3), _activations(3, 4)
    yield "valid/topk_cosine/k_1e12_int", "topk_cosine", "ok", lambda: (
        len(topk_cosine(At, Bt, 10**12, exclude=_W(), backend=backend)[0]) == 12 - 4, True)
    yield "valid/topk_abs_product/k_1e12_int", "topk_abs_product", "ok", lambda: (
        len(topk_abs_product(At, Bt, 10**12, exclude=_W(), backend=backend)[0]) == 12 - 4, True)
    yield "valid/topk_cosine/block_1e18", "topk_cosine", "ok", lambda: (
        len(topk_cosine(At, Bt, 3, block_bytes=10**18, backend=backend)[0]) == 3, True)
    yield "valid/topk_cosine_sketch/k_1e12_int", "topk_cosine_sketch", "ok", lambda: (
        len(topk_cosine_sketch(At, Bt, 10**12, dim=2, random_state=0, backend=backend)[0]) == 12,
        True)
    yield "valid/spmm/larger_buffer_views", "spmm", "ok", lambda: (np.allclose(spmm(CSRMatrix(
        _larger_buffer_view(DATA, F32), _larger_buffer_view(INDICES, I32),
        _larger_buffer_view(INDPTR, I32), SHAPE), np.eye(4, dtype=F32), backend=backend),
        _dense_of(DATA, INDICES, INDPTR, SHAPE)), True)


def all_cases(backend):
    yield from structure_cases(backend)
    yield from dense_cases(backend)
    yield from mutation_cases(backend)
    yield from valid_cases(backend)


# ------------------------------------------------------------------ runner
def run_case(case_id, op, expect, thunk):
    """Run one case; return its record (outcome "ValueError", "ok", "wrong" or another type)."""
    record = {"id": case_id, "op": op, "expect": expect}
    try:
        value, guards = thunk()
    except ValueError as exc:
        record.update(outcome="ValueError", message=str(exc)[:300])
        return record
    except Exception as exc:  # noqa: BLE001 - every other outcome is recorded, then judged
        record.update(outcome=type(exc).__name__, message=str(exc)[:300])
        return record
    good = guards and (value is not False)
    record.update(outcome="ok" if good else "wrong", message="")
    return record


def main(argv):
    backend = argv[1]
    cases = list(all_cases(backend))
    if "--list" in argv:
        for case_id, *_ in cases:
            print(case_id)
        return 0
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    after = argv[argv.index("--after") + 1] if "--after" in argv else None
    for case_id, op, expect, thunk in cases:
        if after is not None:  # resume after a case that killed the previous child
            after = None if case_id == after else after
            continue
        if only is not None and case_id != only:
            continue
        print(case_id, file=sys.stderr, flush=True)
        print(json.dumps(run_case(case_id, op, expect, thunk)), flush=True)
    print(json.dumps({"done": len(cases)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
