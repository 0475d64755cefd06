// Compiles one kernel header once per ISA code path. NO include guard.
//
// Usage, in an op's .cpp after including cpu/common.h:
//     #define CTRE_KERNEL_HEADER "cpu/spmm_kernel.h"
//     #include "cpu/isa_expand.h"
// This defines ctre::isa_generic::..., and with CTRE_MULTI_ISA also
// ctre::isa_avx2::... (compiled for AVX2+FMA) and ctre::isa_avx512::...
// (AVX-512 F/VL/BW/DQ). Each copy lives in its own namespace, so the same
// template compiled for different targets never clashes at link time; the
// op's dispatcher picks one with ctre::active_isa(). OpenMP outlined
// functions inherit the target of the function they come from.

#ifndef CTRE_KERNEL_HEADER
#error "define CTRE_KERNEL_HEADER before including cpu/isa_expand.h"
#endif

#define CTRE_ISA 0
#define CTRE_ISA_NS isa_generic
#include "cpu/simd.h"
#include CTRE_KERNEL_HEADER
#undef CTRE_ISA
#undef CTRE_ISA_NS

#if CTRE_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define CTRE_ISA 1
#define CTRE_ISA_NS isa_avx2
#include "cpu/simd.h"
#include CTRE_KERNEL_HEADER
#undef CTRE_ISA
#undef CTRE_ISA_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq")
// GCC 12's AVX-512 intrinsics (shuffles, extracts) start from an "undefined"
// register that -Wmaybe-uninitialized reports; a known false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define CTRE_ISA 2
#define CTRE_ISA_NS isa_avx512
#include "cpu/simd.h"
#include CTRE_KERNEL_HEADER
#undef CTRE_ISA
#undef CTRE_ISA_NS
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#undef CTRE_KERNEL_HEADER

// Calls NS::FN<...>(args) in the active path's namespace and counts the call.
#ifndef CTRE_DISPATCH
#if CTRE_MULTI_ISA
#define CTRE_DISPATCH(FN, ...)                                       \
  do {                                                               \
    const ::ctre::Isa isa_ = ::ctre::active_isa();                   \
    ::ctre::count_call(isa_);                                        \
    if (isa_ == ::ctre::Isa::avx512) ::ctre::isa_avx512::FN(__VA_ARGS__); \
    else if (isa_ == ::ctre::Isa::avx2) ::ctre::isa_avx2::FN(__VA_ARGS__); \
    else ::ctre::isa_generic::FN(__VA_ARGS__);                       \
  } while (0)
#else
#define CTRE_DISPATCH(FN, ...)                                       \
  do {                                                               \
    ::ctre::count_call(::ctre::Isa::generic);                        \
    ::ctre::isa_generic::FN(__VA_ARGS__);                            \
  } while (0)
#endif
#endif
