// insert: merge new (row, col, value) entries into a CSR matrix, rows sorted.
#pragma once

#include <cstdint>

namespace ctre {

// indptr[n_rows + 1], indices[nnz] : I   the old pattern (canonical: sorted, unique per row)
// data[nnz]                        : T   the old values
// rows[m], cols[m]                 : int64, in range, distinct, absent from the pattern
// values[m]                        : T
// out_indptr[n_rows + 1] : I, out_indices[nnz + m] : I, out_data[nnz + m] : T  (caller-allocated)
// old_pos[nnz] : int64   where each old entry now sits
// new_pos[m]   : int64   where each inserted entry sits (input order)
// Cost: O(nnz + m log m + n_rows); rows merged in parallel.
template <class T, class I>
void insert(std::int64_t n_rows, const I* indptr, const I* indices, const T* data,
            std::int64_t m, const std::int64_t* rows, const std::int64_t* cols, const T* values,
            I* out_indptr, I* out_indices, T* out_data, std::int64_t* old_pos,
            std::int64_t* new_pos);

}  // namespace ctre
