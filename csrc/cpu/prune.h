// prune_magnitude: which entries survive removing the n_remove smallest |w|.
#pragma once

#include <cstdint>

namespace ctre {

// data[nnz]                : T      the values (finite; the op layer checks)
// kept[nnz - n_remove]     : int64  caller-allocated; receives the kept positions, ascending
// 0 <= n_remove <= nnz. The removed entries are exactly the first n_remove of a
// stable sort by |w|: all entries with |w| below the n_remove-th smallest
// magnitude v, then the entries equal to v lowest position first.
// Cost: O(nnz) expected (nth_element on a copy of |data|: nnz * sizeof(T) scratch).
template <class T>
void prune_magnitude(std::int64_t nnz, const T* data, std::int64_t n_remove, std::int64_t* kept);

}  // namespace ctre
