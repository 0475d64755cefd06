// Row kernel of spmm and spmm_t, compiled once per ISA path (see
// isa_expand.h; NO include guard). Included by spmm.cpp and spmm_t.cpp.
//
// out[r, :] = sum_p w(p) * X[cols[p], :] over the nonzeros p of row r, with
// w(p) = data[p] (spmm) or data[perm[p]] (spmm_t on the cached transpose).
// The output row is register-blocked: a chunk of up to kMaxVecs vectors (a
// whole 128-float row on AVX-512) stays in registers while the row's nonzeros
// stream by, so each nonzero costs one broadcast plus one load and one FMA
// per vector, and out is written once. The X row of the nonzero kPrefetch
// positions ahead is prefetched (the gathers are random rows of X). On
// AVX-512 the vectors are aligned to X's 64-byte lines (masked first/last
// vector; NumPy arrays are typically 16 bytes off a line), so no load splits
// a line. Parallel over rows only (dynamic schedule), so no atomics.

namespace ctre {
namespace CTRE_ISA_NS {

#if CTRE_ISA == 2  // ------------------------------------------- AVX-512, masked

// out_c[0 : NV * W] = sum_p w(p) * Xc[cols[p] * batch + (0 : NV * W)], where
// Xc and out_c point at the chunk's first column (possibly before the row:
// those lanes are masked off by mf; ml masks the last vector; NV == 1 gets
// mf == ml == both masks).
template <int NV, bool kPerm, class T, class I>
inline void spmm_chunk(std::int64_t p0, std::int64_t p1, std::int64_t p_lim, const I* cols,
                       const I* perm, const T* data, const T* Xc, std::int64_t batch,
                       typename Simd<T>::M mf, typename Simd<T>::M ml, T* out_c) {
  using S = Simd<T>;
  constexpr int W = S::W;
  typename S::V acc[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) acc[v] = S::zero();
  for (std::int64_t p = p0; p < p1; ++p) {
    if (p + kPrefetch < p_lim) {
      const T* xn = Xc + static_cast<std::int64_t>(cols[p + kPrefetch]) * batch;
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) __builtin_prefetch(xn + v * W, 0, 3);
      if (kPerm) __builtin_prefetch(data + perm[p + kPrefetch], 0, 3);
    }
    const typename S::V w = S::set1(kPerm ? data[perm[p]] : data[p]);
    const T* x = Xc + static_cast<std::int64_t>(cols[p]) * batch;
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const typename S::V xv = v == 0 ? S::loadz(mf, x) : v == NV - 1 ? S::loadz(ml, x + v * W)
                                                                      : S::load(x + v * W);
      acc[v] = S::fma(w, xv, acc[v]);
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
    if (v == 0) S::store(out_c, mf, acc[v]);
    else if (v == NV - 1) S::store(out_c + v * W, ml, acc[v]);
    else S::store(out_c + v * W, acc[v]);
  }
}

// One output row in balanced chunks of at most kMaxVecs line-aligned vectors.
template <bool kPerm, class T, class I>
inline void spmm_row(std::int64_t p0, std::int64_t p1, std::int64_t p_lim, const I* cols,
                     const I* perm, const T* data, const T* X, std::int64_t batch,
                     const LinePlan<T>& pl, T* out_row) {
  using S = Simd<T>;
  const int n_chunks = (pl.nvec + kMaxVecs - 1) / kMaxVecs;
  int v0 = 0;
  for (int c = 0; c < n_chunks; ++c) {
    const int nv = (pl.nvec - v0) / (n_chunks - c);
    typename S::M mf = v0 == 0 ? pl.first : pl.all, ml = v0 + nv == pl.nvec ? pl.last : pl.all;
    if (nv == 1) mf = ml = static_cast<typename S::M>(mf & ml);
    const std::int64_t col0 = pl.start + static_cast<std::int64_t>(v0) * S::W;
    switch (nv) {
#define CTRE_CASE(N)                                                                   \
  case N:                                                                              \
    spmm_chunk<N, kPerm>(p0, p1, p_lim, cols, perm, data, X + col0, batch, mf, ml,     \
                         out_row + col0);                                              \
    break;
      CTRE_FOR_NV(CTRE_CASE)
#undef CTRE_CASE
      default: break;
    }
    v0 += nv;
  }
}

#else  // ---------------------------------------------------- generic and AVX2

// out_row[c0 : c0 + NV * W] = sum_p w(p) * X[cols[p], c0 : c0 + NV * W].
template <int NV, bool kPerm, class T, class I>
inline void spmm_chunk(std::int64_t p0, std::int64_t p1, std::int64_t p_lim, const I* cols,
                       const I* perm, const T* data, const T* X, std::int64_t batch,
                       std::int64_t c0, T* out_row) {
  using S = Simd<T>;
  typename S::V acc[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) acc[v] = S::zero();
  const T* Xc = X + c0;
  constexpr int kLine = 64 / sizeof(T);
  for (std::int64_t p = p0; p < p1; ++p) {
    if (p + kPrefetch < p_lim) {
      const T* xn = Xc + static_cast<std::int64_t>(cols[p + kPrefetch]) * batch;
      for (int l = 0; l < NV * S::W; l += kLine) __builtin_prefetch(xn + l, 0, 3);
    }
    const typename S::V w = S::set1(kPerm ? data[perm[p]] : data[p]);
    const T* x = Xc + static_cast<std::int64_t>(cols[p]) * batch;
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[v] = S::fma(w, S::load(x + v * S::W), acc[v]);
  }
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) S::store(out_row + c0 + v * S::W, acc[v]);
}

// One output row: full register blocks, then narrower blocks, then a scalar tail.
template <bool kPerm, class T, class I>
inline void spmm_row(std::int64_t p0, std::int64_t p1, std::int64_t p_lim, const I* cols,
                     const I* perm, const T* data, const T* X, std::int64_t batch,
                     const LinePlan<T>&, T* out_row) {
  using S = Simd<T>;
  constexpr int W = S::W, NB = S::kSpmmVecs;
  std::int64_t c = 0;
  for (; c + NB * W <= batch; c += NB * W)
    spmm_chunk<NB, kPerm>(p0, p1, p_lim, cols, perm, data, X, batch, c, out_row);
  if (NB > 4 && c + 4 * W <= batch) {
    spmm_chunk<4, kPerm>(p0, p1, p_lim, cols, perm, data, X, batch, c, out_row);
    c += 4 * W;
  }
  if (NB > 2 && c + 2 * W <= batch) {
    spmm_chunk<2, kPerm>(p0, p1, p_lim, cols, perm, data, X, batch, c, out_row);
    c += 2 * W;
  }
  for (; c + W <= batch; c += W)
    spmm_chunk<1, kPerm>(p0, p1, p_lim, cols, perm, data, X, batch, c, out_row);
  if (c < batch) {
    for (std::int64_t j = c; j < batch; ++j) out_row[j] = T(0);
    for (std::int64_t p = p0; p < p1; ++p) {
      const T w = kPerm ? data[perm[p]] : data[p];
      const T* x = X + static_cast<std::int64_t>(cols[p]) * batch;
      for (std::int64_t j = c; j < batch; ++j) out_row[j] += w * x[j];
    }
  }
}

#endif

// out[n_rows, batch] = CSR(indptr, cols, w) @ X[*, batch]; see spmm.h.
template <bool kPerm, class T, class I>
void spmm_impl(std::int64_t n_rows, std::int64_t batch, const I* indptr, const I* cols,
               const I* perm, const T* data, const T* X, T* out) {
  const std::int64_t nnz = n_rows ? static_cast<std::int64_t>(indptr[n_rows]) : 0;
  const std::int64_t chunk = row_chunk(n_rows);
  const bool parallel = (nnz + n_rows) * batch > kParallelWork;
  const LinePlan<T> plan = line_plan(X, batch);
#pragma omp parallel if (parallel)
  {
    DenormalGuard ftz;
#pragma omp for schedule(dynamic, chunk) nowait
    for (std::int64_t r = 0; r < n_rows; ++r)
      spmm_row<kPerm>(static_cast<std::int64_t>(indptr[r]), static_cast<std::int64_t>(indptr[r + 1]),
                      nnz, cols, perm, data, X, batch, plan, out + r * batch);
  }
}

template <class T, class I>
void spmm_rows(std::int64_t n_rows, std::int64_t batch, const I* indptr, const I* indices,
               const T* data, const T* X, T* out) {
  spmm_impl<false>(n_rows, batch, indptr, indices, static_cast<const I*>(nullptr), data, X, out);
}

template <class T, class I>
void spmm_t_rows(std::int64_t n_rows, std::int64_t batch, const I* t_indptr, const I* t_indices,
                 const I* t_perm, const T* data, const T* G, T* out) {
  spmm_impl<true>(n_rows, batch, t_indptr, t_indices, t_perm, data, G, out);
}

}  // namespace CTRE_ISA_NS
}  // namespace ctre
