// spmm_t: out = W.T @ G through the cached transpose, no atomics.
//
// Arrays: t_indptr[n_cols + 1]:I, t_indices[nnz]:I (row of W of each
//         transposed entry), t_perm[nnz]:I (position in data), data[nnz]:F
//         (W's values in CSR order), G[n_rows, batch]:F (C order),
//         out[n_cols, batch]:F (overwritten).
// Cost: O(nnz * batch); the values are gathered through t_perm once per
// nonzero per batch tile. Same launch shapes as spmm.cu.
#include "csr_rows.cuh"

namespace ctre {

template <typename I, typename F, int V>
__global__ void spmm_t_warp(const I* __restrict__ t_indptr, const I* __restrict__ t_indices,
                            const I* __restrict__ t_perm, const F* __restrict__ data,
                            const F* __restrict__ G, F* __restrict__ out, long long n_cols,
                            long long batch) {
    csr_rows_warp<I, F, V, true>(t_indptr, t_indices, t_perm, data, G, out, n_cols, batch);
}

template <typename I, typename F, int V>
__global__ void spmm_t_block(const I* __restrict__ t_indptr, const I* __restrict__ t_indices,
                             const I* __restrict__ t_perm, const F* __restrict__ data,
                             const F* __restrict__ G, F* __restrict__ out, long long n_cols,
                             long long batch) {
    extern __shared__ __align__(16) unsigned char ctre_smem_spmm_t[];
    csr_rows_block<I, F, V, true>(t_indptr, t_indices, t_perm, data, G, out, n_cols, batch,
                                  reinterpret_cast<F*>(ctre_smem_spmm_t));
}

}  // namespace ctre
