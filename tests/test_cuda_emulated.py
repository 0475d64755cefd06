"""The real CUDA kernels, run on the CPU by an emulator, against the reference backend.

``tests/cuda_emu.py`` compiles the text NVRTC gets (``cuda.load_source``) with
g++ after ``tests/cuda_emu.h`` (every CUDA thread a fiber, warp shuffles and
``__syncthreads`` as barriers that report divergence), and NumPy poses as CuPy
with that ``RawModule``, so ``ctre_sparse.backends.cuda`` runs unchanged: the
launch configuration (warp or block per row, vector width, grid, shared
memory) and the kernel arguments are the ones a GPU would get, and every
argument is checked against the kernel's parameter types. Not checked here:
the memory model, real warp scheduling, FMA contraction / ``-ftz``, speed
(see docs/gpu.md).
"""

import numpy as np
import pytest

from ctre_sparse.backends import cuda as cuda_backend
from ctre_sparse.backends import reference
from ctre_sparse.sparse import CSRMatrix
from ctre_sparse.testing import tolerance

cuda_emu = pytest.importorskip("cuda_emu")
_REASON = cuda_emu.unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None,
                                reason=f"CUDA emulator unavailable: {_REASON}")

BATCHES = (1, 31, 32, 33, 64, 65, 128, 129, 300)  # every V, and two batch tiles at 300


@pytest.fixture(scope="module")
def emu_libs():
    """Compile the four kernel files once, two g++ at a time (cached on disk)."""
    return cuda_emu.compile_all(workers=2)


@pytest.fixture
def emu(emu_libs, monkeypatch):
    """``ctre_sparse.backends.cuda`` with NumPy as CuPy and the kernels emulated."""
    monkeypatch.setattr(cuda_backend, "_import_cupy", lambda: cuda_emu.NumpyAsCupy())
    monkeypatch.setattr(cuda_backend, "_modules", {})
    return cuda_backend


# ----------------------------------------------------------------- operands
def csr_from_lengths(lengths, n_cols, dtype, index_dtype, seed=0):
    """Raw CSR arrays with the given row lengths (sorted random columns, normal values)."""
    rng = np.random.default_rng(seed)
    cols = [np.sort(rng.choice(n_cols, size=n, replace=False)) for n in lengths]
    indptr = np.zeros(len(lengths) + 1, dtype=index_dtype)
    np.cumsum(lengths, out=indptr[1:])
    indices = (np.concatenate(cols) if cols else np.zeros(0)).astype(index_dtype)
    data = rng.standard_normal(indices.shape[0]).astype(dtype)
    return indptr, indices, data


MATRICES = {
    # empty rows, rows of 1, 31, 32, 33, 64, > 256 nonzeros; nnz not a multiple of 32
    "mixed": ([0, 1, 31, 32, 33, 0, 257, 5, 0, 64, 300, 0], 400),
    "single_row": ([70], 90),
    "many_short": (list(np.random.default_rng(1).integers(0, 4, 500)), 60),
    "nnz0": ([0, 0, 0], 5),
}


def dense_of(indptr, indices, data, n_cols):
    d = np.zeros((indptr.shape[0] - 1, n_cols))
    rows = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
    d[rows, indices] = data
    return d


def assert_product_close(got, want, Wd, Xd, dtype):
    """|got - want| within the dense bound rtol * (|W| @ |X|) + atol, and nothing left unwritten."""
    rtol, atol = tolerance(dtype)
    bound = 2 * (rtol * (np.abs(Wd) @ np.abs(Xd.astype(np.float64))) + atol)
    assert np.all(np.isfinite(got)), "output entries left unwritten (NaN prefill survived)"
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert np.all(err <= bound), f"max error {err.max()} (bound there {bound.flat[err.argmax()]})"


def _run_products(emu, indptr, indices, data, n_cols, batch, dtype):
    n_rows = indptr.shape[0] - 1
    rng = np.random.default_rng(batch)
    X = rng.standard_normal((n_cols, batch)).astype(dtype)
    G = rng.standard_normal((n_rows, batch)).astype(dtype)
    Wd = dense_of(indptr, indices, data, n_cols)
    out, want = np.full((n_rows, batch), np.nan, dtype), np.empty((n_rows, batch), dtype)
    emu.spmm(indptr, indices, data, X, out)
    reference.spmm(indptr, indices, data, X, want)
    assert_product_close(out, want, Wd, X, dtype)
    t_indptr, t_indices, t_perm = CSRMatrix(data, indices, indptr,
                                            (n_rows, n_cols)).transpose_arrays()
    out, want = np.full((n_cols, batch), np.nan, dtype), np.empty((n_cols, batch), dtype)
    emu.spmm_t(t_indptr, t_indices, t_perm, data, G, out)
    reference.spmm_t(t_indptr, t_indices, t_perm, data, G, out=want)
    assert_product_close(out, want, Wd.T, G, dtype)


# ----------------------------------------------------------------- products
@pytest.mark.parametrize("path", ["warp", "block"])
@pytest.mark.parametrize("matrix,batch", [("mixed", b) for b in BATCHES] + [
    (m, b) for m in ("single_row", "many_short", "nnz0") for b in (1, 33, 129, 300)])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_products_every_kernel_and_width(emu, monkeypatch, dtype, index_dtype, matrix, batch,
                                         path):
    """spmm / spmm_t, warp- and block-per-row kernels forced, every vector width V."""
    monkeypatch.setattr(emu, "use_row_blocks", lambda *a: path == "block")
    lengths, n_cols = MATRICES[matrix]
    _run_products(emu, *csr_from_lengths(lengths, n_cols, dtype, index_dtype), n_cols, batch,
                  dtype)


@pytest.mark.parametrize("lengths,n_cols,batch,blocks", [
    ([1500] * 5, 3000, 7, True),                      # long rows: one block per row
    ([160] * 10, 800, 7, True),                       # small-grid rule (10-row output layer)
    ([5] * 10, 800, 7, False),                        # ... not for tiny rows
    ([3] * 2500, 300, 33, False),                     # many short rows, V = 2
    ([20] * 300, 300, 300, False),                    # V = 8, two batch tiles
])
@pytest.mark.parametrize("dtype,index_dtype", [(np.float32, np.int32), (np.float64, np.int64)],
                         ids=["f32-i32", "f64-i64"])
def test_products_as_the_backend_chooses(emu, dtype, index_dtype, lengths, n_cols, batch,
                                         blocks):
    tiles = -(-batch // (32 * emu.vector_width(batch)))
    assert emu.use_row_blocks(len(lengths), sum(lengths), tiles) == blocks
    _run_products(emu, *csr_from_lengths(lengths, n_cols, dtype, index_dtype), n_cols, batch,
                  dtype)


def _sddmm_case(emu, lengths, n_cols, batch, dtype, index_dtype):
    indptr, indices, _ = csr_from_lengths(lengths, n_cols, dtype, index_dtype, seed=batch)
    rng = np.random.default_rng(batch + 1)
    G = rng.standard_normal((len(lengths), batch)).astype(dtype)
    X = rng.standard_normal((n_cols, batch)).astype(dtype)
    nnz = indices.shape[0]
    out, want = np.full(nnz, np.nan, dtype), np.empty(nnz, dtype)
    emu.sddmm(indptr, indices, G, X, out)
    reference.sddmm(indptr, indices, G, X, want)
    rows = np.repeat(np.arange(len(lengths)), np.diff(indptr))
    rtol, atol = tolerance(dtype)
    bound = 2 * (rtol * np.einsum("ij,ij->i", np.abs(G[rows]).astype(np.float64),
                                  np.abs(X[indices]).astype(np.float64)) + atol)
    assert np.all(np.isfinite(out)), "sddmm left entries unwritten"
    assert np.all(np.abs(out.astype(np.float64) - want) <= bound)


@pytest.mark.parametrize("batch", [1, 31, 32, 33, 65, 300])
@pytest.mark.parametrize("pattern", ["mixed", "full_and_empty", "trailing_empty", "one_entry"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sddmm(emu, dtype, index_dtype, pattern, batch):
    lengths, n_cols = {
        "mixed": MATRICES["mixed"],
        "full_and_empty": ([0, 0, 50, 0, 0, 0, 50, 50, 0, 50, 0], 50),  # nnz 200
        "trailing_empty": ([33, 0, 7, 0, 0, 0, 0], 40),
        "one_entry": ([0, 0, 1, 0], 3),
    }[pattern]
    _sddmm_case(emu, lengths, n_cols, batch, dtype, index_dtype)


def test_sddmm_nnz0_and_batch0(emu):
    indptr, indices, _ = csr_from_lengths([0, 0], 4, np.float32, np.int32)
    out = np.empty(0, np.float32)
    emu.sddmm(indptr, indices, np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), out)
    indptr, indices, _ = csr_from_lengths([2, 1], 4, np.float32, np.int32)
    out = np.full(3, np.nan, np.float32)
    emu.sddmm(indptr, indices, np.ones((2, 0), np.float32), np.ones((4, 0), np.float32), out)
    np.testing.assert_array_equal(out, 0)


# ------------------------------------------------------------------- cosine
@pytest.mark.parametrize("length", [0, 1, 7, 32, 33, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_row_norms(emu, dtype, length):
    M = np.random.default_rng(length).standard_normal((45, length)).astype(dtype)
    M[[0, 17, 44]] = 0
    got = emu.row_norms(M)
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(got, reference._row_norms(M), rtol=rtol, atol=atol)
    assert got.dtype == dtype and np.all(got[[0, 17, 44]] == 0)


@pytest.mark.parametrize("k", [1, 31, 32, 33, 100, 1000])
@pytest.mark.parametrize("length", [0, 1, 33, 100])
@pytest.mark.parametrize("pair_dtype", [np.int32, np.int64, np.uint32, np.int16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_cosine_pairs(emu, dtype, pair_dtype, length, k):
    rng = np.random.default_rng(k + length)
    A = rng.standard_normal((50, length)).astype(dtype)
    B = rng.standard_normal((40, length)).astype(dtype)
    A[[3, 49]] = 0  # zero-norm rows: cosine 0
    B[0] = 0
    rows = rng.integers(0, 50, k).astype(pair_dtype)
    cols = rng.integers(0, 40, k).astype(pair_dtype)
    rows[:2], cols[:2] = np.array([3, 49])[:k], np.array([0, 5])[:k]
    got, want = np.full(k, np.nan, dtype), np.empty(k, dtype)
    emu.cosine_pairs(A, B, rows, cols, got)
    reference.cosine_pairs(A, B, rows, cols, want)
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(got, want, rtol=10 * rtol, atol=10 * atol)
    assert got[0] == 0


@pytest.mark.parametrize("r0,r1", [(0, 12), (3, 9), (11, 12)])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_mask_block(emu, dtype, index_dtype, r0, r1):
    lengths, n_cols = MATRICES["mixed"]
    indptr, indices, _ = csr_from_lengths(lengths, n_cols, dtype, index_dtype)
    S = np.random.default_rng(r0).random((r1 - r0, n_cols)).astype(dtype)
    want = S.copy()
    emu._mask_block(indptr, indices, r0, r1, n_cols, S)
    reference.mask_block(want, r0, r1, indptr, indices)
    np.testing.assert_array_equal(S, want)


@pytest.mark.parametrize("sampled", [False, True], ids=["plain", "sampled"])
@pytest.mark.parametrize("k", [1, 50, 700])
@pytest.mark.parametrize("block_rows", [7, 300])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_topk_exact_ties(emu, monkeypatch, dtype, index_dtype, block_rows, k, sampled):
    """Scaled one-hot rows score exactly 0 or 1: the tie order must match bit for bit
    (also through the sampled pre-threshold, forced by a tiny sample size)."""
    if sampled:
        monkeypatch.setattr(emu, "_TOPK_SAMPLE", 64)
    rng = np.random.default_rng(k)
    S = 8
    A = np.zeros((120, S), dtype=dtype)
    A[np.arange(120), rng.integers(0, S, 120)] = rng.integers(1, 8, 120)
    B = np.zeros((90, S), dtype=dtype)
    B[np.arange(90), rng.integers(0, S, 90)] = -rng.integers(1, 8, 90)
    B[5] = 0
    lengths = rng.integers(0, 30, 90)
    indptr, indices, _ = csr_from_lengths(lengths, 120, dtype, index_dtype, seed=k)
    got = emu.topk_cosine(A, B, k, indptr, indices, block_rows)
    want = reference.topk_cosine(A, B, k, indptr, indices, block_rows)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("k", [1, 50, 700])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_topk_abs_product_exact_ties(emu, dtype, index_dtype, k):
    """Small integer products (exact, many ties, not normalised): the reference's picks, bit
    for bit."""
    rng = np.random.default_rng(k)
    A = rng.integers(-3, 4, (120, 6)).astype(dtype)
    B = rng.integers(-3, 4, (90, 6)).astype(dtype)
    B[5] = 0
    indptr, indices, _ = csr_from_lengths(rng.integers(0, 30, 90), 120, dtype, index_dtype,
                                          seed=k)
    got = emu.topk_abs_product(A, B, k, indptr, indices, 7)
    want = reference.topk_abs_product(A, B, k, indptr, indices, 7)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_topk_random_scores(emu, dtype):
    rng = np.random.default_rng(9)
    A = rng.standard_normal((150, 20)).astype(dtype)
    B = rng.standard_normal((80, 20)).astype(dtype)
    indptr, indices, _ = csr_from_lengths(rng.integers(0, 40, 80), 150, dtype, np.int32)
    rows, cols, scores = emu.topk_cosine(A, B, 60, indptr, indices, 32)
    w_rows, w_cols, w_scores = reference.topk_cosine(A, B, 60, indptr, indices, 32)
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(scores, w_scores, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(rows, w_rows)
    np.testing.assert_array_equal(cols, w_cols)


# ------------------------------------------------------------------- training step
TRAIN_SHAPES = [(1, 1), (7, 1), (1, 13), (37, 129), (0, 4), (300, 5)]


@pytest.mark.parametrize("shape", TRAIN_SHAPES)
@pytest.mark.parametrize("slope", [0.0, 0.01, -0.6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_training_elementwise_kernels(emu, dtype, slope, shape):
    """bias_activation and activation_backward: the emulated kernels (no FMA contraction
    under g++) give the reference's values bit for bit; Z written in place over Y."""
    rng = np.random.default_rng(sum(shape))
    Y = rng.standard_normal(shape).astype(dtype)
    Y.flat[::3] = 0
    b = rng.standard_normal(shape[0]).astype(dtype)
    G = rng.standard_normal(shape).astype(dtype)
    Z_ref, A_ref = np.empty_like(Y), np.empty_like(Y)
    reference.bias_activation(Y, b, slope, Z_ref, A_ref)
    Z, A = Y.copy(), np.full_like(Y, np.nan)
    emu.bias_activation(Z, b, slope, Z, A)
    np.testing.assert_array_equal(Z, Z_ref)
    np.testing.assert_array_equal(A, A_ref)
    want = np.empty_like(G)
    reference.activation_backward(Z_ref, G, slope, want)
    emu.activation_backward(Z_ref, G, slope, G)
    np.testing.assert_array_equal(G, want)


@pytest.mark.parametrize("n", [0, 1, 257, 5000])
@pytest.mark.parametrize("mu,nesterov", [(0.9, True), (0.9, False), (0.0, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_training_sgd_kernel(emu, dtype, mu, nesterov, n):
    rng = np.random.default_rng(n)
    arrays = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    want = [a.copy() for a in arrays]
    t = np.dtype(dtype).type
    scalars = (t(0.01), t(mu), t(1e-4), nesterov)
    reference.sgd_update(*want, *scalars)
    emu.sgd_update(*arrays, *scalars)
    for got, ref in zip(arrays, want):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("order", ["C", "F"])
def test_training_gather_columns(emu, order):
    """cupy.take's host logic (NumPy here) for both memory orders."""
    X = np.random.default_rng(0).standard_normal((20, 50)).astype(np.float32, order=order)
    idx = np.array([49, 0, 7, 7, 13])
    out = np.full((20, 5), np.nan, np.float32)
    emu.gather_columns(X, idx, out)
    np.testing.assert_array_equal(out, X[:, idx])


# ------------------------------------------- kernels launched directly, tiny grids
@pytest.mark.parametrize("policy", cuda_emu.SCHEDULES)
def test_kernels_under_every_schedule(emu, monkeypatch, policy):
    """Other interleavings of the warps (see cuda_emu.SCHEDULES), so a missing
    __syncthreads or a cross-warp race would change the results."""
    lengths, n_cols = MATRICES["mixed"]
    with cuda_emu.schedule(policy, seed=7):
        for path in ("warp", "block"):
            monkeypatch.setattr(emu, "use_row_blocks", lambda *a: path == "block")
            for batch in (33, 300):
                _run_products(emu, *csr_from_lengths(lengths, n_cols, np.float64, np.int32),
                              n_cols, batch, np.float64)
        _sddmm_case(emu, lengths, n_cols, 65, np.float32, np.int64)
        test_grid_stride_loops_with_one_block(emu)


def test_grid_stride_loops_with_one_block(emu):
    """Launch each kernel with a grid of one block (and one batch tile) so every
    grid-stride loop takes more than one trip; the backend never does this."""
    lengths, n_cols = MATRICES["mixed"]
    indptr, indices, data = csr_from_lengths(lengths, n_cols, np.float64, np.int64)
    n_rows, batch = len(lengths), 300
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_cols, batch))
    want = np.empty((n_rows, batch))
    reference.spmm(indptr, indices, data, X, want)
    Wd = dense_of(indptr, indices, data, n_cols)
    args = (indptr, indices, data, X, None, np.int64(n_rows), np.int64(batch))
    for kernel in ("spmm_warp", "spmm_block"):
        for v in (1, 2):
            out = np.full((n_rows, batch), np.nan)
            fn = emu._kernel("spmm", kernel, "long long", "double", v)
            smem = 64 * v * 8 if kernel == "spmm_block" else 0
            fn((1, 1), (64,), args[:4] + (out,) + args[5:], shared_mem=smem)
            assert_product_close(out, want, Wd, X, np.float64)
    G = rng.standard_normal((n_rows, 5))
    X5 = X[:, :5].copy()
    got, ref = np.full(indices.shape[0], np.nan), np.empty(indices.shape[0])
    emu._kernel("sddmm", "sddmm_group", "long long", "double")(
        (1,), (32,), (indptr, indices, G, X5, got, np.int64(n_rows), np.int64(got.shape[0]),
                      np.int64(5)))
    reference.sddmm(indptr, indices, G, X5, ref)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    norms = np.full(n_rows, np.nan)
    emu._kernel("cosine", "row_norms", "double")((1,), (32,), (G, norms, np.int64(n_rows),
                                                               np.int64(5)))
    np.testing.assert_allclose(norms, reference._row_norms(G), rtol=1e-12)
    Z, A, A_ref = G.copy(), np.full_like(G, np.nan), np.empty_like(G)
    bias = rng.standard_normal(n_rows)
    emu._kernel("training", "bias_left_relu", "double")(
        (1,), (32,), (G, bias, 0.25, Z, A, np.int64(n_rows), np.int64(5)))
    reference.bias_activation(G, bias, 0.25, np.empty_like(G), A_ref)
    np.testing.assert_array_equal(A, A_ref)
    w, g, v = (rng.standard_normal(333) for _ in range(3))
    want = [a.copy() for a in (w, g, v)]
    emu._kernel("training", "sgd_update", "double")(
        (1,), (32,), (w, g, v, 0.1, 0.9, 0.01, np.int32(1), np.int64(333)))
    reference.sgd_update(*want, 0.1, 0.9, 0.01, True)
    for got, ref in zip((w, g, v), want):
        np.testing.assert_array_equal(got, ref)


# ------------------------------------------------------------ the emulator itself
TOY = r"""
namespace ctre {
constexpr unsigned FULL = 0xffffffffu;
template <typename T>
__global__ void warp_sums(const T* __restrict__ x, T* __restrict__ out, long long n) {
    const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    T v = i < n ? __ldg(x + i) : T(0);
    for (int k = 16; k > 0; k >>= 1) v += __shfl_xor_sync(FULL, v, k);
    const T first = __shfl_sync(FULL, v, 0);
    if (lane == 0 && i < n) out[i / 32] = first;
}
__global__ void block_reverse(const float* x, float* out) {
    extern __shared__ __align__(16) unsigned char raw[];
    float* buf = reinterpret_cast<float*>(raw);
    buf[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}
__global__ void reads_unwritten_smem(float* out) {
    extern __shared__ __align__(16) unsigned char raw[];
    float* buf = reinterpret_cast<float*>(raw);
    if (threadIdx.x > 0) buf[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = buf[threadIdx.x];
}
__global__ void shuffle_in_branch(float* out) {
    float v = threadIdx.x;
    if ((threadIdx.x & 31) < 16) v = __shfl_xor_sync(FULL, v, 1);
    out[threadIdx.x] = v;
}
__global__ void two_shuffle_sites(float* out) {
    float v = threadIdx.x;
    if (threadIdx.x & 1) v = __shfl_sync(FULL, v, 0);
    else v = __shfl_sync(FULL, v, 1);
    out[threadIdx.x] = v;
}
__global__ void sync_in_branch(float* out) {
    if (threadIdx.x < 64) __syncthreads();
    out[threadIdx.x] = 1.0f;
}
__global__ void tile_sums(const float* x, float* out, long long n_tiles, long long second_sync) {
    extern __shared__ __align__(16) unsigned char raw[];
    float* buf = reinterpret_cast<float*>(raw);
    for (long long t = 0; t < n_tiles; ++t) {
        buf[threadIdx.x] = x[t * blockDim.x + threadIdx.x];
        __syncthreads();
        if (threadIdx.x == 0) {
            float s = 0.0f;
            for (unsigned i = 0; i < blockDim.x; ++i) s += buf[i];
            out[t] = s;
        }
        if (second_sync) __syncthreads();  // without it the next tile overwrites buf too early
    }
}
__global__ void early_exit_then_sync(float* out, long long n) {
    if (threadIdx.x >= n) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
}  // namespace ctre
"""
TOY_NAMES = ["ctre::warp_sums<int>", "ctre::warp_sums<long long>", "ctre::warp_sums<float>",
             "ctre::warp_sums<double>", "ctre::block_reverse", "ctre::reads_unwritten_smem",
             "ctre::shuffle_in_branch", "ctre::two_shuffle_sites", "ctre::sync_in_branch",
             "ctre::early_exit_then_sync", "ctre::tile_sums"]


@pytest.fixture(scope="module")
def toy(emu_libs):
    return cuda_emu.RawModule(code=TOY, name_expressions=TOY_NAMES)


@pytest.mark.parametrize("ctype,dtype", [("int", np.int32), ("long long", np.int64),
                                         ("float", np.float32), ("double", np.float64)])
def test_emulator_warp_shuffles_compute(toy, ctype, dtype):
    x = np.arange(1, 201).astype(dtype)
    out = np.full(7, -1).astype(dtype)
    toy.get_function(f"ctre::warp_sums<{ctype}>")((2,), (128,), (x, out, np.int64(200)))
    np.testing.assert_array_equal(out, [x[i:i + 32].sum() for i in range(0, 200, 32)])


def test_emulator_shared_memory_and_syncthreads(toy):
    x = np.arange(3 * 64, dtype=np.float32)
    out = np.empty_like(x)
    toy.get_function("ctre::block_reverse")(3, 64, (x, out), shared_mem=64 * 4)
    np.testing.assert_array_equal(out, x.reshape(3, 64)[:, ::-1].ravel())


def test_emulator_fills_shared_memory_with_nan(toy):
    out = np.zeros(64, dtype=np.float32)
    toy.get_function("ctre::reads_unwritten_smem")(1, 64, (out,), shared_mem=64 * 4)
    assert np.isnan(out[0]) and np.all(out[1:] == 1)


@pytest.mark.parametrize("name,words", [
    ("ctre::shuffle_in_branch", ["divergence", "__shfl_xor_sync", "exited"]),
    ("ctre::two_shuffle_sites", ["divergence", "__shfl_sync", "line"]),
    ("ctre::sync_in_branch", ["__syncthreads", "not every thread"]),
])
def test_emulator_reports_divergence(toy, name, words):
    with pytest.raises(cuda_emu.EmulationError) as info:
        toy.get_function(name)(1, 128, (np.zeros(128, np.float32),))
    for word in words:
        assert word in str(info.value)
    assert name in str(info.value)


def test_emulator_reports_syncthreads_after_exit(toy):
    kernel = toy.get_function("ctre::early_exit_then_sync")
    out = np.zeros(128, np.float32)
    kernel(1, 128, (out, np.int64(128)))  # nobody exits early: fine
    with pytest.raises(cuda_emu.EmulationError, match="exited.*__syncthreads.*not every thread"):
        kernel(1, 128, (out, np.int64(100)))


def test_emulator_schedules_expose_a_missing_syncthreads(toy):
    kernel = toy.get_function("ctre::tile_sums")
    x = np.arange(4 * 128, dtype=np.float32) % 7
    want = x.reshape(4, 128).sum(axis=1)
    wrong = set()
    for policy in cuda_emu.SCHEDULES:
        with cuda_emu.schedule(policy, seed=1):
            for second_sync in (1, 0):
                out = np.zeros(4, np.float32)
                kernel(1, 128, (x, out, np.int64(4), np.int64(second_sync)), shared_mem=512)
                if second_sync:
                    np.testing.assert_array_equal(out, want)
                elif not np.array_equal(out, want):
                    wrong.add(policy)
    assert "warp_greedy_reverse" in wrong  # the race is visible under some schedule


def test_emulator_checks_arguments(toy):
    kernel = toy.get_function("ctre::warp_sums<float>")
    x, out = np.ones(64, np.float32), np.zeros(2, np.float32)
    with pytest.raises(TypeError, match=r"long long.*int32"):
        kernel(1, 64, (x, out, np.int32(64)))  # a GPU would read 4 garbage bytes
    with pytest.raises(TypeError, match="float64"):
        kernel(1, 64, (x, out, 64.0))  # Python float -> double, as in CuPy
    with pytest.raises(TypeError, match=r"array of float32, got one of float64"):
        kernel(1, 64, (x.astype(np.float64), out, 64))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        kernel(1, 64, (x, out))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernel(1, 64, (np.ones(128, np.float32)[::2], out, 64))
    kernel(1, 64, (x, out, 64))  # Python int -> long long: accepted
    np.testing.assert_array_equal(out, [32, 32])


@pytest.mark.parametrize("grid,block,smem,match", [
    (1, 2048, 0, "exceeds 1024"),
    ((1, 70000), 32, 0, "65535"),
    (0, 32, 0, "zero dimension"),
    (1, 64, 64 * 1024, "48 KiB"),
])
def test_emulator_rejects_bad_launch_configs(toy, grid, block, smem, match):
    with pytest.raises(cuda_emu.EmulationError, match=match):
        toy.get_function("ctre::block_reverse")(grid, block, (np.zeros(4096, np.float32),
                                                              np.zeros(4096, np.float32)),
                                                shared_mem=smem)


def test_emulator_refuses_static_shared_memory():
    code = "__global__ void k(float* o) { __shared__ float s[32]; o[0] = s[0]; }"
    with pytest.raises(cuda_emu.EmulationError, match="__shared__"):
        cuda_emu.RawModule(code=code, name_expressions=["k"])


# ------------------------------------------------- memcheck: the kernels under ASan
MEMCHECK_SCRIPT = r"""
import numpy as np, cuda_emu
from ctre_sparse.backends import cuda as cb, reference as ref
from ctre_sparse.sparse import CSRMatrix
cb._import_cupy = lambda: cuda_emu.NumpyAsCupy()
{mutation}
rng = np.random.default_rng(0)
lengths, n_cols = [0, 1, 31, 32, 33, 0, 257, 5, 0, 64, 300, 0], 400
for dtype, itype in ((np.float32, np.int32), (np.float64, np.int64)):
    indptr = np.zeros(len(lengths) + 1, itype)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate([np.sort(rng.choice(n_cols, n, replace=False))
                              for n in lengths]).astype(itype)
    data = rng.standard_normal(indices.shape[0]).astype(dtype)
    t = CSRMatrix(data, indices, indptr, (len(lengths), n_cols)).transpose_arrays()
    for batch in (1, 33, 300):
        X = rng.standard_normal((n_cols, batch)).astype(dtype)
        G = rng.standard_normal((len(lengths), batch)).astype(dtype)
        for blocks in (False, True):
            cb.use_row_blocks = lambda *a: blocks
            cb.spmm(indptr, indices, data, X, np.empty((len(lengths), batch), dtype))
            cb.spmm_t(*t, data, G, np.empty((n_cols, batch), dtype))
        cb.sddmm(indptr, indices, G, X, np.empty(indices.shape[0], dtype))
    A = rng.standard_normal((50, 33)).astype(dtype)
    rows = rng.integers(0, 50, 77).astype(itype)
    cb.cosine_pairs(A, A[:40].copy(), rows, rows % 40, np.empty(77, dtype))
    cb.topk_cosine(rng.standard_normal((n_cols, 8)).astype(dtype),
                   rng.standard_normal((len(lengths), 8)).astype(dtype), 5, indptr, indices, 5)
    S = np.zeros((3, n_cols), dtype)
    cb._mask_block(indptr, indices, 9, 12, n_cols, S)
    Y = rng.standard_normal((13, 33)).astype(dtype)
    cb.bias_activation(Y, rng.standard_normal(13).astype(dtype), -0.6, Y, np.empty_like(Y))
    cb.activation_backward(Y, Y.copy(), 0.0, np.empty_like(Y))
    w = rng.standard_normal(77).astype(dtype)
    cb.sgd_update(w, w.copy(), w.copy(), dtype(0.1), dtype(0.9), dtype(0.0), True)
print("MEMCHECK-OK")
"""


@pytest.fixture(scope="module")
def memcheck():
    """ASan libraries built here; skip when libasan is missing or will not preload."""
    if cuda_emu.libasan_path() is None:
        pytest.skip("no libasan.so for the compiler: memcheck mode unavailable")
    cuda_emu.compile_all_sanitized(workers=2)
    probe = cuda_emu.run_memcheck("print('ready')", timeout=120)
    if probe.returncode or "ready" not in probe.stdout:
        pytest.skip(f"Python does not start with ASan preloaded here: {probe.stderr[-300:]}")
    return cuda_emu.run_memcheck


def test_memcheck_no_out_of_bounds_access(memcheck):
    """Every kernel on awkward inputs, ASan watching each NumPy buffer and the
    dynamic shared memory (sized by the backend's own launcher)."""
    proc = memcheck(MEMCHECK_SCRIPT.replace("{mutation}", ""))
    assert proc.returncode == 0 and "MEMCHECK-OK" in proc.stdout, proc.stderr[-4000:]


SDDMM_CLAMP = "const long long q = p < nnz ? p : nnz - 1;"
SHORT_SMEM = """
_kernel = cb._kernel
def _short_smem(*names):
    f = _kernel(*names)
    if names[1] != "spmm_block":
        return f
    def launch(grid, block, args, shared_mem=0):  # one warp's tile short
        f(grid, block, args, shared_mem=shared_mem - 32 * names[-1] * args[3].dtype.itemsize)
    return launch
cb._kernel = _short_smem
"""


@pytest.mark.parametrize("case", ["sddmm_without_clamp", "spmm_block_short_smem"])
def test_memcheck_catches_an_overrun(memcheck, case):
    """The memcheck can fail: a planted overrun is reported by ASan."""
    if case == "sddmm_without_clamp":  # kernel bug: lanes past nnz read indices[nnz ..]
        source = cuda_backend.load_source("sddmm")
        assert SDDMM_CLAMP in source
        bad = source.replace(SDDMM_CLAMP, "const long long q = p;")
        cuda_emu.library_path(bad, cuda_backend.name_expressions("sddmm"), sanitize=True)
        mutation = (f"_load = cb.load_source\ncb.load_source = lambda stem, d=None: "
                    f"_load(stem, d).replace({SDDMM_CLAMP!r}, 'const long long q = p;')\n")
        where = "sddmm_group"
    else:  # launcher bug: too little dynamic shared memory for the block-per-row kernel
        mutation, where = SHORT_SMEM, "spmm_block"
    proc = memcheck(MEMCHECK_SCRIPT.replace("{mutation}", mutation))
    assert proc.returncode != 0 and "MEMCHECK-OK" not in proc.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in proc.stderr and where in proc.stderr, \
        proc.stderr[-3000:]
