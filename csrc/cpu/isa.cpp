// Runtime choice of the ISA code path (see common.h).
#include <cstdlib>
#include <cstring>

#include "cpu/common.h"

namespace ctre {
namespace {

bool cpu_has(Isa isa) {
  if (isa == Isa::generic) return true;
#if CTRE_MULTI_ISA
  __builtin_cpu_init();
  if (isa == Isa::avx2)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::avx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
#endif
  return false;
}

Isa detect() {
  Isa best = Isa::generic;
  if (cpu_has(Isa::avx2)) best = Isa::avx2;
  if (cpu_has(Isa::avx512)) best = Isa::avx512;
  // CTRE_SPARSE_ISA=generic|avx2|avx512 caps the path (never raises it above
  // what the CPU supports).
  if (const char* env = std::getenv("CTRE_SPARSE_ISA")) {
    for (int i = 0; i < kNumIsa; ++i) {
      const Isa isa = static_cast<Isa>(i);
      if (std::strcmp(env, isa_name(isa)) == 0 && i < static_cast<int>(best)) best = isa;
    }
  }
  return best;
}

std::atomic<int>& active() {
  static std::atomic<int> value{static_cast<int>(detect())};
  return value;
}

std::atomic<std::int64_t> g_calls[kNumIsa];

int prefetch_from_env() {
  const char* env = std::getenv("CTRE_SPARSE_PREFETCH");
  return env ? std::atoi(env) : 8;
}

}  // namespace

int g_prefetch = prefetch_from_env();

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    default: return "generic";
  }
}

bool isa_supported(Isa isa) { return cpu_has(isa); }

Isa best_isa() {
  Isa best = Isa::generic;
  if (cpu_has(Isa::avx2)) best = Isa::avx2;
  if (cpu_has(Isa::avx512)) best = Isa::avx512;
  return best;
}

Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) { active().store(static_cast<int>(isa)); }

void count_call(Isa isa) {
  g_calls[static_cast<int>(isa)].fetch_add(1, std::memory_order_relaxed);
}

std::int64_t call_count(Isa isa) {
  return g_calls[static_cast<int>(isa)].load(std::memory_order_relaxed);
}

}  // namespace ctre
