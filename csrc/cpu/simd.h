// Thin SIMD layer, one definition per ISA code path. NO include guard on
// purpose: isa_expand.h includes it once per path, inside that path's
// `#pragma GCC target` region, with CTRE_ISA (0 generic, 1 AVX2+FMA,
// 2 AVX-512) and CTRE_ISA_NS (the namespace of the path) defined, so each
// path's inline functions carry its own target and name (no ODR clash).
//
// Simd<T> gives: V (register type), W (lanes), zero, set1, load, store
// (unaligned), fma (a * b + c), hsum (sum of lanes), gt_abs_mask (bit i set
// when |p[i]| > t; NaN never compares greater), and the register-blocking
// factors chosen for the path's register file. The AVX-512 path adds lane
// masks (M, lanes, loadz, masked store) and hsum4, which its kernels use to
// align their loads to cache lines (see spmm_kernel.h).

namespace ctre {
namespace CTRE_ISA_NS {

template <class T>
struct Simd;

#if CTRE_ISA == 2  // ------------------------------------------------ AVX-512

template <>
struct Simd<float> {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int kSpmmVecs = 8;   // 128 floats of an output row in registers
  static constexpr int kSddmmVecs = 8;  // 128 floats of G[row] in registers
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(V v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xEE)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static unsigned gt_abs_mask(const float* p, float t) {
    return _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(p)), _mm512_set1_ps(t), _CMP_GT_OQ);
  }
  // Masked lanes: M has bit i set for lane i; masked-off lanes are neither
  // read nor written (no fault even outside the array).
  using M = __mmask16;
  static M lanes(int lo, int hi) { return static_cast<M>(((1u << hi) - 1u) & ~((1u << lo) - 1u)); }
  static V loadz(M m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  // dst[0:4] (+)= the lane sums of a0..a3 (one shuffle tree for all four).
  static void hsum4(V a0, V a1, V a2, V a3, float* dst, bool add) {
    const V t01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xEE));
    const V t23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xEE));
    V u = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88), _mm512_shuffle_f32x4(t01, t23, 0xDD));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(1, 0, 3, 2)));
    __m128 r = _mm512_castps512_ps128(
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), u));
    if (add) r = _mm_add_ps(r, _mm_loadu_ps(dst));
    _mm_storeu_ps(dst, r);
  }
};

template <>
struct Simd<double> {
  using V = __m512d;
  static constexpr int W = 8;
  static constexpr int kSpmmVecs = 8;
  static constexpr int kSddmmVecs = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  // (GCC 12's _mm512_reduce_add_* and _mm512_extractf64x4_pd warn about an
  // uninitialized local, hence the shuffles)
  static double hsum(V v) {
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v),
                                    _mm512_castpd512_pd256(_mm512_shuffle_f64x2(v, v, 0xEE)));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static unsigned gt_abs_mask(const double* p, double t) {
    return _mm512_cmp_pd_mask(_mm512_abs_pd(_mm512_loadu_pd(p)), _mm512_set1_pd(t), _CMP_GT_OQ);
  }
  using M = __mmask8;
  static M lanes(int lo, int hi) { return static_cast<M>(((1u << hi) - 1u) & ~((1u << lo) - 1u)); }
  static V loadz(M m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(double* p, M m, V v) { _mm512_mask_storeu_pd(p, m, v); }
  static void hsum4(V a0, V a1, V a2, V a3, double* dst, bool add) {
    const V t01 = _mm512_add_pd(_mm512_shuffle_f64x2(a0, a1, 0x44), _mm512_shuffle_f64x2(a0, a1, 0xEE));
    const V t23 = _mm512_add_pd(_mm512_shuffle_f64x2(a2, a3, 0x44), _mm512_shuffle_f64x2(a2, a3, 0xEE));
    V u = _mm512_add_pd(_mm512_shuffle_f64x2(t01, t23, 0x88), _mm512_shuffle_f64x2(t01, t23, 0xDD));
    u = _mm512_add_pd(u, _mm512_permute_pd(u, 0x55));
    __m256d r = _mm512_castpd512_pd256(
        _mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 4, 6, 0, 0, 0, 0), u));
    if (add) r = _mm256_add_pd(r, _mm256_loadu_pd(dst));
    _mm256_storeu_pd(dst, r);
  }
};

#elif CTRE_ISA == 1  // ---------------------------------------------- AVX2+FMA

template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int kSpmmVecs = 8;   // 64 floats; 16 ymm registers in all
  static constexpr int kSddmmVecs = 4;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static unsigned gt_abs_mask(const float* p, float t) {
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(p));
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(t), _CMP_GT_OQ)));
  }
};

template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int W = 4;
  static constexpr int kSpmmVecs = 8;
  static constexpr int kSddmmVecs = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static double hsum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static unsigned gt_abs_mask(const double* p, double t) {
    const __m256d a = _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_loadu_pd(p));
    return static_cast<unsigned>(_mm256_movemask_pd(_mm256_cmp_pd(a, _mm256_set1_pd(t), _CMP_GT_OQ)));
  }
};

#else  // --------------------------------------------------------------- generic

#if defined(__GNUC__)
// GCC/Clang vector extensions: 16-byte registers of the baseline ISA (SSE2 on
// x86-64, NEON on aarch64); a * b + c is contracted to an FMA where it exists.
template <class T>
struct Simd {
  static constexpr int W = 16 / sizeof(T);
  typedef T V __attribute__((vector_size(16)));
  static constexpr int kSpmmVecs = 8;
  static constexpr int kSddmmVecs = 4;
  static V zero() { return V{}; }
  static V set1(T x) { return V{} + x; }
  static V load(const T* p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static V fma(V a, V b, V c) { return a * b + c; }
  static T hsum(V v) {
    T s = 0;
    for (int i = 0; i < W; ++i) s += v[i];
    return s;
  }
  static unsigned gt_abs_mask(const T* p, T t) {
    unsigned m = 0;
    for (int i = 0; i < W; ++i) m |= static_cast<unsigned>(std::fabs(p[i]) > t) << i;
    return m;
  }
};
#else
template <class T>
struct Simd {  // scalar: any C++17 compiler
  static constexpr int W = 1;
  using V = T;
  static constexpr int kSpmmVecs = 8;
  static constexpr int kSddmmVecs = 4;
  static V zero() { return T(0); }
  static V set1(T x) { return x; }
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static T hsum(V v) { return v; }
  static unsigned gt_abs_mask(const T* p, T t) { return std::fabs(*p) > t ? 1u : 0u; }
};
#endif

#endif

// Prefetch distance (in nonzeros) of the random X-row gathers.
#define kPrefetch (::ctre::g_prefetch)

#if CTRE_ISA == 2
// Most vectors of a row chunk held in registers (accumulators or G) at once.
constexpr int kMaxVecs = 12;

// The columns [0, batch) of a dense row as nvec vectors aligned to 64-byte
// lines: vector v covers columns start + v * W ...; first/last mask the lanes
// outside [0, batch). Alignment is possible when every row starts at the
// same offset within a line (batch * sizeof(T) a multiple of 64); otherwise
// start == 0 and only the last vector is partial.
template <class T>
struct LinePlan {
  std::int64_t start;
  int nvec;
  typename Simd<T>::M first, last, all;
};

// The plan of rows of `batch` values whose first column sits `shift` values after a line.
template <class T>
inline LinePlan<T> shifted_plan(std::int64_t batch, int shift) {
  using S = Simd<T>;
  constexpr int W = S::W;
  const std::int64_t span = batch + shift;
  LinePlan<T> pl;
  pl.start = -shift;
  pl.nvec = static_cast<int>((span + W - 1) / W);
  pl.all = S::lanes(0, W);
  pl.first = S::lanes(shift, W);
  pl.last = pl.nvec ? S::lanes(0, static_cast<int>(span - static_cast<std::int64_t>(pl.nvec - 1) * W))
                    : pl.all;
  return pl;
}

template <class T>
inline LinePlan<T> line_plan(const T* base, std::int64_t batch) {
  const auto addr = reinterpret_cast<std::uintptr_t>(base);
  int shift = 0;
  if ((batch * static_cast<std::int64_t>(sizeof(T))) % 64 == 0 && addr % sizeof(T) == 0)
    shift = static_cast<int>((addr % 64) / sizeof(T));
  return shifted_plan<T>(batch, shift);
}

// The plan that reads each row from its first column on, whatever the alignment: for a kernel
// whose result depends on which lane a column falls in (the horizontal sums of sddmm), so that
// the result does not depend on where the caller's arrays happen to start in memory.
template <class T>
inline LinePlan<T> column_plan(std::int64_t batch) {
  return shifted_plan<T>(batch, 0);
}
#else
template <class T>
struct LinePlan {};

template <class T>
inline LinePlan<T> line_plan(const T*, std::int64_t) { return LinePlan<T>{}; }

template <class T>
inline LinePlan<T> column_plan(std::int64_t) { return LinePlan<T>{}; }
#endif

}  // namespace CTRE_ISA_NS
}  // namespace ctre
