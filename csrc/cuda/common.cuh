// Shared device helpers for the ctre_sparse CUDA kernels.
//
// Self-contained on purpose: no standard headers, so the same text compiles
// under NVRTC (CuPy RawModule, at run time) and under nvcc (the CI compile
// check). Index type I is int or long long, value type F is float or double;
// every size and position is carried as long long inside the kernels.
#ifndef CTRE_SPARSE_COMMON_CUH
#define CTRE_SPARSE_COMMON_CUH

namespace ctre {

constexpr unsigned FULL_MASK = 0xffffffffu;
constexpr int WARP = 32;

// Sum of v over the 32 lanes of a warp, result in every lane.
template <typename F>
__device__ __forceinline__ F warp_sum(F v) {
#pragma unroll
    for (int k = 4; k >= 0; --k) v += __shfl_xor_sync(FULL_MASK, v, 1 << k);
    return v;
}

// One step of transpose_reduce32: lanes exchange the half of v[0 .. 2S) they
// do not keep with the partner lane (lane ^ S); afterwards v[0 .. S) holds
// partial sums of the entries whose index bit S equals the lane's bit S.
template <int S, typename F>
__device__ __forceinline__ void transpose_reduce_step(F (&v)[32], int lane) {
    const bool upper = (lane & S) != 0;
#pragma unroll
    for (int i = 0; i < S; ++i) {
        const F send = upper ? v[i] : v[i + S];
        const F keep = upper ? v[i + S] : v[i];
        v[i] = keep + __shfl_xor_sync(FULL_MASK, send, S);
    }
}

// Transposed warp reduction: lane L holds 32 partial sums v[0..31]; on return
// lane j holds the sum over all lanes of v[j]. 31 shuffles for 32 sums
// (instead of 32 * 5 with one warp_sum per value). Clobbers v.
template <typename F>
__device__ __forceinline__ F transpose_reduce32(F (&v)[32], int lane) {
    transpose_reduce_step<16>(v, lane);
    transpose_reduce_step<8>(v, lane);
    transpose_reduce_step<4>(v, lane);
    transpose_reduce_step<2>(v, lane);
    transpose_reduce_step<1>(v, lane);
    return v[0];
}

// Row of CSR position p (0 <= p < nnz): the r with indptr[r] <= p < indptr[r+1].
// indptr[n_rows + 1]; O(log n_rows). Empty rows are skipped correctly.
template <typename I>
__device__ __forceinline__ long long row_of(const I* __restrict__ indptr, long long n_rows,
                                            long long p) {
    long long lo = 0, hi = n_rows - 1;
    while (lo < hi) {
        const long long mid = (lo + hi) >> 1;
        if (static_cast<long long>(indptr[mid + 1]) <= p) lo = mid + 1; else hi = mid;
    }
    return lo;
}

// For 32 (a_row, b_row) pairs held one per lane, lane j returns
// dot(A[a_row_j, :], B[b_row_j, :]) over len contiguous values per row.
// A[*, len], B[*, len] row-major. Lanes stride the len axis (coalesced
// 128-byte loads per pair); results are gathered with transpose_reduce32.
// Every lane must hold a valid pair: callers give lanes past the end a copy of
// a valid pair (and do not store their result). O(32 * len / 32) loads per lane.
template <typename F>
__device__ __forceinline__ F group_dot32(const F* __restrict__ A, const F* __restrict__ B,
                                         long long a_row, long long b_row, long long len,
                                         int lane) {
    F v[32];
#pragma unroll
    for (int j = 0; j < 32; ++j) {
        const long long aj = __shfl_sync(FULL_MASK, a_row, j);
        const long long bj = __shfl_sync(FULL_MASK, b_row, j);
        const F* __restrict__ a = A + aj * len;
        const F* __restrict__ b = B + bj * len;
        F acc = F(0);
#pragma unroll 1
        for (long long t = lane; t < len; t += WARP) acc += __ldg(a + t) * __ldg(b + t);
        v[j] = acc;
    }
    return transpose_reduce32(v, lane);
}

}  // namespace ctre

#endif  // CTRE_SPARSE_COMMON_CUH
