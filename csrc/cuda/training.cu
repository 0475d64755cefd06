// The element-wise kernels of one training step: bias + left-slope ReLU forward,
// its backward, and the SGD update on the nonzeros.
//
// Same arithmetic per element as the reference backend (ctre_sparse/backends/
// reference.py); NVRTC may contract a multiply-add into an FMA, so results can
// differ from the CPU's in the last bit. Value type F is float or double; every
// size is a long long. Arrays are C order. Launch: any 1-D grid and block
// (grid-stride loops).
#include "common.cuh"

namespace ctre {

// Z[t] = Y[t] + b[t / n_cols]; A[t] = max(Z[t] * slope, Z[t]) as "z > a ? z : a".
// Y[n_rows * n_cols], b[n_rows], Z (may be Y), A (not Z or Y). O(n_rows * n_cols).
template <typename F>
__global__ void bias_left_relu(const F* Y, const F* __restrict__ b, F slope, F* Z,
                               F* __restrict__ A, long long n_rows, long long n_cols) {
    const long long n = n_rows * n_cols;
    const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long t = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
         t += step) {
        const F z = Y[t] + b[t / n_cols];
        Z[t] = z;
        const F a = z * slope;
        A[t] = z > a ? z : a;
    }
}

// out[t] = G[t] * f'(Z[t]): relu (slope 0): G * (Z > 0), as "Z > 0 ? x : x * 0" (signed
// zero and NaN as the reference); else G * (Z > 0 ? (1 - slope) + slope : slope).
// Z[n], G[n], out[n] (may be G). O(n).
template <typename F>
__global__ void left_relu_backward(const F* __restrict__ Z, const F* G, F slope,
                                   F one_minus_slope, int relu, F* out, long long n) {
    const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long t = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
         t += step) {
        const F x = G[t];
        const bool pos = Z[t] > F(0);
        if (relu) {
            out[t] = pos ? x : x * F(0);
        } else {
            out[t] = x * (pos ? one_minus_slope + slope : slope);
        }
    }
}

// One SGD step on the entries, in place: gi = g + decay * w; vi = mu * v + gi;
// step = lr * (nesterov ? gi + mu * vi : vi); w -= step; g = step; v = vi when mu != 0.
// w[n], g[n], v[n]. O(n).
template <typename F>
__global__ void sgd_update(F* __restrict__ w, F* __restrict__ g, F* __restrict__ v, F lr,
                           F mu, F decay, int nesterov, long long n) {
    const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long t = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
         t += step) {
        const F gi = g[t] + decay * w[t];
        const F vi = mu * v[t] + gi;
        if (mu != F(0)) v[t] = vi;
        const F s = lr * (nesterov ? gi + mu * vi : vi);
        g[t] = s;
        w[t] -= s;
    }
}

}  // namespace ctre
