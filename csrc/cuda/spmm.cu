// spmm: out = W @ X, W CSR (n_rows x n_cols), X dense feature-major.
//
// Arrays: indptr[n_rows + 1]:I, indices[nnz]:I, data[nnz]:F,
//         X[n_cols, batch]:F (C order), out[n_rows, batch]:F (overwritten).
// Cost: O(nnz * batch) multiply-adds; X rows read once per nonzero per batch tile.
// spmm_warp: one warp per row (launch: blockDim 32 * warps, grid (row blocks, batch tiles)).
// spmm_block: one block per row for long rows (dynamic shared memory:
//             blockDim.x * V * sizeof(F) bytes).
#include "csr_rows.cuh"

namespace ctre {

template <typename I, typename F, int V>
__global__ void spmm_warp(const I* __restrict__ indptr, const I* __restrict__ indices,
                          const F* __restrict__ data, const F* __restrict__ X,
                          F* __restrict__ out, long long n_rows, long long batch) {
    csr_rows_warp<I, F, V, false>(indptr, indices, nullptr, data, X, out, n_rows, batch);
}

template <typename I, typename F, int V>
__global__ void spmm_block(const I* __restrict__ indptr, const I* __restrict__ indices,
                           const F* __restrict__ data, const F* __restrict__ X,
                           F* __restrict__ out, long long n_rows, long long batch) {
    extern __shared__ __align__(16) unsigned char ctre_smem_spmm[];
    csr_rows_block<I, F, V, false>(indptr, indices, nullptr, data, X, out, n_rows, batch,
                                   reinterpret_cast<F*>(ctre_smem_spmm));
}

}  // namespace ctre
