// sddmm: out[p] = dot(G[row(p), :], X[indices[p], :]) for every stored p.
//
// Arrays: indptr[n_rows + 1]:I, indices[nnz]:I, G[n_rows, batch]:F,
//         X[n_cols, batch]:F (both C order), out[nnz]:F (overwritten).
// Cost: O(nnz * batch) multiply-adds, O(nnz log n_rows) for the row lookup.
// One warp per group of 32 consecutive nonzeros (balanced whatever the row
// lengths): lane j finds row(p0 + j) by binary search, the warp computes the
// 32 dot products with lanes along the batch axis (coalesced), and a
// transposed reduction leaves dot j in lane j, so the stores are coalesced.
// Launch: blockDim 32 * warps, any grid (grid-stride over groups).
#include "common.cuh"

namespace ctre {

template <typename I, typename F>
__global__ void sddmm_group(const I* __restrict__ indptr, const I* __restrict__ indices,
                            const F* __restrict__ G, const F* __restrict__ X,
                            F* __restrict__ out, long long n_rows, long long nnz,
                            long long batch) {
    const int lane = threadIdx.x & (WARP - 1);
    const long long warps = blockDim.x / WARP;
    const long long gwarp = static_cast<long long>(blockIdx.x) * warps + threadIdx.x / WARP;
    const long long step = static_cast<long long>(gridDim.x) * warps * WARP;
    for (long long base = gwarp * WARP; base < nnz; base += step) {
        const long long p = base + lane;
        const long long q = p < nnz ? p : nnz - 1;  // lanes past the end redo the last entry
        const long long r = row_of(indptr, n_rows, q);
        const long long c = static_cast<long long>(__ldg(indices + q));
        const F dot = group_dot32<F>(G, X, r, c, batch, lane);
        if (p < nnz) out[p] = dot;
    }
}

}  // namespace ctre
