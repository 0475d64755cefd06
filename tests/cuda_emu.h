// CPU emulation of the slice of CUDA the ctre_sparse kernels use (tests only).
//
// Included before a kernel's source text (cuda_backend.load_source(stem), the
// text NVRTC gets), then the whole is compiled by g++ into a shared library
// (tests/cuda_emu.py). Execution model: the blocks of a grid run one after
// another; inside a block every CUDA thread is a fiber (ucontext to start it,
// _setjmp/_longjmp to switch, one OS thread, cooperative). A fiber runs until
// it reaches a barrier: a warp shuffle (all lanes named in the mask must reach
// the same shuffle) or __syncthreads (all threads of the block). Divergent
// shuffles, barriers not reached by every thread, deadlocks and launch-config
// violations are reported as errors (emu_last_error), never as hangs.
//
// Not emulated: the memory model (everything is sequentially consistent
// here), real warp scheduling and lock-step execution, FMA contraction and
// -ftz (g++ does neither at -O1 on x86-64), speed.
#ifndef CTRE_CUDA_EMU_H
#define CTRE_CUDA_EMU_H

#include <csetjmp>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif

// ----------------------------------------------------------------- CUDA types
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
        : x(x_), y(y_), z(z_) {}
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
// static __shared__ variables are not emulated: cuda_emu.py rewrites the one
// form it handles (extern __shared__ dynamic arrays) and refuses any other.
#define __shared__ __shared___is_not_emulated_see_cuda_emu_py

namespace emu {

constexpr int kMaxThreads = 1024;
constexpr size_t kMaxDynamicSmem = 48 * 1024;  // above needs cudaFuncSetAttribute
#ifdef EMU_ASAN
constexpr size_t kStackSize = 512 * 1024;
#else
constexpr size_t kStackSize = 128 * 1024;
#endif

enum class St : unsigned char { Runnable, WaitWarp, WaitBlock, Done };
enum Kind { kShflIdx = 1, kShflXor = 2 };
enum Schedule { kRoundRobin, kReverse, kWarpGreedy, kWarpGreedyReverse, kRandom };  // SCHEDULES

struct Fiber {
    jmp_buf jb;
    ucontext_t uc;
    char* stack = nullptr;  // kStackSize usable bytes above one guard page
    uint3 tid{0, 0, 0};
    int lane = 0, warp = 0;
    unsigned linear = 0;
    St st = St::Done;
    bool started = false;
#ifdef EMU_ASAN
    void* fake_stack = nullptr;
#endif
};

struct Warp {
    unsigned members = 0;  // lanes that exist
    unsigned exited = 0;
    unsigned at_sync = 0;  // lanes waiting at __syncthreads
    unsigned arrived = 0;  // lanes waiting at the pending shuffle
    unsigned mask = 0;
    int site = 0, kind = 0;
    unsigned long long in[32], out[32];
    int src[32];
};

struct State {
    Fiber fibers[kMaxThreads];
    Warp warps[kMaxThreads / 32];
    jmp_buf sched;
    Fiber* cur = nullptr;
    dim3 grid, block;
    uint3 block_idx{0, 0, 0};
    unsigned n_threads = 0, n_done = 0, n_sync = 0;
    int sync_site = 0;
    bool any_exited = false, failed = false;
    unsigned char* smem = nullptr;
    size_t smem_size = 0;
    void (*body)(void*) = nullptr;
    void* ctx = nullptr;
    std::string error;
    std::mutex lock;
    int schedule = kRoundRobin;
    unsigned long long seed = 0, launch_blocks = 0;
#ifdef EMU_ASAN
    const void* sched_bottom = nullptr;
    size_t sched_size = 0;
    void* sched_fake_stack = nullptr;
#endif
};

inline State& S() {
    static State s;
    return s;
}

// ------------------------------------------------------------ fiber switching
inline void to_sched() {  // fiber -> scheduler; returns when the fiber is resumed
    State& s = S();
    Fiber* f = s.cur;
    if (!_setjmp(f->jb)) {
#ifdef EMU_ASAN
        __sanitizer_start_switch_fiber(&f->fake_stack, s.sched_bottom, s.sched_size);
#endif
        _longjmp(s.sched, 1);
    }
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}

inline void fiber_main();

inline void run_fiber(Fiber* f) {  // scheduler -> fiber until it blocks or finishes
    State& s = S();
    s.cur = f;
    if (!_setjmp(s.sched)) {
#ifdef EMU_ASAN
        __sanitizer_start_switch_fiber(&s.sched_fake_stack, f->stack, kStackSize);
#endif
        if (!f->started) {
            f->started = true;
            setcontext(&f->uc);
        }
        _longjmp(f->jb, 1);
    }
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(s.sched_fake_stack, nullptr, nullptr);
#endif
    s.cur = nullptr;
}

// Record the first error and leave the fiber for good (it is never resumed;
// its stack is reused by the next launch).
[[noreturn]] inline void fail(const char* fmt, ...) {
    State& s = S();
    if (!s.failed) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        s.error = buf;
        s.failed = true;
    }
    to_sched();
    abort();  // unreachable: a failed launch never resumes its fibers
}

inline Fiber& cur() {
    Fiber* f = S().cur;
    if (f == nullptr) {
        fprintf(stderr, "cuda_emu: a device builtin was called outside a kernel\n");
        abort();
    }
    return *f;
}

// ------------------------------------------------------- per-thread builtins
inline const uint3& thread_idx() { return cur().tid; }
inline const uint3& block_idx() { return S().block_idx; }
inline const dim3& block_dim() { return S().block; }
inline const dim3& grid_dim() { return S().grid; }

inline unsigned char* dynamic_smem() { return S().smem; }

inline std::string describe_thread(const Fiber& f) {
    char buf[96];
    snprintf(buf, sizeof buf, "thread (%u,%u,%u) [warp %d lane %d] of block (%u,%u,%u)",
             f.tid.x, f.tid.y, f.tid.z, f.warp, f.lane, S().block_idx.x, S().block_idx.y,
             S().block_idx.z);
    return buf;
}

inline const char* kind_name(int kind) {
    return kind == kShflIdx ? "__shfl_sync" : "__shfl_xor_sync";
}

template <typename T>
T shuffle(int line, int kind, unsigned mask, T value, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    State& s = S();
    Fiber& f = cur();
    auto who = [&f] { return describe_thread(f); };  // only built on an error
    Warp& w = s.warps[f.warp];
    const unsigned bit = 1u << f.lane;
    const char* name = kind_name(kind);
    if (!(mask & bit))
        fail("%s (line %d): calling %s is not in mask 0x%08x", name, line, who().c_str(), mask);
    if (mask & ~w.members)
        fail("%s (line %d): mask 0x%08x names lanes that do not exist (warp lanes 0x%08x)",
             name, line, mask, w.members);
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail("%s (line %d): width %d is not a power of two in [1, 32]", name, line, width);
    if (mask & w.exited)
        fail("divergence: %s (line %d) reached by %s with mask 0x%08x, but lanes 0x%08x of "
             "its warp have exited", name, line, who().c_str(), mask, mask & w.exited);
    if (mask & w.at_sync)
        fail("divergence: %s (line %d) reached by %s with mask 0x%08x, but lanes 0x%08x of "
             "its warp wait at __syncthreads (line %d)", name, line, who().c_str(), mask,
             mask & w.at_sync, s.sync_site);
    if (w.arrived) {
        if (w.mask != mask || w.site != line || w.kind != kind)
            fail("divergence: %s reached %s (line %d, mask 0x%08x) while lanes 0x%08x of its "
                 "warp wait at %s (line %d, mask 0x%08x)", who().c_str(), name, line, mask,
                 w.arrived, kind_name(w.kind), w.site, w.mask);
    } else {
        w.mask = mask;
        w.site = line;
        w.kind = kind;
    }
    const int seg = f.lane & ~(width - 1);
    int src;
    if (kind == kShflIdx) {
        src = seg + (arg & (width - 1));
    } else {
        if (arg < 0 || arg >= 32)
            fail("__shfl_xor_sync (line %d): laneMask %d outside [0, 32)", line, arg);
        src = f.lane ^ arg;
        if (src < seg || src >= seg + width) src = f.lane;
    }
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    w.in[f.lane] = bits;
    w.src[f.lane] = src;
    w.arrived |= bit;
    if (w.arrived == mask) {  // last lane in: exchange, release the others
        for (int l = 0; l < 32; ++l) {
            if (!(mask & (1u << l))) continue;
            if (!(mask & (1u << w.src[l])))
                fail("%s (line %d): lane %d reads lane %d, which is not in mask 0x%08x", name,
                     line, l, w.src[l], mask);
            w.out[l] = w.in[w.src[l]];
        }
        for (int l = 0; l < 32; ++l)
            if ((mask & (1u << l)) && l != f.lane) s.fibers[f.warp * 32 + l].st = St::Runnable;
        w.arrived = 0;
    } else {
        f.st = St::WaitWarp;
        to_sched();
    }
    T result;
    std::memcpy(&result, &w.out[f.lane], sizeof(T));
    return result;
}

inline void syncthreads(int line) {
    State& s = S();
    Fiber& f = cur();
    auto who = [&f] { return describe_thread(f); };  // only built on an error
    Warp& w = s.warps[f.warp];
    if (s.any_exited)
        fail("__syncthreads (line %d) reached by %s after other threads of the block exited: "
             "not every thread reaches it", line, who().c_str());
    if (w.arrived && (w.mask & (1u << f.lane)))
        fail("divergence: %s reached __syncthreads (line %d) while lanes 0x%08x of its warp "
             "wait for it at %s (line %d)", who().c_str(), line, w.arrived, kind_name(w.kind),
             w.site);
    if (s.n_sync && s.sync_site != line)
        fail("%s reached __syncthreads at line %d while %u threads wait at the one at line %d",
             who().c_str(), line, s.n_sync, s.sync_site);
    s.sync_site = line;
    if (++s.n_sync == s.n_threads) {
        for (unsigned i = 0; i < s.n_threads; ++i) s.fibers[i].st = St::Runnable;
        for (unsigned i = 0; i < (s.n_threads + 31) / 32; ++i) s.warps[i].at_sync = 0;
        s.n_sync = 0;
        return;
    }
    w.at_sync |= 1u << f.lane;
    f.st = St::WaitBlock;
    to_sched();
}

inline void thread_exit(Fiber& f) {
    State& s = S();
    Warp& w = s.warps[f.warp];
    w.exited |= 1u << f.lane;
    s.any_exited = true;
    if (w.arrived && (w.mask & (1u << f.lane)))
        fail("divergence: %s exited while lanes 0x%08x of its warp wait for it at %s "
             "(line %d, mask 0x%08x)", describe_thread(f).c_str(), w.arrived,
             kind_name(w.kind), w.site, w.mask);
    if (s.n_sync)
        fail("%s exited while %u threads of the block wait at __syncthreads (line %d): not "
             "every thread reaches it", describe_thread(f).c_str(), s.n_sync, s.sync_site);
}

inline void fiber_main() {
    State& s = S();
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &s.sched_bottom, &s.sched_size);
#endif
    for (;;) {
        s.body(s.ctx);
        Fiber& f = cur();
        thread_exit(f);
        f.st = St::Done;
        ++s.n_done;
        to_sched();  // resumed for the next block of the launch
    }
}

// ----------------------------------------------------------------- launching
inline bool set_error(const std::string& msg) {
    State& s = S();
    s.error = msg;
    s.failed = true;
    return false;
}

inline bool check_config(const unsigned* g, const unsigned* b, size_t smem) {
    char buf[256];
    for (int i = 0; i < 3; ++i)
        if (g[i] == 0 || b[i] == 0) {
            snprintf(buf, sizeof buf, "invalid configuration: zero dimension (grid %u,%u,%u; "
                     "block %u,%u,%u)", g[0], g[1], g[2], b[0], b[1], b[2]);
            return set_error(buf);
        }
    const unsigned long long threads = 1ull * b[0] * b[1] * b[2];
    if (threads > kMaxThreads || b[0] > 1024 || b[1] > 1024 || b[2] > 64) {
        snprintf(buf, sizeof buf, "invalid configuration: block (%u,%u,%u) exceeds 1024 "
                 "threads or (1024, 1024, 64)", b[0], b[1], b[2]);
        return set_error(buf);
    }
    if (g[0] > 2147483647u || g[1] > 65535u || g[2] > 65535u) {
        snprintf(buf, sizeof buf, "invalid configuration: grid (%u,%u,%u) exceeds "
                 "(2^31-1, 65535, 65535)", g[0], g[1], g[2]);
        return set_error(buf);
    }
    if (smem > kMaxDynamicSmem) {
        snprintf(buf, sizeof buf, "invalid configuration: %zu bytes of dynamic shared memory "
                 "(more than 48 KiB needs cudaFuncAttributeMaxDynamicSharedMemorySize)", smem);
        return set_error(buf);
    }
    return true;
}

inline void prepare_fibers(unsigned n) {
    State& s = S();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = s.fibers[i];
        if (f.stack == nullptr) {
            void* m = mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED) abort();
            mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults
            f.stack = static_cast<char*>(m) + page;
        }
        getcontext(&f.uc);
        f.uc.uc_stack.ss_sp = f.stack;
        f.uc.uc_stack.ss_size = kStackSize;
        f.uc.uc_link = nullptr;
        makecontext(&f.uc, fiber_main, 0);
        f.started = false;
    }
}

inline std::string describe_deadlock() {
    State& s = S();
    std::string msg = "deadlock: no thread can make progress in block";
    char buf[160];
    snprintf(buf, sizeof buf, " (%u,%u,%u):", s.block_idx.x, s.block_idx.y, s.block_idx.z);
    msg += buf;
    int shown = 0;
    for (unsigned i = 0; i < s.n_threads && shown < 4; ++i) {
        const Fiber& f = s.fibers[i];
        if (f.st == St::Done) continue;
        const Warp& w = s.warps[f.warp];
        snprintf(buf, sizeof buf, " thread %u waits at %s (line %d);", i,
                 f.st == St::WaitBlock ? "__syncthreads" : kind_name(w.kind),
                 f.st == St::WaitBlock ? s.sync_site : w.site);
        msg += buf;
        ++shown;
    }
    return msg;
}

inline unsigned long long next_random(unsigned long long& x) {  // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545f4914f6cdd1dull;
}

inline bool warp_runnable(int w) {
    State& s = S();
    const unsigned end = 32u * w + 32 < s.n_threads ? 32u * w + 32 : s.n_threads;
    for (unsigned i = 32u * w; i < end; ++i)
        if (s.fibers[i].st == St::Runnable) return true;
    return false;
}

// The next warp to step, by the schedule policy; -1 when none can run (deadlock).
// Lanes of a warp meet at every shuffle anyway; the policies change how far
// warps run ahead of each other between __syncthreads, to expose missing ones.
inline int pick_warp(int n_warps, int last, unsigned long long& rng) {
    State& s = S();
    switch (s.schedule) {
        case kWarpGreedy:
            for (int w = 0; w < n_warps; ++w) if (warp_runnable(w)) return w;
            return -1;
        case kWarpGreedyReverse:
            for (int w = n_warps - 1; w >= 0; --w) if (warp_runnable(w)) return w;
            return -1;
        case kRandom: {
            int ready[kMaxThreads / 32], count = 0;
            for (int w = 0; w < n_warps; ++w) if (warp_runnable(w)) ready[count++] = w;
            return count ? ready[next_random(rng) % count] : -1;
        }
        case kReverse:
            for (int k = 1; k <= n_warps; ++k) {
                const int w = ((last < 0 ? n_warps : last) - k + n_warps) % n_warps;
                if (warp_runnable(w)) return w;
            }
            return -1;
        default:  // round robin
            for (int k = 1; k <= n_warps; ++k) {
                const int w = (last + k) % n_warps;
                if (warp_runnable(w)) return w;
            }
            return -1;
    }
}

inline bool run_block() {
    State& s = S();
    const unsigned n = s.n_threads;
    for (unsigned i = 0; i < (n + 31) / 32; ++i) {
        Warp& w = s.warps[i];
        const unsigned lanes = n - 32 * i < 32 ? n - 32 * i : 32;
        w.members = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        w.exited = w.at_sync = w.arrived = 0;
    }
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = s.fibers[i];
        f.linear = i;
        f.tid = uint3{i % s.block.x, (i / s.block.x) % s.block.y, i / (s.block.x * s.block.y)};
        f.warp = static_cast<int>(i / 32);
        f.lane = static_cast<int>(i % 32);
        f.st = St::Runnable;
    }
    s.n_done = s.n_sync = 0;
    s.any_exited = false;
    std::memset(s.smem, 0xff, s.smem_size + 1);  // all-ones bytes: NaN floats, -1 integers
    unsigned long long rng = (s.seed + 1) * 0x9e3779b97f4a7c15ull + s.launch_blocks++;
    if (rng == 0) rng = 1;
    const int n_warps = static_cast<int>((n + 31) / 32);
    int last = -1;
    while (s.n_done < n) {
        const int w = pick_warp(n_warps, last, rng);
        if (w < 0) return set_error(describe_deadlock());
        const int lanes = n - 32u * w < 32 ? static_cast<int>(n - 32u * w) : 32;
        const bool reverse = s.schedule == kReverse || s.schedule == kWarpGreedyReverse ||
                             (s.schedule == kRandom && (next_random(rng) & 1));
        const int start = s.schedule == kRandom ? static_cast<int>(next_random(rng) % lanes) : 0;
        for (int k = 0; k < lanes; ++k) {  // one step of each runnable lane of the warp
            int l = (start + k) % lanes;
            if (reverse) l = lanes - 1 - l;
            Fiber& f = s.fibers[32 * w + l];
            if (f.st != St::Runnable) continue;
            run_fiber(&f);
            if (s.failed) return false;
        }
        last = w;
    }
    return true;
}

inline int run_grid(const unsigned* g, const unsigned* b, size_t smem, void (*body)(void*),
                    void* ctx) {
    State& s = S();
    std::lock_guard<std::mutex> guard(s.lock);
    s.failed = false;
    s.error.clear();
    if (!check_config(g, b, smem)) return 1;
    s.grid = dim3(g[0], g[1], g[2]);
    s.block = dim3(b[0], b[1], b[2]);
    s.n_threads = b[0] * b[1] * b[2];
    s.body = body;
    s.ctx = ctx;
    prepare_fibers(s.n_threads);
    bool ok = true;
    for (unsigned z = 0; ok && z < g[2]; ++z)
        for (unsigned y = 0; ok && y < g[1]; ++y)
            for (unsigned x = 0; ok && x < g[0]; ++x) {
                s.block_idx = uint3{x, y, z};
                s.smem_size = smem;
                // fresh per block; malloc'd so that ASan sees overruns (+1: malloc(0))
                s.smem = static_cast<unsigned char*>(std::malloc(smem + 1));
                ok = run_block();
                std::free(s.smem);
                s.smem = nullptr;
            }
    return ok ? 0 : 1;
}

// ------------------------------------------------------ kernel type plumbing
template <typename T> struct TypeName { static constexpr const char* value = nullptr; };
#define EMU_TYPE_NAME(T) \
    template <> struct TypeName<T> { static constexpr const char* value = #T; };
EMU_TYPE_NAME(bool)
EMU_TYPE_NAME(char)
EMU_TYPE_NAME(signed char)
EMU_TYPE_NAME(unsigned char)
EMU_TYPE_NAME(short)
EMU_TYPE_NAME(unsigned short)
EMU_TYPE_NAME(int)
EMU_TYPE_NAME(unsigned int)
EMU_TYPE_NAME(long)
EMU_TYPE_NAME(unsigned long)
EMU_TYPE_NAME(long long)
EMU_TYPE_NAME(unsigned long long)
EMU_TYPE_NAME(float)
EMU_TYPE_NAME(double)
#undef EMU_TYPE_NAME

template <typename T>
std::string type_string() {
    if constexpr (std::is_pointer<T>::value) {
        using E = typename std::remove_pointer<T>::type;
        return std::string(std::is_const<E>::value ? "const " : "") +
               type_string<typename std::remove_cv<E>::type>() + "*";
    } else {
        const char* name = TypeName<typename std::remove_cv<T>::type>::value;
        return name ? name : "?";
    }
}

// "const int*;float*;long long": one entry per kernel parameter.
template <typename... A>
const char* signature(void (*)(A...)) {
    static const std::string sig = [] {
        std::string out;
        ((out += (out.empty() ? "" : ";") + type_string<A>()), ...);
        return out;
    }();
    return sig.c_str();
}

template <typename... A, size_t... I>
void call_kernel(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    // CUDA convention: args[i] points to the storage of the i-th argument
    kernel(*static_cast<typename std::remove_cv<A>::type*>(args[I])...);
}

template <typename... A>
int launch(void (*kernel)(A...), const unsigned* grid, const unsigned* block, size_t smem,
           void** args) {
    struct Ctx {
        void (*kernel)(A...);
        void** args;
    } ctx{kernel, args};
    auto body = [](void* c) {
        Ctx* x = static_cast<Ctx*>(c);
        call_kernel(x->kernel, x->args, std::index_sequence_for<A...>{});
    };
    return run_grid(grid, block, smem, body, &ctx);
}

inline const char* last_error() { return S().error.c_str(); }

inline void set_schedule(int policy, unsigned long long seed) {
    State& s = S();
    std::lock_guard<std::mutex> guard(s.lock);
    s.schedule = policy;
    s.seed = seed;
    s.launch_blocks = 0;
}

// ------------------------------------------------------- intrinsics (CUDA's overload set)
#define EMU_SHFL_OVERLOADS(T)                                                              \
    inline T shfl_idx(int line, unsigned mask, T v, int src, int width = 32) {             \
        return shuffle<T>(line, kShflIdx, mask, v, src, width);                            \
    }                                                                                      \
    inline T shfl_xor(int line, unsigned mask, T v, int lane_mask, int width = 32) {       \
        return shuffle<T>(line, kShflXor, mask, v, lane_mask, width);                      \
    }
EMU_SHFL_OVERLOADS(int)
EMU_SHFL_OVERLOADS(unsigned int)
EMU_SHFL_OVERLOADS(long)
EMU_SHFL_OVERLOADS(unsigned long)
EMU_SHFL_OVERLOADS(long long)
EMU_SHFL_OVERLOADS(unsigned long long)
EMU_SHFL_OVERLOADS(float)
EMU_SHFL_OVERLOADS(double)
#undef EMU_SHFL_OVERLOADS

template <typename T>
inline T ldg(const T* p) { return *p; }

}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::block_idx())
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())
#define warpSize 32
#define __syncthreads() (::emu::syncthreads(__LINE__))
#define __shfl_sync(...) (::emu::shfl_idx(__LINE__, __VA_ARGS__))
#define __shfl_xor_sync(...) (::emu::shfl_xor(__LINE__, __VA_ARGS__))
#define __ldg(p) (::emu::ldg(p))

// CUDA's math overloads: sqrt(float) is the float function, as under NVRTC.
namespace ctre {
using std::fabs;
using std::sqrt;
}  // namespace ctre

#endif  // CTRE_CUDA_EMU_H
