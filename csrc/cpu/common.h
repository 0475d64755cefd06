// Shared pieces of the C++/OpenMP CPU kernels: ISA selection, denormal flushing,
// OpenMP helpers. Every kernel follows the scipy-sparsetools contract: raw
// pointers and explicit sizes in, caller-allocated outputs, no bounds checks
// (the Python op layer validates once); each kernel mutates only its outputs.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define CTRE_X86 1
#else
#define CTRE_X86 0
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

// Several ISA code paths (AVX2+FMA, AVX-512) compiled into one binary through
// `#pragma GCC target`; GCC only (clang spells it differently), x86-64 only.
#if CTRE_X86 && defined(__GNUC__) && !defined(__clang__) && !defined(CTRE_NO_MULTI_ISA)
#define CTRE_MULTI_ISA 1
#else
#define CTRE_MULTI_ISA 0
#endif

namespace ctre {

// Code paths, best last. `generic` is plain C++ (GCC vector extensions, the
// build's baseline ISA); the others exist when CTRE_MULTI_ISA is set.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };
constexpr int kNumIsa = 3;

const char* isa_name(Isa isa);
bool isa_supported(Isa isa);      // compiled in and supported by this CPU
Isa best_isa();                   // the best supported path
Isa active_isa();                 // the path the kernels use (best unless overridden)
void set_active_isa(Isa isa);     // force a path (tests, benchmarks); must be supported
// Counts kernel calls per path (relaxed atomics, one increment per call), so a
// test can check which code path really ran.
void count_call(Isa isa);
std::int64_t call_count(Isa isa);

// Sets flush-to-zero and denormals-are-zero in MXCSR for the lifetime of the
// object and restores the caller's MXCSR afterwards. MXCSR is per thread:
// construct one inside every OpenMP parallel region.
class DenormalGuard {
 public:
#if CTRE_X86
  DenormalGuard() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~DenormalGuard() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#else
  DenormalGuard() {}
#endif
  DenormalGuard(const DenormalGuard&) = delete;
  DenormalGuard& operator=(const DenormalGuard&) = delete;
};

inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Expands M(T, I) for every (value type, index type) pair the kernels are built for.
#define CTRE_FOR_TYPES(M)  \
  M(float, std::int32_t)   \
  M(float, std::int64_t)   \
  M(double, std::int32_t)  \
  M(double, std::int64_t)

// Expands F(1) ... F(12): the register-chunk widths of the AVX-512 kernels.
#define CTRE_FOR_NV(F) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12)

// Prefetch distance (nonzeros ahead) of the X-row gathers; CTRE_SPARSE_PREFETCH
// overrides it (tuning).
extern int g_prefetch;

// Work (in multiply-adds) below which a kernel runs on one thread: forking the
// team costs a few microseconds.
constexpr std::int64_t kParallelWork = 1 << 15;

// Rows per dynamic-schedule chunk: about 16 chunks per thread, at least 1 and
// at most 64 rows.
inline std::int64_t row_chunk(std::int64_t n_rows) {
  const std::int64_t c = n_rows / (16 * static_cast<std::int64_t>(num_threads()));
  return std::max<std::int64_t>(1, std::min<std::int64_t>(64, c));
}

}  // namespace ctre
