// spmm_t: out = W.T @ G through the cached transpose of W (no atomics).
#pragma once

#include <cstdint>

namespace ctre {

// W is n_out x n_in in CSR; its transpose arrays (CSRMatrix.transpose_arrays):
// t_indptr[n_in + 1]  : I   row pointers of W.T
// t_indices[nnz]      : I   row of W (column of W.T) of each entry, in [0, n_out)
// t_perm[nnz]         : I   position in data of each entry of W.T
// data[nnz]           : T   W's values, in W's (CSR) order
// G[n_out * batch]    : T   dense, C order
// out[n_in * batch]   : T   overwritten with W.T @ G (C order)
// Cost: O(nnz * batch) multiply-adds + one gathered read of data per nonzero;
// parallel over the rows of W.T (the inputs), each written by one thread.
template <class T, class I>
void spmm_t(std::int64_t n_in, std::int64_t batch, const I* t_indptr, const I* t_indices,
            const I* t_perm, const T* data, const T* G, T* out);

}  // namespace ctre
