// Row kernel of sddmm, compiled once per ISA path (see isa_expand.h; NO
// include guard). Included by sddmm.cpp.
//
// out[p] = dot(G[r, :], X[cols[p], :]) for the nonzeros p of row r. A chunk
// of G[r, :] (a whole 128-float row on AVX-512) is held in registers while
// the row's nonzeros stream by four at a time (four independent FMA chains);
// each nonzero then costs one pass over its X row and a share of one
// horizontal-sum tree per four nonzeros. Batches longer than a chunk add the
// partial dots of each chunk into out[p]. On AVX-512 X rows are prefetched
// ahead as in spmm_kernel.h, but, unlike spmm's, the chunks start at column 0
// rather than at X's cache lines: which lane a column falls in decides how the
// horizontal sums round, and the result must not depend on where the caller's
// arrays happen to start in memory (same seed, same bits).

namespace ctre {
namespace CTRE_ISA_NS {

#if CTRE_ISA == 2  // ------------------------------------------- AVX-512, masked

// Loads NV vectors at p (first masked by mf, last by ml; see spmm_kernel.h).
template <int NV, class T>
inline void load_chunk(const T* p, typename Simd<T>::M mf, typename Simd<T>::M ml,
                       typename Simd<T>::V* v) {
  using S = Simd<T>;
#pragma GCC unroll 16
  for (int i = 0; i < NV; ++i)
    v[i] = i == 0 ? S::loadz(mf, p) : i == NV - 1 ? S::loadz(ml, p + i * S::W) : S::load(p + i * S::W);
}

// acc += dot(gv, x[chunk]) lane-wise.
template <int NV, class T>
inline typename Simd<T>::V dot_chunk(const typename Simd<T>::V* gv, const T* x,
                                     typename Simd<T>::M mf, typename Simd<T>::M ml) {
  using S = Simd<T>;
  typename S::V a = S::zero(), xv[NV];
  load_chunk<NV>(x, mf, ml, xv);
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) a = S::fma(gv[v], xv[v], a);
  return a;
}

// out[p] (first ? = : +=) dot(gc[0 : NV * W], Xc[cols[p] * batch + (0 : NV * W)]);
// gc and Xc point at the chunk's first column, which is aligned to X's lines.
template <int NV, class T, class I>
inline void sddmm_chunk(std::int64_t p0, std::int64_t p1, std::int64_t p_lim, const I* cols,
                        const T* gc, const T* Xc, std::int64_t batch, typename Simd<T>::M mf,
                        typename Simd<T>::M ml, bool first, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  V gv[NV];
  load_chunk<NV>(gc, mf, ml, gv);
  std::int64_t p = p0;
  for (; p + 4 <= p1; p += 4) {
    if (p + 4 + kPrefetch <= p_lim) {
      for (int j = 0; j < 4; ++j) {
        const T* xn = Xc + static_cast<std::int64_t>(cols[p + kPrefetch + j]) * batch;
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) __builtin_prefetch(xn + v * W, 0, 3);
      }
    }
    const V a0 = dot_chunk<NV>(gv, Xc + static_cast<std::int64_t>(cols[p]) * batch, mf, ml);
    const V a1 = dot_chunk<NV>(gv, Xc + static_cast<std::int64_t>(cols[p + 1]) * batch, mf, ml);
    const V a2 = dot_chunk<NV>(gv, Xc + static_cast<std::int64_t>(cols[p + 2]) * batch, mf, ml);
    const V a3 = dot_chunk<NV>(gv, Xc + static_cast<std::int64_t>(cols[p + 3]) * batch, mf, ml);
    S::hsum4(a0, a1, a2, a3, out + p, !first);
  }
  for (; p < p1; ++p) {
    const T s = S::hsum(dot_chunk<NV>(gv, Xc + static_cast<std::int64_t>(cols[p]) * batch, mf, ml));
    out[p] = first ? s : out[p] + s;
  }
}

template <class T, class I>
inline void sddmm_row(std::int64_t p0, std::int64_t p1, std::int64_t p_lim, const I* cols,
                      const T* g, const T* X, std::int64_t batch, const LinePlan<T>& pl, T* out) {
  using S = Simd<T>;
  if (pl.nvec == 0) {
    for (std::int64_t p = p0; p < p1; ++p) out[p] = T(0);
    return;
  }
  const int n_chunks = (pl.nvec + kMaxVecs - 1) / kMaxVecs;
  int v0 = 0;
  for (int c = 0; c < n_chunks; ++c) {
    const int nv = (pl.nvec - v0) / (n_chunks - c);
    typename S::M mf = v0 == 0 ? pl.first : pl.all, ml = v0 + nv == pl.nvec ? pl.last : pl.all;
    if (nv == 1) mf = ml = static_cast<typename S::M>(mf & ml);
    const std::int64_t col0 = pl.start + static_cast<std::int64_t>(v0) * S::W;
    switch (nv) {
#define CTRE_CASE(N)                                                                    \
  case N:                                                                               \
    sddmm_chunk<N>(p0, p1, p_lim, cols, g + col0, X + col0, batch, mf, ml, c == 0, out); \
    break;
      CTRE_FOR_NV(CTRE_CASE)
#undef CTRE_CASE
      default: break;
    }
    v0 += nv;
  }
}

#else  // ---------------------------------------------------- generic and AVX2

template <int NV, class T, class I>
inline void sddmm_chunk(std::int64_t p0, std::int64_t p1, const I* cols, const T* g,
                        const T* X, std::int64_t batch, std::int64_t c0, bool first, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  V gv[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) gv[v] = S::load(g + c0 + v * W);
  const T* Xc = X + c0;
  std::int64_t p = p0;
  for (; p + 4 <= p1; p += 4) {
    const T* x0 = Xc + static_cast<std::int64_t>(cols[p]) * batch;
    const T* x1 = Xc + static_cast<std::int64_t>(cols[p + 1]) * batch;
    const T* x2 = Xc + static_cast<std::int64_t>(cols[p + 2]) * batch;
    const T* x3 = Xc + static_cast<std::int64_t>(cols[p + 3]) * batch;
    V a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      a0 = S::fma(gv[v], S::load(x0 + v * W), a0);
      a1 = S::fma(gv[v], S::load(x1 + v * W), a1);
      a2 = S::fma(gv[v], S::load(x2 + v * W), a2);
      a3 = S::fma(gv[v], S::load(x3 + v * W), a3);
    }
    const T s0 = S::hsum(a0), s1 = S::hsum(a1), s2 = S::hsum(a2), s3 = S::hsum(a3);
    if (first) {
      out[p] = s0; out[p + 1] = s1; out[p + 2] = s2; out[p + 3] = s3;
    } else {
      out[p] += s0; out[p + 1] += s1; out[p + 2] += s2; out[p + 3] += s3;
    }
  }
  for (; p < p1; ++p) {
    const T* x = Xc + static_cast<std::int64_t>(cols[p]) * batch;
    V a = S::zero();
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) a = S::fma(gv[v], S::load(x + v * W), a);
    out[p] = first ? S::hsum(a) : out[p] + S::hsum(a);
  }
}

template <class T, class I>
inline void sddmm_row(std::int64_t p0, std::int64_t p1, std::int64_t, const I* cols, const T* g,
                      const T* X, std::int64_t batch, const LinePlan<T>&, T* out) {
  using S = Simd<T>;
  constexpr int W = S::W, NB = S::kSddmmVecs;
  std::int64_t c = 0;
  bool first = true;
  for (; c + NB * W <= batch; c += NB * W, first = false)
    sddmm_chunk<NB>(p0, p1, cols, g, X, batch, c, first, out);
  if (NB > 4 && c + 4 * W <= batch) {
    sddmm_chunk<4>(p0, p1, cols, g, X, batch, c, first, out);
    c += 4 * W;
    first = false;
  }
  for (; c + W <= batch; c += W, first = false)
    sddmm_chunk<1>(p0, p1, cols, g, X, batch, c, first, out);
  if (c < batch || first) {  // scalar tail; also zeroes out when batch == 0
    for (std::int64_t p = p0; p < p1; ++p) {
      const T* x = X + static_cast<std::int64_t>(cols[p]) * batch;
      T s = T(0);
      for (std::int64_t j = c; j < batch; ++j) s += g[j] * x[j];
      out[p] = first ? s : out[p] + s;
    }
  }
}

#endif

// See sddmm.h.
template <class T, class I>
void sddmm_rows(std::int64_t n_rows, std::int64_t batch, const I* indptr, const I* indices,
                const T* G, const T* X, T* out) {
  const std::int64_t nnz = n_rows ? static_cast<std::int64_t>(indptr[n_rows]) : 0;
  const std::int64_t chunk = row_chunk(n_rows);
  const bool parallel = nnz * batch > kParallelWork;
  const LinePlan<T> plan = column_plan<T>(batch);  // lanes by column: alignment-independent sums
#pragma omp parallel if (parallel)
  {
    DenormalGuard ftz;
#pragma omp for schedule(dynamic, chunk) nowait
    for (std::int64_t r = 0; r < n_rows; ++r)
      sddmm_row(static_cast<std::int64_t>(indptr[r]), static_cast<std::int64_t>(indptr[r + 1]),
                nnz, indices, G + r * batch, X, batch, plan, out);
  }
}

}  // namespace CTRE_ISA_NS
}  // namespace ctre
