// Elementwise and data-movement kernels of the CUDA backend (ops.h). They touch O(hidden)
// values per token, a few percent of a step next to the matmuls, so they stay plain: one thread
// per element, or one block per row where a row reduces.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"

namespace vela::cuda_backend {
namespace {

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // partial[] may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < blockDim.x / 32 ? partial[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One block per row. The sum of squares in fp32 over per-thread partials (the CPU sums in double;
// rows of <= 8k values lose ~1e-7 relative here).
__global__ void rms_norm_kernel(const float* x, const float* w, float* y, int64_t cols, float eps) {
    const float* xr = x + blockIdx.x * cols;
    float* yr = y + blockIdx.x * cols;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    const float scale = rsqrtf(ss / static_cast<float>(cols) + eps);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

// rms_norm after x += d, one block per row: x and the sum of squares as add_kernel followed by
// rms_norm_kernel compute them (same values, same order), in one pass. y may be d.
__global__ void add_rms_norm_kernel(float* x, const float* d, const float* w, float* y,
                                    int64_t cols, float eps) {
    float* xr = x + blockIdx.x * cols;
    const float* dr = d + blockIdx.x * cols;
    float* yr = y + blockIdx.x * cols;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const float v = xr[i] + dr[i];
        xr[i] = v;
        ss += v * v;
    }
    ss = block_sum(ss);
    const float scale = rsqrtf(ss / static_cast<float>(cols) + eps);
    // Each thread writes y only where it read d (y may alias d).
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < n) y[i] += x[i];
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t n, int64_t cols) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < n) y[i] += bias[i % cols];
}

__global__ void scale_kernel(float* y, float factor, int64_t n) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < n) y[i] *= factor;
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* y, int64_t n) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    y[i] = g / (1.f + expf(-g)) * up[i];
}

__global__ void gelu_mul_kernel(const float* gate, const float* up, float* y, int64_t n) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    const float g = gate[i];
    y[i] = 0.5f * g * (1.f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
}

// One thread per rotated pair: (row, head, i < rot_dim / 2).
__global__ void rope_kernel(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t half,
                            const float* cos, const float* sin, bool neox) {
    const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (t >= rows * n_heads * half) return;
    const int64_t i = t % half, head = t / half % n_heads, row = t / half / n_heads;
    float* v = x + (row * n_heads + head) * head_dim;
    const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float c = cos[row * half + i], s = sin[row * half + i];
    const float a = v[i0], b = v[i1];
    v[i0] = a * c - b * s;
    v[i1] = a * s + b * c;
}

__global__ void gather_rows_kernel(const float* x, int64_t cols, const int32_t* index, int64_t n,
                                   float* out) {
    const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (t >= n * cols) return;
    out[t] = x[index[t / cols] * cols + t % cols];
}

// One CTA per row. Each thread scans its strided columns in ascending order keeping the first
// largest value (a strict > ignores NaN and equal values further right), then the candidates
// merge: the larger value wins, equal values go to the lower index, -1 (nothing above -inf)
// loses to any found index.
struct ArgMax {
    float value;
    int32_t index;
};

__device__ ArgMax better(ArgMax a, ArgMax b) {
    if (b.index < 0) return a;
    if (a.index < 0 || b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
    return a;
}

constexpr int kArgMaxThreads = 1024;

__global__ void __launch_bounds__(kArgMaxThreads)
    argmax_rows_kernel(const float* x, int64_t cols, int32_t* ids) {
    const float* row = x + blockIdx.x * cols;
    ArgMax best{-INFINITY, -1};
    for (int64_t c = threadIdx.x; c < cols; c += kArgMaxThreads) {
        const float v = row[c];
        if (v > best.value) best = {v, static_cast<int32_t>(c)};
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        const ArgMax other{__shfl_down_sync(0xffffffffu, best.value, offset),
                           __shfl_down_sync(0xffffffffu, best.index, offset)};
        best = better(best, other);
    }
    __shared__ ArgMax warps[kArgMaxThreads / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) warps[warp] = best;
    __syncthreads();
    if (warp != 0) return;
    best = warps[lane];
    for (int offset = 16; offset > 0; offset /= 2) {
        const ArgMax other{__shfl_down_sync(0xffffffffu, best.value, offset),
                           __shfl_down_sync(0xffffffffu, best.index, offset)};
        best = better(best, other);
    }
    if (lane == 0) ids[blockIdx.x] = best.index;
}

template <class T>
__device__ T to(float v);
template <>
__device__ __half to<__half>(float v) {
    return __float2half_rn(v);
}
template <>
__device__ __nv_bfloat16 to<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

template <class T>
__global__ void to_half_kernel(const float* x, int64_t n, T* out) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = to<T>(x[i]);
}

template <class T>
__global__ void from_half_kernel(const T* x, int64_t n, float* out) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = static_cast<float>(x[i]);
}

}  // namespace

void add_rms_norm(float* x, const float* d, const float* w, float* y, int64_t rows, int64_t cols,
                  float eps, void* stream) {
    if (rows == 0) return;
    const int threads = cols >= 1024 ? 1024 : cols >= 256 ? 256 : 64;
    add_rms_norm_kernel<<<static_cast<unsigned>(rows), threads, 0, as_stream(stream)>>>(x, d, w, y,
                                                                                        cols, eps);
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, float eps,
              void* stream) {
    if (rows == 0) return;
    const int threads = cols >= 1024 ? 1024 : cols >= 256 ? 256 : 64;
    rms_norm_kernel<<<static_cast<unsigned>(rows), threads, 0, as_stream(stream)>>>(x, w, y, cols,
                                                                                    eps);
}

void add(float* y, const float* x, int64_t n, void* stream) {
    if (n > 0) add_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(y, x, n);
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t cols, void* stream) {
    const int64_t n = rows * cols;
    if (n > 0) add_bias_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(y, bias, n, cols);
}

void scale(float* y, float factor, int64_t n, void* stream) {
    if (n > 0) scale_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(y, factor, n);
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n, void* stream) {
    if (n > 0) silu_mul_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(gate, up, y, n);
}

void gelu_mul(const float* gate, const float* up, float* y, int64_t n, void* stream) {
    if (n > 0) gelu_mul_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(gate, up, y, n);
}

void rope(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
          const float* cos, const float* sin, bool neox, void* stream) {
    const int64_t half = rot_dim / 2, n = rows * n_heads * half;
    if (n > 0) {
        rope_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(x, rows, n_heads, head_dim,
                                                                       half, cos, sin, neox);
    }
}

void gather_rows(const float* x, int64_t cols, const int32_t* index, int64_t n, float* out,
                 void* stream) {
    if (n * cols > 0) {
        gather_rows_kernel<<<blocks_for(n * cols), kThreads, 0, as_stream(stream)>>>(x, cols, index,
                                                                                     n, out);
    }
}

void argmax_rows(const float* x, int64_t rows, int64_t cols, int32_t* ids, void* stream) {
    if (rows > 0) {
        argmax_rows_kernel<<<static_cast<unsigned>(rows), kArgMaxThreads, 0, as_stream(stream)>>>(
            x, cols, ids);
    }
}

// One block per row: the row's maximum, then the double sum of exp(x - max) around it.
__global__ void __launch_bounds__(kArgMaxThreads)
    logsumexp_rows_kernel(const float* x, int64_t cols, double* lse) {
    const float* row = x + blockIdx.x * cols;
    __shared__ float warp_max[kArgMaxThreads / 32];
    __shared__ double warp_sum[kArgMaxThreads / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += kArgMaxThreads) m = fmaxf(m, row[c]);
    for (int offset = 16; offset > 0; offset /= 2)
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    if (lane == 0) warp_max[warp] = m;
    __syncthreads();
    m = warp_max[0];
    for (int w = 1; w < kArgMaxThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
    if (!isfinite(m)) {  // all -inf (or +inf present): nothing finite to normalise
        if (threadIdx.x == 0) lse[blockIdx.x] = m;
        return;
    }
    double z = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += kArgMaxThreads)
        z += exp(static_cast<double>(row[c]) - m);
    for (int offset = 16; offset > 0; offset /= 2) z += __shfl_xor_sync(0xffffffffu, z, offset);
    if (lane == 0) warp_sum[warp] = z;
    __syncthreads();
    if (threadIdx.x != 0) return;
    z = 0.0;
    for (int w = 0; w < kArgMaxThreads / 32; ++w) z += warp_sum[w];
    lse[blockIdx.x] = m + log(z);
}

void logsumexp_rows(const float* x, int64_t rows, int64_t cols, double* lse, void* stream) {
    if (rows > 0) {
        logsumexp_rows_kernel<<<static_cast<unsigned>(rows), kArgMaxThreads, 0,
                                as_stream(stream)>>>(x, cols, lse);
    }
}

void to_half(const float* x, int64_t n, Half h, void* out, void* stream) {
    if (n == 0) return;
    if (h == Half::F16) {
        to_half_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
            x, n, static_cast<__half*>(out));
    } else {
        to_half_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
            x, n, static_cast<__nv_bfloat16*>(out));
    }
}

void from_half(const void* x, int64_t n, Half h, float* out, void* stream) {
    if (n == 0) return;
    if (h == Half::F16) {
        from_half_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
            static_cast<const __half*>(x), n, out);
    } else {
        from_half_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
            static_cast<const __nv_bfloat16*>(x), n, out);
    }
}

__global__ void apply_penalties_kernel(float* x, int64_t cols, const LogitPenalty* e, int64_t n) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    const LogitPenalty p = e[i];
    float& l = x[static_cast<int64_t>(p.row) * cols + p.token];
    // IEEE division and no contraction into an fma: the same float as the host's penalties.
    const float r = l > 0.0f ? __fdiv_rn(l, p.repetition) : __fmul_rn(l, p.repetition);
    l = __fsub_rn(r, __fadd_rn(__fmul_rn(static_cast<float>(p.count), p.frequency), p.presence));
}

void apply_penalties(float* x, int64_t cols, const LogitPenalty* entries, int64_t n, void* stream) {
    constexpr int kThreads = 256;
    apply_penalties_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0,
                             static_cast<cudaStream_t>(stream)>>>(x, cols, entries, n);
}

}  // namespace vela::cuda_backend
