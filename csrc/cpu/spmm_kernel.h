// Row kernel of spmm and spmm_t, compiled once per ISA path (see
// isa_expand.h; NO include guard). Included by spmm.cpp and spmm_t.cpp.
//
// out[r, :] = sum_p w(p) * X[cols[p], :] over the nonzeros p of row r, with
// w(p) = data[p] (spmm) or data[perm[p]] (spmm_t on the cached transpose).
// The output row is register-blocked: kSpmmVecs vectors (128 floats on
// AVX-512) stay in registers while the row's nonzeros stream by, so each
// nonzero costs one broadcast and kSpmmVecs loads + FMAs, and out is written
// once. Parallel over rows only (dynamic schedule), so no atomics.

namespace ctre {
namespace CTRE_ISA_NS {

// out_row[c0 : c0 + NV * W] = sum_p w(p) * X[cols[p], c0 : c0 + NV * W].
template <int NV, bool kPerm, class T, class I>
inline void spmm_chunk(std::int64_t p0, std::int64_t p1, const I* cols, const I* perm,
                       const T* data, const T* X, std::int64_t batch, std::int64_t c0,
                       T* out_row) {
  using S = Simd<T>;
  typename S::V acc[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) acc[v] = S::zero();
  const T* Xc = X + c0;
  for (std::int64_t p = p0; p < p1; ++p) {
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
inline void spmm_row(std::int64_t p0, std::int64_t p1, const I* cols, const I* perm,
                     const T* data, const T* X, std::int64_t batch, T* out_row) {
  using S = Simd<T>;
  constexpr int W = S::W, NB = S::kSpmmVecs;
  std::int64_t c = 0;
  for (; c + NB * W <= batch; c += NB * W)
    spmm_chunk<NB, kPerm>(p0, p1, cols, perm, data, X, batch, c, out_row);
  if (NB > 4 && c + 4 * W <= batch) {
    spmm_chunk<4, kPerm>(p0, p1, cols, perm, data, X, batch, c, out_row);
    c += 4 * W;
  }
  if (NB > 2 && c + 2 * W <= batch) {
    spmm_chunk<2, kPerm>(p0, p1, cols, perm, data, X, batch, c, out_row);
    c += 2 * W;
  }
  for (; c + W <= batch; c += W) spmm_chunk<1, kPerm>(p0, p1, cols, perm, data, X, batch, c, out_row);
  if (c < batch) {
    for (std::int64_t j = c; j < batch; ++j) out_row[j] = T(0);
    for (std::int64_t p = p0; p < p1; ++p) {
      const T w = kPerm ? data[perm[p]] : data[p];
      const T* x = X + static_cast<std::int64_t>(cols[p]) * batch;
      for (std::int64_t j = c; j < batch; ++j) out_row[j] += w * x[j];
    }
  }
}

// out[n_rows, batch] = CSR(indptr, cols, w) @ X[*, batch]; see spmm.h.
template <bool kPerm, class T, class I>
void spmm_impl(std::int64_t n_rows, std::int64_t batch, const I* indptr, const I* cols,
               const I* perm, const T* data, const T* X, T* out) {
  const std::int64_t nnz = n_rows ? static_cast<std::int64_t>(indptr[n_rows]) : 0;
  const std::int64_t chunk = row_chunk(n_rows);
  const bool parallel = (nnz + n_rows) * batch > kParallelWork;
#pragma omp parallel if (parallel)
  {
    DenormalGuard ftz;
#pragma omp for schedule(dynamic, chunk) nowait
    for (std::int64_t r = 0; r < n_rows; ++r)
      spmm_row<kPerm>(static_cast<std::int64_t>(indptr[r]), static_cast<std::int64_t>(indptr[r + 1]),
               cols, perm, data, X, batch, out + r * batch);
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
