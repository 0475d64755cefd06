// prune_magnitude: selection by magnitude with the stable tie rule.
#include "cpu/common.h"
#include "cpu/prune.h"

namespace ctre {

template <class T>
void prune_magnitude(std::int64_t nnz, const T* data, std::int64_t n_remove, std::int64_t* kept) {
  if (n_remove <= 0) {
    for (std::int64_t p = 0; p < nnz; ++p) kept[p] = p;
    return;
  }
  if (n_remove >= nnz) return;
  std::vector<T> mag(static_cast<std::size_t>(nnz));
  for (std::int64_t p = 0; p < nnz; ++p) mag[p] = std::fabs(data[p]);
  std::nth_element(mag.begin(), mag.begin() + (n_remove - 1), mag.end());
  const T v = mag[n_remove - 1];  // the n_remove-th smallest magnitude
  std::int64_t below = 0;
  for (std::int64_t p = 0; p < nnz; ++p) below += std::fabs(data[p]) < v;
  std::int64_t equal_to_remove = n_remove - below, j = 0;
  for (std::int64_t p = 0; p < nnz; ++p) {
    const T a = std::fabs(data[p]);
    if (a < v) continue;
    if (a == v && equal_to_remove > 0) {
      --equal_to_remove;
      continue;
    }
    kept[j++] = p;
  }
}

template void prune_magnitude<float>(std::int64_t, const float*, std::int64_t, std::int64_t*);
template void prune_magnitude<double>(std::int64_t, const double*, std::int64_t, std::int64_t*);

}  // namespace ctre
