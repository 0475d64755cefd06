// spmm: out = W @ X for W in CSR (n_rows x n_cols), X dense (n_cols x batch).
#pragma once

#include <cstdint>

namespace ctre {

// indptr[n_rows + 1] : I   row pointers, indptr[0] == 0
// indices[nnz]       : I   column of each nonzero, in [0, n_cols)
// data[nnz]          : T   value of each nonzero
// X[n_cols * batch]  : T   dense, C order (one contiguous batch vector per column of W)
// out[n_rows * batch]: T   overwritten with W @ X (C order)
// Cost: O(nnz * batch) multiply-adds + O(n_rows * batch) stores; parallel over rows.
// T in {float, double}, I in {int32_t, int64_t}; explicit instantiations in spmm.cpp.
template <class T, class I>
void spmm(std::int64_t n_rows, std::int64_t batch, const I* indptr, const I* indices,
          const T* data, const T* X, T* out);

}  // namespace ctre
