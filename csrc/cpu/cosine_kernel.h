// Kernels of cosine_pairs and of the top-k block selection, compiled once per
// ISA path (see isa_expand.h; NO include guard). Included by cosine.cpp,
// which defines TopCand, keep_best and the dispatchers.

namespace ctre {
namespace CTRE_ISA_NS {

// dot(a, b), dot(a, a) and dot(b, b) in one pass over the two rows.
template <class T>
inline void dot3(const T* a, const T* b, std::int64_t n, T& ab, T& aa, T& bb) {
  using S = Simd<T>;
  constexpr int W = S::W;
  typename S::V sab = S::zero(), saa = S::zero(), sbb = S::zero();
  typename S::V tab = S::zero(), taa = S::zero(), tbb = S::zero();
  std::int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    const typename S::V x0 = S::load(a + j), y0 = S::load(b + j);
    const typename S::V x1 = S::load(a + j + W), y1 = S::load(b + j + W);
    sab = S::fma(x0, y0, sab); saa = S::fma(x0, x0, saa); sbb = S::fma(y0, y0, sbb);
    tab = S::fma(x1, y1, tab); taa = S::fma(x1, x1, taa); tbb = S::fma(y1, y1, tbb);
  }
  for (; j + W <= n; j += W) {
    const typename S::V x0 = S::load(a + j), y0 = S::load(b + j);
    sab = S::fma(x0, y0, sab); saa = S::fma(x0, x0, saa); sbb = S::fma(y0, y0, sbb);
  }
  ab = S::hsum(sab) + S::hsum(tab);
  aa = S::hsum(saa) + S::hsum(taa);
  bb = S::hsum(sbb) + S::hsum(tbb);
  for (; j < n; ++j) {
    ab += a[j] * b[j];
    aa += a[j] * a[j];
    bb += b[j] * b[j];
  }
}

// out[i] = |cos(A[rows[i]], B[cols[i]])| (0 where a norm is 0); see cosine.h.
// The norms come from the same pass as the dot product (the pass is
// memory-bound: two random rows per pair), so no O(n_a + n_b) scratch.
template <class T>
void cosine_pairs_impl(std::int64_t, std::int64_t, std::int64_t dim, const T* A, const T* B,
                       std::int64_t k, const std::int64_t* rows, const std::int64_t* cols,
                       T* out) {
#pragma omp parallel for schedule(static) if (k * dim > kParallelWork)
  for (std::int64_t i = 0; i < k; ++i) {
    if (i + 4 < k) {  // start the two random rows of a pair ahead (the streamer does the rest)
      const char* pa = reinterpret_cast<const char*>(A + rows[i + 4] * dim);
      const char* pb = reinterpret_cast<const char*>(B + cols[i + 4] * dim);
      for (int l = 0; l < 4 * 64 && l < dim * static_cast<std::int64_t>(sizeof(T)); l += 64) {
        __builtin_prefetch(pa + l, 0, 3);
        __builtin_prefetch(pb + l, 0, 3);
      }
    }
    T ab, aa, bb;
    dot3(A + rows[i] * dim, B + cols[i] * dim, dim, ab, aa, bb);
    const T den = std::sqrt(aa) * std::sqrt(bb);
    out[i] = den > T(0) ? std::fabs(ab) / den : T(0);
  }
}

// Appends every (|row[j]|, key0 + j) with |row[j]| > thr to buf; when buf
// reaches cap it keeps the k best and raises thr to the k-th best score.
// Entries marked NaN (the exclusion mask) never compare greater.
template <class T>
inline void topk_scan_row(const T* row, std::int64_t n, std::int64_t key0, std::int64_t k,
                          std::size_t cap, T& thr, std::vector<TopCand<T>>& buf) {
  using S = Simd<T>;
  constexpr int W = S::W;
  std::int64_t j = 0;
  for (; j + W <= n; j += W) {
    unsigned m = S::gt_abs_mask(row + j, thr);
    while (m) {
      const int b = __builtin_ctz(m);
      m &= m - 1;
      buf.push_back(TopCand<T>{std::fabs(row[j + b]), key0 + j + b});
    }
    if (buf.size() >= cap) thr = keep_best(buf, k);
  }
  for (; j < n; ++j) {
    if (std::fabs(row[j]) > thr) buf.push_back(TopCand<T>{std::fabs(row[j]), key0 + j});
  }
  if (buf.size() >= cap) thr = keep_best(buf, k);
}

// Per thread: mask then scan its contiguous share of the block's rows. Every
// entry with |S| > thr0 is admitted unless the thread's own threshold has risen
// above it (then that thread alone saw at least k such entries): raised[t]
// says so, and bufs[t] holds the thread's admissions (its best k after a rise).
template <class T, class I>
void topk_scan_block(std::int64_t m, std::int64_t n, T* S, std::int64_t r0, const I* indptr,
                     const I* indices, std::int64_t k, T thr0,
                     std::vector<std::vector<TopCand<T>>>& bufs, std::vector<char>& raised) {
  // Compacting costs O(cap) and happens once per cap - k admissions.
  const std::size_t cap = static_cast<std::size_t>(3 * k + 1024);
  const int nt = (m * n > kParallelWork) ? num_threads() : 1;
  bufs.assign(nt, {});
  raised.assign(nt, 0);
#pragma omp parallel num_threads(nt)
  {
    const int t = thread_id(), nteam = team_size();
    const std::int64_t i0 = m * t / nteam, i1 = m * (t + 1) / nteam;
    std::vector<TopCand<T>>& buf = bufs[t];
    buf.reserve(std::min<std::size_t>(cap + 64, static_cast<std::size_t>((i1 - i0) * n)));
    T thr = thr0;
    for (std::int64_t i = i0; i < i1; ++i) {
      T* row = S + i * n;
      for (std::int64_t p = indptr[r0 + i]; p < static_cast<std::int64_t>(indptr[r0 + i + 1]); ++p)
        row[indices[p]] = std::numeric_limits<T>::quiet_NaN();
      topk_scan_row(row, n, (r0 + i) * n, k, cap, thr, buf);
    }
    raised[t] = thr > thr0;
  }
}

}  // namespace CTRE_ISA_NS
}  // namespace ctre
