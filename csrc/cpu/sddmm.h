// sddmm: the values of G @ X.T at W's sparsity pattern (the weight gradient
// restricted to the existing connections).
#pragma once

#include <cstdint>

namespace ctre {

// indptr[n_rows + 1] : I   W's row pointers
// indices[nnz]       : I   W's column of each nonzero, in [0, n_cols)
// G[n_rows * batch]  : T   dense, C order
// X[n_cols * batch]  : T   dense, C order
// out[nnz]           : T   overwritten: out[p] = dot(G[row(p), :], X[indices[p], :])
// Cost: O(nnz * batch) multiply-adds; parallel over rows, each out[p] written by
// the one thread owning its row.
template <class T, class I>
void sddmm(std::int64_t n_rows, std::int64_t batch, const I* indptr, const I* indices,
           const T* G, const T* X, T* out);

}  // namespace ctre
