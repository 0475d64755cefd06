// insert: bucket the new entries by row (counting sort), sort each bucket by
// column, then merge every row with its bucket.
#include "cpu/common.h"
#include "cpu/insert.h"

namespace ctre {

template <class T, class I>
void insert(std::int64_t n_rows, const I* indptr, const I* indices, const T* data,
            std::int64_t m, const std::int64_t* rows, const std::int64_t* cols, const T* values,
            I* out_indptr, I* out_indices, T* out_data, std::int64_t* old_pos,
            std::int64_t* new_pos) {
  // bucket[start[r] : start[r + 1]] = the new entries of row r, by column
  std::vector<std::int64_t> start(static_cast<std::size_t>(n_rows) + 1, 0);
  for (std::int64_t i = 0; i < m; ++i) ++start[rows[i] + 1];
  for (std::int64_t r = 0; r < n_rows; ++r) start[r + 1] += start[r];
  std::vector<std::int64_t> bucket(static_cast<std::size_t>(m));
  std::vector<std::int64_t> fill(start.begin(), start.end() - 1);
  for (std::int64_t i = 0; i < m; ++i) bucket[fill[rows[i]]++] = i;
  out_indptr[0] = 0;
  for (std::int64_t r = 0; r < n_rows; ++r)
    out_indptr[r + 1] = static_cast<I>(static_cast<std::int64_t>(indptr[r + 1]) + start[r + 1]);
  const std::int64_t nnz = n_rows ? static_cast<std::int64_t>(indptr[n_rows]) : 0;
#pragma omp parallel for schedule(dynamic, 64) if (nnz + m > kParallelWork)
  for (std::int64_t r = 0; r < n_rows; ++r) {
    std::int64_t* b0 = bucket.data() + start[r];
    std::int64_t* b1 = bucket.data() + start[r + 1];
    if (b1 - b0 > 1)
      std::sort(b0, b1, [cols](std::int64_t a, std::int64_t b) { return cols[a] < cols[b]; });
    std::int64_t p = indptr[r], q = out_indptr[r];
    const std::int64_t p1 = indptr[r + 1];
    for (const std::int64_t* b = b0; b != b1; ++b) {
      const std::int64_t c = cols[*b];
      for (; p < p1 && static_cast<std::int64_t>(indices[p]) < c; ++p, ++q) {
        out_indices[q] = indices[p];
        out_data[q] = data[p];
        old_pos[p] = q;
      }
      out_indices[q] = static_cast<I>(c);
      out_data[q] = values[*b];
      new_pos[*b] = q++;
    }
    for (; p < p1; ++p, ++q) {
      out_indices[q] = indices[p];
      out_data[q] = data[p];
      old_pos[p] = q;
    }
  }
}

#define CTRE_INSTANTIATE(T, I)                                                             \
  template void insert<T, I>(std::int64_t, const I*, const I*, const T*, std::int64_t,     \
                             const std::int64_t*, const std::int64_t*, const T*, I*, I*, T*, \
                             std::int64_t*, std::int64_t*);
CTRE_FOR_TYPES(CTRE_INSTANTIATE)
#undef CTRE_INSTANTIATE

}  // namespace ctre
