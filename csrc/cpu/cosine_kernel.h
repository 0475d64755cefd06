// Kernels of cosine_pairs and of the top-k block selection, compiled once per
// ISA path (see isa_expand.h; NO include guard). Included by cosine.cpp,
// which defines TopCand, keep_best and the dispatchers.

namespace ctre {
namespace CTRE_ISA_NS {

// dot(a[0:n], b[0:n]) with two independent vector accumulators.
template <class T>
inline T dot(const T* a, const T* b, std::int64_t n) {
  using S = Simd<T>;
  constexpr int W = S::W;
  typename S::V s0 = S::zero(), s1 = S::zero();
  std::int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    s0 = S::fma(S::load(a + j), S::load(b + j), s0);
    s1 = S::fma(S::load(a + j + W), S::load(b + j + W), s1);
  }
  for (; j + W <= n; j += W) s0 = S::fma(S::load(a + j), S::load(b + j), s0);
  T s = S::hsum(s0) + S::hsum(s1);
  for (; j < n; ++j) s += a[j] * b[j];
  return s;
}

// norms[i] = ||M[i, :]||_2 for i < n.
template <class T>
void row_norms(std::int64_t n, std::int64_t dim, const T* M, T* norms) {
#pragma omp parallel for schedule(static) if (n * dim > kParallelWork)
  for (std::int64_t i = 0; i < n; ++i) norms[i] = std::sqrt(dot(M + i * dim, M + i * dim, dim));
}

// out[i] = |cos(A[rows[i]], B[cols[i]])| (0 where a norm is 0); see cosine.h.
template <class T>
void cosine_pairs_impl(std::int64_t n_a, std::int64_t n_b, std::int64_t dim, const T* A,
                       const T* B, std::int64_t k, const std::int64_t* rows,
                       const std::int64_t* cols, T* out) {
  // Norms of every row when the pairs touch most rows (O((n_a + n_b) * dim)),
  // else per pair (O(k * dim) more work, no O(n_a + n_b) scratch).
  const bool all_norms = 2 * k >= n_a + n_b;
  std::vector<T> na(all_norms ? n_a : 0), nb(all_norms ? n_b : 0);
  if (all_norms) {
    row_norms(n_a, dim, A, na.data());
    row_norms(n_b, dim, B, nb.data());
  }
#pragma omp parallel for schedule(static) if (k * dim > kParallelWork)
  for (std::int64_t i = 0; i < k; ++i) {
    const T* a = A + rows[i] * dim;
    const T* b = B + cols[i] * dim;
    const T d = std::fabs(dot(a, b, dim));
    const T den = all_norms ? na[rows[i]] * nb[cols[i]]
                            : std::sqrt(dot(a, a, dim)) * std::sqrt(dot(b, b, dim));
    out[i] = den > T(0) ? d / den : T(0);
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

// Per thread: mask then scan its contiguous share of the block's rows.
template <class T, class I>
void topk_scan_block(std::int64_t m, std::int64_t n, T* S, std::int64_t r0, const I* indptr,
                     const I* indices, std::int64_t k, T thr0,
                     std::vector<std::vector<TopCand<T>>>& bufs) {
  const std::size_t cap = static_cast<std::size_t>(2 * k + 1024);
  const int nt = (m * n > kParallelWork) ? num_threads() : 1;
  bufs.assign(nt, {});
#pragma omp parallel num_threads(nt)
  {
    const int t = thread_id(), nteam = team_size();
    const std::int64_t i0 = m * t / nteam, i1 = m * (t + 1) / nteam;
    std::vector<TopCand<T>>& buf = bufs[t];
    T thr = thr0;
    for (std::int64_t i = i0; i < i1; ++i) {
      T* row = S + i * n;
      for (std::int64_t p = indptr[r0 + i]; p < static_cast<std::int64_t>(indptr[r0 + i + 1]); ++p)
        row[indices[p]] = std::numeric_limits<T>::quiet_NaN();
      topk_scan_row(row, n, (r0 + i) * n, k, cap, thr, buf);
    }
  }
}

}  // namespace CTRE_ISA_NS
}  // namespace ctre
