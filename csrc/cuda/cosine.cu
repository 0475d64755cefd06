// Cosine similarity kernels: row norms, cosine_pairs, and the top-k block mask.
//
// row_norms:    M[n, len]:F -> norms[n]:F = sqrt(sum M[i, :]^2). One warp per row. O(n * len).
// cosine_pairs: A[n_a, len]:F, B[n_b, len]:F, rows[k]:I, cols[k]:I, na[n_a]:F,
//               nb[n_b]:F (row norms) -> out[k]:F = |A[rows[i]] . B[cols[i]]| / (na * nb),
//               0 where na * nb == 0. One warp per 32 pairs (group_dot32). O(k * len).
// topk_mask_block: S[r1 - r0, n_cols]:F, a block of scores for rows r0..r1-1;
//               sets S[r - r0, indices[p]] = -1 for every stored (r, indices[p]) of
//               the pattern (indptr[n_rows + 1]:I, indices[nnz]:I), so existing
//               connections are never selected. One warp per row. O(nnz in the block).
#include "common.cuh"

namespace ctre {

template <typename F>
__global__ void row_norms(const F* __restrict__ M, F* __restrict__ norms, long long n,
                          long long len) {
    const int lane = threadIdx.x & (WARP - 1);
    const long long warps = blockDim.x / WARP;
    const long long step = static_cast<long long>(gridDim.x) * warps;
    for (long long i = blockIdx.x * warps + threadIdx.x / WARP; i < n; i += step) {
        const F* __restrict__ m = M + i * len;
        F acc = F(0);
        for (long long t = lane; t < len; t += WARP) {
            const F x = __ldg(m + t);
            acc += x * x;
        }
        acc = warp_sum(acc);
        if (lane == 0) norms[i] = sqrt(acc);
    }
}

template <typename I, typename F>
__global__ void cosine_pairs_group(const F* __restrict__ A, const F* __restrict__ B,
                                   const I* __restrict__ rows, const I* __restrict__ cols,
                                   const F* __restrict__ na, const F* __restrict__ nb,
                                   F* __restrict__ out, long long k, long long len) {
    const int lane = threadIdx.x & (WARP - 1);
    const long long warps = blockDim.x / WARP;
    const long long gwarp = static_cast<long long>(blockIdx.x) * warps + threadIdx.x / WARP;
    const long long step = static_cast<long long>(gridDim.x) * warps * WARP;
    for (long long base = gwarp * WARP; base < k; base += step) {
        const long long i = base + lane;
        const long long q = i < k ? i : k - 1;  // lanes past the end redo the last pair
        const long long r = static_cast<long long>(__ldg(rows + q));
        const long long c = static_cast<long long>(__ldg(cols + q));
        const F dot = group_dot32<F>(A, B, r, c, len, lane);
        if (i < k) {
            const F den = na[r] * nb[c];
            out[i] = den > F(0) ? fabs(dot) / den : F(0);
        }
    }
}

template <typename I, typename F>
__global__ void topk_mask_block(const I* __restrict__ indptr, const I* __restrict__ indices,
                                long long r0, long long r1, long long n_cols,
                                F* __restrict__ S) {
    const int lane = threadIdx.x & (WARP - 1);
    const long long warps = blockDim.x / WARP;
    const long long step = static_cast<long long>(gridDim.x) * warps;
    for (long long r = r0 + blockIdx.x * warps + threadIdx.x / WARP; r < r1; r += step) {
        const long long p1 = indptr[r + 1];
        F* __restrict__ srow = S + (r - r0) * n_cols;
        for (long long p = indptr[r] + lane; p < p1; p += WARP)
            srow[static_cast<long long>(indices[p])] = F(-1);
    }
}

}  // namespace ctre
