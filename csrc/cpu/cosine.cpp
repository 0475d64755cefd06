// cosine_pairs and topk_block: dispatchers plus the (ISA-independent) merge of
// the top-k candidates.
#include <functional>

#include "cpu/common.h"
#include "cpu/cosine.h"

namespace ctre {

template <class T>
struct TopCand {
  T score;
  std::int64_t key;
};

// The top-k order: higher score first, then lower key first (a functor, so
// that the sorts inline it).
struct Better {
  template <class T>
  bool operator()(const TopCand<T>& a, const TopCand<T>& b) const {
    return a.score > b.score || (a.score == b.score && a.key < b.key);
  }
};

// Keeps the k best of v (unordered) and returns the k-th best score, the new
// admission threshold; k >= 1 and v.size() >= k.
template <class T>
T keep_best(std::vector<TopCand<T>>& v, std::int64_t k) {
  std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), Better());
  const T kth = v[k - 1].score;
  v.resize(k);
  return kth;
}

}  // namespace ctre

#define CTRE_KERNEL_HEADER "cpu/cosine_kernel.h"
#include "cpu/isa_expand.h"

namespace ctre {

template <class T>
void cosine_pairs(std::int64_t n_a, std::int64_t n_b, std::int64_t dim, const T* A, const T* B,
                  std::int64_t k, const std::int64_t* rows, const std::int64_t* cols, T* out) {
  CTRE_DISPATCH(cosine_pairs_impl, n_a, n_b, dim, A, B, k, rows, cols, out);
}

// A guess of an admission threshold for one block: the |S| value that about
// 2k of an even sample of the block's entries (scaled) exceed, so that about
// 2k entries of the block lie above it; -1 (no guess) for a small block, or
// when k is too small (fewer than 32 sampled entries above) or too large a
// share of the block. A guess, not a bound: topk_block checks it.
constexpr std::int64_t kSampleSize = 8192;

template <class T>
T sample_threshold(std::int64_t m, std::int64_t n, const T* S, std::int64_t k) {
  const std::int64_t total = m * n;
  if (total < 4 * kSampleSize) return T(-1);
  std::vector<T> sample;
  sample.reserve(kSampleSize);
  for (std::int64_t s = 0; s < kSampleSize; ++s) {
    const T v = std::fabs(S[s * total / kSampleSize]);
    if (!(v != v)) sample.push_back(v);  // S is not masked yet; NaN only if the input had one
  }
  const std::int64_t rank = 2 * k * static_cast<std::int64_t>(sample.size()) / total;
  if (rank < 32 || rank >= static_cast<std::int64_t>(sample.size())) return T(-1);
  std::nth_element(sample.begin(), sample.begin() + rank, sample.end(), std::greater<T>());
  return sample[rank];
}

template <class T, class I>
std::int64_t topk_block(std::int64_t m, std::int64_t n, T* S, std::int64_t r0, const I* indptr,
                        const I* indices, std::int64_t k, std::int64_t n_top,
                        const std::int64_t* keys_in, const T* scores_in,
                        std::int64_t* keys_out, T* scores_out, bool sort_out) {
  if (k <= 0) return 0;
  // Full top: only entries strictly above the k-th score can enter (an equal
  // score loses the tie, its key being larger than every key seen so far).
  const T thr_top = n_top >= k ? scores_in[k - 1] : T(-1);
  // A sampled guess can only raise the bar. It is safe when at least k entries
  // of (top, block) lie strictly above it: then the k best all do, and each of
  // them was admitted. Otherwise the block is scanned again from thr_top (the
  // NaN mask is idempotent); the answer is the same either way.
  T thr0 = std::max(thr_top, sample_threshold(m, n, S, k));
  std::vector<std::vector<TopCand<T>>> bufs;
  std::vector<char> raised;
  CTRE_DISPATCH(topk_scan_block, m, n, S, r0, indptr, indices, k, thr0, bufs, raised);
  if (thr0 > thr_top) {
    std::int64_t above = 0;
    bool enough = false;
    for (std::int64_t i = 0; i < n_top && scores_in[i] > thr0; ++i) ++above;
    for (std::size_t t = 0; t < bufs.size(); ++t) {
      above += static_cast<std::int64_t>(bufs[t].size());
      enough = enough || raised[t];
    }
    if (!enough && above < k) {
      thr0 = thr_top;
      CTRE_DISPATCH(topk_scan_block, m, n, S, r0, indptr, indices, k, thr0, bufs, raised);
    }
  }
  std::vector<TopCand<T>> all;
  std::size_t total = static_cast<std::size_t>(n_top);
  for (const auto& b : bufs) total += b.size();
  all.reserve(total);
  for (std::int64_t i = 0; i < n_top; ++i) all.push_back(TopCand<T>{scores_in[i], keys_in[i]});
  for (const auto& b : bufs) all.insert(all.end(), b.begin(), b.end());
  // With k or more, the k-th best ends at k - 1 (and the better ones before it):
  // all the next block needs from an unsorted top is its k-th score there.
  if (static_cast<std::int64_t>(all.size()) >= k) keep_best(all, k);
  if (sort_out) std::sort(all.begin(), all.end(), Better());
  for (std::size_t i = 0; i < all.size(); ++i) {
    keys_out[i] = all[i].key;
    scores_out[i] = all[i].score;
  }
  return static_cast<std::int64_t>(all.size());
}

template void cosine_pairs<float>(std::int64_t, std::int64_t, std::int64_t, const float*,
                                  const float*, std::int64_t, const std::int64_t*,
                                  const std::int64_t*, float*);
template void cosine_pairs<double>(std::int64_t, std::int64_t, std::int64_t, const double*,
                                   const double*, std::int64_t, const std::int64_t*,
                                   const std::int64_t*, double*);

#define CTRE_INSTANTIATE(T, I)                                                              \
  template std::int64_t topk_block<T, I>(std::int64_t, std::int64_t, T*, std::int64_t,     \
                                         const I*, const I*, std::int64_t, std::int64_t,   \
                                         const std::int64_t*, const T*, std::int64_t*, T*,  \
                                         bool);
CTRE_INSTANTIATE(float, std::int32_t)
CTRE_INSTANTIATE(float, std::int64_t)
CTRE_INSTANTIATE(double, std::int32_t)
CTRE_INSTANTIATE(double, std::int64_t)
#undef CTRE_INSTANTIATE

}  // namespace ctre
