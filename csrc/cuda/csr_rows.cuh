// Row-tile accumulation shared by spmm.cu (W @ X) and spmm_t.cu (W.T @ G).
//
// A warp owns one output row and a tile of 32 * V batch columns: lane l
// accumulates columns col0 + l + 32 * v (v < V). The row's nonzeros are read
// 32 at a time, one per lane (coalesced), then broadcast with shuffles; each
// nonzero costs V coalesced loads of the dense operand's row. With PERM the
// values come through a permutation (the cached transpose's t_perm), so
// W.T @ G needs no atomics and no transposed copy of the values.
#ifndef CTRE_SPARSE_CSR_ROWS_CUH
#define CTRE_SPARSE_CSR_ROWS_CUH

#include "common.cuh"

namespace ctre {

// acc[v] += sum over p in the slice of data[perm?perm[p]:p] * X[indices[p], col0 + lane + 32v].
// The slice is positions p0 + first + k * stride .. (+32) for k >= 0, below p1
// (first/stride let the warps of a block split one long row). All lanes of
// the warp must call it with the same arguments except lane.
template <typename I, typename F, int V, bool PERM>
__device__ __forceinline__ void accumulate_row_slice(
        const I* __restrict__ indices, const I* __restrict__ perm, const F* __restrict__ data,
        const F* __restrict__ X, long long batch, long long col0, long long p0, long long p1,
        long long first, long long stride, int lane, F (&acc)[V]) {
    for (long long base = p0 + first; base < p1; base += stride) {
        const long long p = base + lane;
        long long c = 0;
        F w = F(0);
        if (p < p1) {
            c = static_cast<long long>(__ldg(indices + p));
            w = __ldg(data + (PERM ? static_cast<long long>(__ldg(perm + p)) : p));
        }
        const long long remaining = p1 - base;
        const int cnt = remaining < WARP ? static_cast<int>(remaining) : WARP;
#pragma unroll 4  // independent gathers of several X rows in flight
        for (int j = 0; j < cnt; ++j) {
            const long long cj = __shfl_sync(FULL_MASK, c, j);
            const F wj = __shfl_sync(FULL_MASK, w, j);
            const F* __restrict__ xrow = X + cj * batch;
#pragma unroll
            for (int v = 0; v < V; ++v) {
                const long long b = col0 + lane + WARP * v;
                if (b < batch) acc[v] += wj * __ldg(xrow + b);
            }
        }
    }
}

// One warp per row: out[row, tile] = sum over the row. blockDim.x = 32 * warps,
// grid = (row blocks, batch tiles); grid-stride in both directions.
template <typename I, typename F, int V, bool PERM>
__device__ __forceinline__ void csr_rows_warp(
        const I* __restrict__ indptr, const I* __restrict__ indices, const I* __restrict__ perm,
        const F* __restrict__ data, const F* __restrict__ X, F* __restrict__ out,
        long long n_rows, long long batch) {
    const int lane = threadIdx.x & (WARP - 1);
    const long long warps = blockDim.x / WARP;
    const long long row_step = static_cast<long long>(gridDim.x) * warps;
    const long long tile = static_cast<long long>(WARP) * V;
    for (long long row = blockIdx.x * warps + threadIdx.x / WARP; row < n_rows; row += row_step) {
        const long long p0 = indptr[row], p1 = indptr[row + 1];
        for (long long col0 = blockIdx.y * tile; col0 < batch; col0 += gridDim.y * tile) {
            F acc[V];
#pragma unroll
            for (int v = 0; v < V; ++v) acc[v] = F(0);
            accumulate_row_slice<I, F, V, PERM>(indices, perm, data, X, batch, col0, p0, p1, 0,
                                                WARP, lane, acc);
#pragma unroll
            for (int v = 0; v < V; ++v) {
                const long long b = col0 + lane + WARP * v;
                if (b < batch) out[row * batch + b] = acc[v];
            }
        }
    }
}

// One block per row (for long rows): the block's warps split the row's
// nonzeros and reduce through shared memory (blockDim.x / 32 * 32 * V values
// of F, passed as dynamic shared memory by the launcher).
template <typename I, typename F, int V, bool PERM>
__device__ __forceinline__ void csr_rows_block(
        const I* __restrict__ indptr, const I* __restrict__ indices, const I* __restrict__ perm,
        const F* __restrict__ data, const F* __restrict__ X, F* __restrict__ out,
        long long n_rows, long long batch, F* smem) {
    const int lane = threadIdx.x & (WARP - 1);
    const int warp = threadIdx.x / WARP;
    const int warps = blockDim.x / WARP;
    const int tile = WARP * V;
    for (long long row = blockIdx.x; row < n_rows; row += gridDim.x) {
        const long long p0 = indptr[row], p1 = indptr[row + 1];
        for (long long col0 = blockIdx.y * static_cast<long long>(tile); col0 < batch;
             col0 += static_cast<long long>(gridDim.y) * tile) {
            F acc[V];
#pragma unroll
            for (int v = 0; v < V; ++v) acc[v] = F(0);
            accumulate_row_slice<I, F, V, PERM>(indices, perm, data, X, batch, col0, p0, p1,
                                                static_cast<long long>(warp) * WARP,
                                                static_cast<long long>(warps) * WARP, lane, acc);
#pragma unroll
            for (int v = 0; v < V; ++v) smem[warp * tile + lane + WARP * v] = acc[v];
            __syncthreads();
            for (int i = threadIdx.x; i < tile; i += blockDim.x) {
                F s = F(0);
                for (int w = 0; w < warps; ++w) s += smem[w * tile + i];
                const long long b = col0 + i;
                if (b < batch) out[row * batch + b] = s;
            }
            __syncthreads();
        }
    }
}

}  // namespace ctre

#endif  // CTRE_SPARSE_CSR_ROWS_CUH
