// Kernels over GGUF weights in their stored formats (quant_kernels.h); the per-format decoding
// lives in quant_formats.cuh, one decoder per format shared by the three kernels here.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "backend/cuda/quant_formats.cuh"
#include "backend/cuda/quant_kernels.h"
#include "core/error.h"

namespace vela::cuda_backend {
namespace {

using namespace quant;

constexpr int kMaxWarps = 8;                   // warps of a matvec CTA (fewer when n is small)
constexpr int kMatvecSmemCap = 96 * 1024;      // staged activations per CTA; 2 CTAs fit an SM
constexpr int kMatvecCtasPerSm = 2;            // what __launch_bounds__ below guarantees
constexpr int64_t kMaxDim = int64_t{1} << 30;  // n and k: staged indices stay in int

// Floats per staged activation row of len elements, a multiple of 4 (float4 reads stay aligned).
template <class F>
int staged_stride(int len) {
    return (staged_index<F>(len) + 3) / 4 * 4;
}

// ---- matvec ----
//
// Work split: each warp computes one output row (all m activation rows at once) per step; a CTA
// of `warps` warps takes groups of `warps` consecutive rows, grid-striding over the groups, with
// the grid sized to the CTAs that are resident at once, so each CTA stages the activations into
// shared memory once (or once per k-tile and group when m * k does not fit, kMatvecSmemCap).
// Within a row, lane l takes chunks l, l + 32, ... of the row (F::kUnroll of them loaded before
// any is decoded, to keep loads in flight), decodes each into registers, and accumulates it
// against all m activation rows read from shared memory as float4s; then a shuffle reduction.
// Every weight byte is read once per call.

struct MatvecArgs {
    const uint8_t* w;
    int64_t row_bytes;
    int n, k, m;
    const float* x;
    int64_t ldx;
    float* y;
    int64_t ldy;
    int tile;    // activation elements staged at a time (k rounded up when it fits)
    int stride;  // floats per staged activation row
    bool vec_x;  // x rows can be read as float4
};

template <class F, int M>
__device__ void stage_x(const MatvecArgs& a, float* xs, int t0, int len) {
    if (a.vec_x) {
        const int len4 = len / 4;
        for (int i = threadIdx.x; i < M * len4; i += blockDim.x) {
            const int r = i / len4, e = (i - r * len4) * 4;
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (r < a.m) v = __ldg(reinterpret_cast<const float4*>(a.x + r * a.ldx + t0 + e));
            *reinterpret_cast<float4*>(xs + r * a.stride + staged_index<F>(e)) = v;
        }
    } else {
        for (int i = threadIdx.x; i < M * len; i += blockDim.x) {
            const int r = i / len, e = i - r * len;
            xs[r * a.stride + staged_index<F>(e)] = r < a.m ? __ldg(a.x + r * a.ldx + t0 + e) : 0.f;
        }
    }
}

// Chunk cc (counted from the start of the tile) against the staged activations.
template <class F, int M>
__device__ __forceinline__ void accumulate_chunk(const typename F::Raw& raw, int cc,
                                                 const float* xs, int stride, float (&acc)[M][2]) {
    constexpr int L = F::kRunLen;
    const int ch = cc % F::kChunks;
    float v[F::kRuns * L];
    F::decode(raw, ch, v);
    const int base = cc / F::kChunks * F::kBlockElems;
#pragma unroll
    for (int r = 0; r < F::kRuns; ++r) {
        const float* xr = xs + staged_index<F>(base + F::run_start(ch, r));
#pragma unroll
        for (int mm = 0; mm < M; ++mm) {
            if constexpr (L % 4 == 0) {
#pragma unroll
                for (int i = 0; i < L; i += 4) {
                    const float4 xv = *reinterpret_cast<const float4*>(xr + mm * stride + i);
                    const float* wv = v + r * L + i;
                    acc[mm][0] = fmaf(wv[0], xv.x, acc[mm][0]);
                    acc[mm][1] = fmaf(wv[1], xv.y, acc[mm][1]);
                    acc[mm][0] = fmaf(wv[2], xv.z, acc[mm][0]);
                    acc[mm][1] = fmaf(wv[3], xv.w, acc[mm][1]);
                }
            } else {
#pragma unroll
                for (int i = 0; i < L; ++i)
                    acc[mm][i & 1] = fmaf(v[r * L + i], xr[mm * stride + i], acc[mm][i & 1]);
            }
        }
    }
}

template <class F, int M>
__global__ void __launch_bounds__(kMaxWarps * 32, kMatvecCtasPerSm) matvec_kernel(MatvecArgs a) {
    extern __shared__ float4 smem_f4[];
    float* xs = reinterpret_cast<float*>(smem_f4);
    // Chunks loaded ahead per lane; halved from 4 activation rows, where the accumulators and
    // the math take the registers (and the loads are not the limit).
    constexpr int U = M >= 4 && F::kUnroll > 1 ? F::kUnroll / 2 : F::kUnroll;
    const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int ntiles = (a.k + a.tile - 1) / a.tile;
    const int ngroups = (a.n + warps - 1) / warps;
    for (int g = blockIdx.x; g < ngroups; g += gridDim.x) {
        const int row = g * warps + warp;
        float acc[M][2] = {};
        for (int t = 0; t < ntiles; ++t) {
            const int t0 = t * a.tile, len = min(a.tile, a.k - t0);
            if (ntiles > 1 || g == blockIdx.x) {
                __syncthreads();  // readers of the previous tile are done
                stage_x<F, M>(a, xs, t0, len);
                __syncthreads();
            }
            if (row >= a.n) continue;
            const uint8_t* wr = a.w + row * a.row_bytes +
                                static_cast<int64_t>(t0 / F::kBlockElems) * F::kBlockBytes;
            const int nchunks = len / F::kBlockElems * F::kChunks;
            for (int c = lane; c < nchunks; c += 32 * U) {
                typename F::Raw raw[U];
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    const int cc = c + 32 * u;
                    if (cc < nchunks)
                        raw[u] = F::load(wr + cc / F::kChunks * F::kBlockBytes, cc % F::kChunks);
                }
#pragma unroll
                for (int u = 0; u < U; ++u) {
                    const int cc = c + 32 * u;
                    if (cc < nchunks) accumulate_chunk<F, M>(raw[u], cc, xs, a.stride, acc);
                }
            }
        }
        if (row >= a.n) continue;
#pragma unroll
        for (int mm = 0; mm < M; ++mm) {
            float s = acc[mm][0] + acc[mm][1];
#pragma unroll
            for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
            if (lane == 0 && mm < a.m) a.y[mm * a.ldy + row] = s;
        }
    }
}

// ---- matvec, one CTA per row group ----
//
// Work split: a CTA of kRowThreads threads takes R consecutive rows; its threads stride over the
// chunks of those rows together (thread t takes chunks t, t + kRowThreads, ...: neighbouring
// threads read neighbouring bytes), U chunks per row loaded before any is decoded. Activations
// are read from global memory through L1 (no staging, no barrier before the first load); the
// sums meet in shared memory at the end. The grid is one CTA per row group, so occupancy, not
// the grid, sets how many loads are in flight.

constexpr int kRowThreads = 128;

// What a CTA writes: each row's sum (kNone), or for a gated FFN act(gate row) * (up row) from
// row r = 0 of the gate matrix and r = 1 of the up matrix (kSilu: SwiGLU, kGelu: GeGLU, tanh).
enum class Epilogue { kNone, kSilu, kGelu };

struct RowsArgs {
    const uint8_t* w[kMatvecMaxMats];
    float* y[kMatvecMaxMats];
    int64_t ldy[kMatvecMaxMats];
    int n[kMatvecMaxMats];
    int cta_end[kMatvecMaxMats];  // matrix j takes CTAs [cta_end[j - 1], cta_end[j])
    int mats;
    int64_t row_bytes;
    int k, m;
    const float* x;
    int64_t ldx;
    bool vec_x;  // x rows can be read as float4
};

template <class F, int M>
__device__ __forceinline__ void accumulate_chunk_x(const typename F::Raw& raw, int cc,
                                                   const RowsArgs& a, float (&acc)[M][2]) {
    constexpr int L = F::kRunLen;
    const int ch = cc % F::kChunks;
    float v[F::kRuns * L];
    F::decode(raw, ch, v);
    const int base = cc / F::kChunks * F::kBlockElems;
#pragma unroll
    for (int r = 0; r < F::kRuns; ++r) {
        const int e0 = base + F::run_start(ch, r);
#pragma unroll
        for (int mm = 0; mm < M; ++mm) {
            // Rows past a.m read row a.m - 1 again (valid memory); their sums are dropped.
            const float* xr = a.x + static_cast<int64_t>(min(mm, a.m - 1)) * a.ldx + e0;
            if constexpr (L % 4 == 0) {
                if (a.vec_x) {
#pragma unroll
                    for (int i = 0; i < L; i += 4) {
                        const float4 xv = __ldg(reinterpret_cast<const float4*>(xr + i));
                        const float* wv = v + r * L + i;
                        acc[mm][0] = fmaf(wv[0], xv.x, acc[mm][0]);
                        acc[mm][1] = fmaf(wv[1], xv.y, acc[mm][1]);
                        acc[mm][0] = fmaf(wv[2], xv.z, acc[mm][0]);
                        acc[mm][1] = fmaf(wv[3], xv.w, acc[mm][1]);
                    }
                    continue;
                }
            }
#pragma unroll
            for (int i = 0; i < L; ++i)
                acc[mm][i & 1] = fmaf(v[r * L + i], __ldg(xr + i), acc[mm][i & 1]);
        }
    }
}

__device__ __forceinline__ float gate_act(Epilogue e, float g) {
    if (e == Epilogue::kSilu) return g / (1.f + expf(-g));
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * g * (1.f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g)));
}

template <class F, int M, int R, Epilogue E>
__global__ void __launch_bounds__(kRowThreads) matvec_rows_kernel(RowsArgs a) {
    static_assert(E == Epilogue::kNone || R == 2, "a gated epilogue pairs a gate and an up row");
    constexpr int kWarps = kRowThreads / 32;
    // Chunks in flight per thread: F::kUnroll in all, over the R rows; fewer with 4+ activation
    // rows, where the accumulators take the registers.
    constexpr int U0 = F::kUnroll / R > 0 ? F::kUnroll / R : 1;
    constexpr int U = M >= 4 && U0 > 1 ? U0 / 2 : U0;
    __shared__ float part[kWarps][R][M];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    int j = 0, b = static_cast<int>(blockIdx.x);
    if constexpr (E == Epilogue::kNone) {
        while (j + 1 < a.mats && b >= a.cta_end[j]) ++j;
        if (j > 0) b -= a.cta_end[j - 1];
    }
    const int n = a.n[j];
    const int row0 = E == Epilogue::kNone ? b * R : b;
    const uint8_t* wr[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        // A row past n reads row n - 1 again (valid memory); its sums are dropped.
        wr[r] = E == Epilogue::kNone
                    ? a.w[j] + static_cast<int64_t>(min(row0 + r, n - 1)) * a.row_bytes
                    : a.w[r] + static_cast<int64_t>(row0) * a.row_bytes;
    }
    const int nchunks = a.k / F::kBlockElems * F::kChunks;
    float acc[R][M][2] = {};
    for (int c = tid; c < nchunks; c += kRowThreads * U) {
        typename F::Raw raw[U][R];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int cc = c + kRowThreads * u;
            if (cc < nchunks) {
#pragma unroll
                for (int r = 0; r < R; ++r)
                    raw[u][r] = F::load(wr[r] + cc / F::kChunks * F::kBlockBytes, cc % F::kChunks);
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int cc = c + kRowThreads * u;
            if (cc < nchunks) {
#pragma unroll
                for (int r = 0; r < R; ++r) accumulate_chunk_x<F, M>(raw[u][r], cc, a, acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int mm = 0; mm < M; ++mm) {
            float s = acc[r][mm][0] + acc[r][mm][1];
#pragma unroll
            for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
            if (lane == 0) part[warp][r][mm] = s;
        }
    }
    __syncthreads();
    if (warp != 0) return;
    // Lane r * M + mm sums row r, activation row mm over the warps (R * M <= 16 lanes).
    const int r = min(lane / M, R - 1), mm = lane % M;
    float s = part[0][r][mm];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) s += part[w][r][mm];
    if constexpr (E == Epilogue::kNone) {
        if (lane < R * M && mm < a.m && row0 + r < n) a.y[j][mm * a.ldy[j] + row0 + r] = s;
    } else {
        const float up = __shfl_down_sync(0xFFFFFFFFu, s, M);  // row 1's sum, M lanes on
        if (lane < M && mm < a.m) a.y[0][mm * a.ldy[0] + row0] = gate_act(E, s) * up;
    }
}

// ---- dequantize_bf16 ----
//
// Work split: one thread per chunk (4 to 32 elements, F's chunk), grid-striding over all chunks
// of all rows; consecutive threads take consecutive chunks of a row, so their loads and their
// 8- or 16-byte stores of bf16 runs are neighbours.

__device__ __forceinline__ uint32_t bf16_bits(float f) {  // as vela::fp32_to_bf16
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (x >> 16) | 0x40u;
    x += 0x7FFFu + ((x >> 16) & 1u);
    return x >> 16;
}

template <class F>
__global__ void dequantize_bf16_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t cols,
                                       int64_t row_bytes, uint16_t* __restrict__ out) {
    constexpr int L = F::kRunLen;
    const int64_t per_row = cols / F::kBlockElems * F::kChunks;
    const int64_t total = rows * per_row;
    for (int64_t id = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; id < total;
         id += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t row = id / per_row, c = id - row * per_row;
        const int ch = static_cast<int>(c % F::kChunks);
        const int64_t blk = c / F::kChunks;
        float v[F::kRuns * L];
        F::decode(F::load(w + row * row_bytes + blk * F::kBlockBytes, ch), ch, v);
#pragma unroll
        for (int r = 0; r < F::kRuns; ++r) {
            uint16_t* o = out + row * cols + blk * F::kBlockElems + F::run_start(ch, r);
            if constexpr (L % 8 == 0) {
#pragma unroll
                for (int i = 0; i < L; i += 8) {
                    const float* s = v + r * L + i;
                    uint4 p;
                    p.x = bf16_bits(s[0]) | bf16_bits(s[1]) << 16;
                    p.y = bf16_bits(s[2]) | bf16_bits(s[3]) << 16;
                    p.z = bf16_bits(s[4]) | bf16_bits(s[5]) << 16;
                    p.w = bf16_bits(s[6]) | bf16_bits(s[7]) << 16;
                    *reinterpret_cast<uint4*>(o + i) = p;
                }
            } else if constexpr (L == 4) {
                const float* s = v + r * L;
                *reinterpret_cast<uint2*>(o) = make_uint2(bf16_bits(s[0]) | bf16_bits(s[1]) << 16,
                                                          bf16_bits(s[2]) | bf16_bits(s[3]) << 16);
            } else {
#pragma unroll
                for (int i = 0; i < L; ++i) o[i] = static_cast<uint16_t>(bf16_bits(v[r * L + i]));
            }
        }
    }
}

// ---- embed_rows ----
//
// Work split: one CTA per id; its threads stride over the chunks of that table row, each
// decoding one chunk and storing its runs as float4s (consecutive threads, neighbouring runs).

template <class F>
__global__ void embed_rows_kernel(const uint8_t* __restrict__ table, int64_t cols,
                                  int64_t row_bytes, const int32_t* __restrict__ ids,
                                  float* __restrict__ out) {
    constexpr int L = F::kRunLen;
    const int64_t i = blockIdx.x;
    const uint8_t* src = table + static_cast<int64_t>(ids[i]) * row_bytes;
    float* dst = out + i * cols;
    const int64_t chunks = cols / F::kBlockElems * F::kChunks;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
        const int ch = static_cast<int>(c % F::kChunks);
        const int64_t blk = c / F::kChunks;
        float v[F::kRuns * L];
        F::decode(F::load(src + blk * F::kBlockBytes, ch), ch, v);
#pragma unroll
        for (int r = 0; r < F::kRuns; ++r) {
            float* o = dst + blk * F::kBlockElems + F::run_start(ch, r);
            if constexpr (L % 4 == 0) {
#pragma unroll
                for (int e = 0; e < L; e += 4)
                    *reinterpret_cast<float4*>(o + e) = make_float4(
                        v[r * L + e], v[r * L + e + 1], v[r * L + e + 2], v[r * L + e + 3]);
            } else {
#pragma unroll
                for (int e = 0; e < L; ++e) o[e] = v[r * L + e];
            }
        }
    }
}

// ---- host side ----

void check_cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) fail<Error>("CUDA error in {}: {}", what, cudaGetErrorString(e));
}

// Run-time type (and, for the plain types, whether rows split into 16-byte vectors) to a format
// type: the one place where run-time values become template arguments.
template <class F>
struct Tag {
    using type = F;
};

template <class Fn>
void with_format(DType t, int64_t cols, Fn&& fn) {
    switch (t) {
        case DType::F32:
            return cols % 4 == 0 ? fn(Tag<FmtF32<4>>{}) : fn(Tag<FmtF32<1>>{});
        case DType::F16:
            return cols % 8 == 0 ? fn(Tag<FmtHalf<8, false>>{}) : fn(Tag<FmtHalf<1, false>>{});
        case DType::BF16:
            return cols % 8 == 0 ? fn(Tag<FmtHalf<8, true>>{}) : fn(Tag<FmtHalf<1, true>>{});
        case DType::Q4_0:
            return fn(Tag<FmtQ4_0>{});
        case DType::Q4_1:
            return fn(Tag<FmtQ4_1>{});
        case DType::Q5_0:
            return fn(Tag<FmtQ5_0>{});
        case DType::Q5_1:
            return fn(Tag<FmtQ5_1>{});
        case DType::Q8_0:
            return fn(Tag<FmtQ8_0>{});
        case DType::Q2_K:
            return fn(Tag<FmtQ2K>{});
        case DType::Q3_K:
            return fn(Tag<FmtQ3K>{});
        case DType::Q4_K:
            return fn(Tag<FmtQ4K>{});
        case DType::Q5_K:
            return fn(Tag<FmtQ5K>{});
        case DType::Q6_K:
            return fn(Tag<FmtQ6K>{});
        default:
            break;
    }
    VELA_ASSERT(false && "with_format and supports_weight_type disagree");
}

std::string_view type_name(DType t) {
    const auto info = dtype_info(static_cast<uint32_t>(t));
    return info ? info->name : std::string_view("(unknown type id)");
}

bool aligned16(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// Checks shared by the three entry points: the type, the row length, the weight pointer.
void check_weights(const char* fn, DType t, const void* w, int64_t cols) {
    if (!supports_weight_type(t))
        fail<InvalidArgument>("cuda {}: no kernel for weight type {}", fn, type_name(t));
    const int64_t bs = dtype_info(t).block_size;
    if (cols < 0 || cols % bs != 0)
        fail<InvalidArgument>(
            "cuda {}: row of {} elements is not a multiple of the {} block size {}", fn, cols,
            type_name(t), bs);
    if (!aligned16(w)) fail<InvalidArgument>("cuda {}: weights are not 16-byte aligned", fn);
}

struct DeviceInfo {
    int sms = 0;
    int smem_per_sm = 0;
};

// Multiprocessor count and shared memory of the current device, read once per device.
DeviceInfo device_info() {
    constexpr int kMaxDevices = 64;
    static std::atomic<int> sms[kMaxDevices], smem[kMaxDevices];
    int dev = 0;
    check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
    if (dev >= kMaxDevices) dev = kMaxDevices - 1;  // a guess for absurd device counts is fine
    if (sms[dev].load(std::memory_order_relaxed) == 0) {
        int s = 0, b = 0;
        check_cuda(cudaDeviceGetAttribute(&s, cudaDevAttrMultiProcessorCount, dev),
                   "cudaDeviceGetAttribute");
        check_cuda(cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev),
                   "cudaDeviceGetAttribute");
        smem[dev].store(b, std::memory_order_relaxed);
        sms[dev].store(s, std::memory_order_relaxed);
    }
    return {sms[dev].load(std::memory_order_relaxed), smem[dev].load(std::memory_order_relaxed)};
}

// Lets the matvec_kernel<F, M> instance use kMatvecSmemCap of dynamic shared memory, once per
// instance and device (one flag per instance: the attribute belongs to each kernel).
template <class F, int M>
void allow_matvec_smem() {
    static std::atomic<uint64_t> done{0};
    int dev = 0;
    check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
    const uint64_t bit = uint64_t{1} << (dev & 63);
    if (done.load(std::memory_order_relaxed) & bit) return;
    check_cuda(cudaFuncSetAttribute(matvec_kernel<F, M>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    kMatvecSmemCap),
               "cudaFuncSetAttribute");
    done.fetch_or(bit, std::memory_order_relaxed);
}

template <class F, int M>
void launch_matvec(MatvecArgs a, cudaStream_t stream) {
    // Tile: all of k when M rows of it fit the cap, else the largest multiple of 256 that does.
    int tile = a.k;
    if (static_cast<int64_t>(M) * staged_stride<F>(a.k) * 4 > kMatvecSmemCap) {
        tile = 256;
        while (static_cast<int64_t>(M) * staged_stride<F>(tile + 256) * 4 <= kMatvecSmemCap)
            tile += 256;
    }
    a.tile = std::max(tile, 1);
    a.stride = staged_stride<F>(a.tile);
    const int smem = M * a.stride * 4;
    const DeviceInfo dev = device_info();
    const int per_sm = std::max(1, std::min(kMatvecCtasPerSm, dev.smem_per_sm / (smem + 1024)));
    const int max_ctas = dev.sms * per_sm;
    // Fewer warps per CTA when 8-row groups would leave SMs idle (n of a few thousand or less).
    int warps = kMaxWarps;
    while (warps > 2 && (a.n + warps - 1) / warps < max_ctas) warps /= 2;
    const int grid = std::min((a.n + warps - 1) / warps, max_ctas);
    auto kernel = matvec_kernel<F, M>;
    if (smem > 48 * 1024) allow_matvec_smem<F, M>();
    kernel<<<grid, warps * 32, smem, stream>>>(a);
    check_cuda(cudaGetLastError(), "matvec launch");
}

// Which matvec kernel runs: VELA_MATVEC=staged (the grid-strided kernel with activations in
// shared memory), rows1 / rows2 (one CTA per 1 or 2 rows), unset: by type and size (below).
int matvec_variant() {
    static const int v = [] {
        const char* e = std::getenv("VELA_MATVEC");
        const std::string_view s = e ? e : "";
        if (s == "staged") return 0;
        if (s == "rows1") return 1;
        if (s == "rows2") return 2;
        return 3;
    }();
    return v;
}

// Measured on an H200 (docs/benchmarks-gpu.md, bench_matvec): the one-CTA-per-row kernel is the
// faster for weights without decoding (F16, BF16, F32: 65-100% of the copy rate on 8B-sized
// matrices) and for matrices of few rows (n <= 2048), where the staged kernel leaves SMs idle;
// the staged kernel for quantised matrices of more rows, where decoding bounds both and its
// activations in shared memory cost less than the rows kernel's L1 reads.
constexpr int64_t kRowsMaxQuantizedN = 2048;

bool rows_kernel_for(DType t, int64_t n) {
    const int variant = matvec_variant();
    if (variant != 3) return variant != 0;
    return dtype_info(t).block_size == 1 || n <= kRowsMaxQuantizedN;
}

template <class F, int M, int R, Epilogue E>
void launch_rows(const RowsArgs& a, int grid, cudaStream_t stream) {
    matvec_rows_kernel<F, M, R, E><<<grid, kRowThreads, 0, stream>>>(a);
    check_cuda(cudaGetLastError(), "matvec launch");
}

// The rows kernel for the activation row count m (one instance per M in 1, 2, 4, 8); two
// weight rows a CTA only when asked (VELA_MATVEC=rows2: measured slower or level elsewhere).
template <class F, Epilogue E>
void launch_rows_m(const RowsArgs& a, cudaStream_t s) {
    const bool two = E == Epilogue::kNone && a.m == 1 && matvec_variant() == 2;
    // CTAs per matrix: one per row, one per two rows, or one per (gate, up) row pair.
    RowsArgs b = a;
    int ctas = 0;
    for (int j = 0; j < b.mats; ++j) {
        ctas += two ? (b.n[j] + 1) / 2 : b.n[j];
        b.cta_end[j] = ctas;
    }
    if (E != Epilogue::kNone) ctas = b.n[0];
    if constexpr (E == Epilogue::kNone) {
        if (two) return launch_rows<F, 1, 2, E>(b, ctas, s);
        if (b.m == 1) return launch_rows<F, 1, 1, E>(b, ctas, s);
        if (b.m == 2) return launch_rows<F, 2, 1, E>(b, ctas, s);
        if (b.m <= 4) return launch_rows<F, 4, 1, E>(b, ctas, s);
        return launch_rows<F, 8, 1, E>(b, ctas, s);
    } else {
        if (b.m == 1) return launch_rows<F, 1, 2, E>(b, ctas, s);
        if (b.m == 2) return launch_rows<F, 2, 2, E>(b, ctas, s);
        if (b.m <= 4) return launch_rows<F, 4, 2, E>(b, ctas, s);
        return launch_rows<F, 8, 2, E>(b, ctas, s);
    }
}

// Checks shared by the matvec entry points and the RowsArgs they share.
RowsArgs rows_args(const char* fn, DType t, const void* w, int64_t k, const float* x, int64_t ldx,
                   int64_t m) {
    check_weights(fn, t, w, k);
    if (m < 1 || m > kMatvecMaxRows)
        fail<InvalidArgument>("cuda {}: m = {} rows, expected 1 to {}", fn, m, kMatvecMaxRows);
    if (k > kMaxDim) fail<InvalidArgument>("cuda {}: k = {} out of range (max {})", fn, k, kMaxDim);
    if (m > 1 && ldx < k)
        fail<InvalidArgument>("cuda {}: row stride ldx = {} < k = {}", fn, ldx, k);
    RowsArgs a{};
    a.row_bytes = static_cast<int64_t>(row_bytes(t, k));
    a.k = static_cast<int>(k);
    a.m = static_cast<int>(m);
    a.x = x;
    a.ldx = ldx;
    a.vec_x = aligned16(x) && k % 4 == 0 && (m == 1 || ldx % 4 == 0);
    return a;
}

void check_rows(const char* fn, int64_t n) {
    if (n < 0 || n > kMaxDim)
        fail<InvalidArgument>("cuda {}: n = {} out of range (0 to {})", fn, n, kMaxDim);
}

}  // namespace

bool supports_weight_type(DType t) {
    switch (t) {
        case DType::F32:
        case DType::F16:
        case DType::BF16:
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q8_0:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

void matvec(DType t, const void* w, int64_t n, int64_t k, const float* x, int64_t ldx, int64_t m,
            float* y, int64_t ldy, void* stream, bool batch_invariant) {
    RowsArgs r = rows_args("matvec", t, w, k, x, ldx, m);
    check_rows("matvec", n);
    if (m > 1 && ldy < n)
        fail<InvalidArgument>("cuda matvec: row stride ldy = {} < n = {}", ldy, n);
    if (n == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    if (rows_kernel_for(t, n)) {
        r.w[0] = static_cast<const uint8_t*>(w);
        r.y[0] = y;
        r.ldy[0] = ldy;
        r.n[0] = static_cast<int>(n);
        r.mats = 1;
        return with_format(t, k, [&](auto tag) {
            launch_rows_m<typename decltype(tag)::type, Epilogue::kNone>(r, s);
        });
    }
    MatvecArgs a{};
    a.w = static_cast<const uint8_t*>(w);
    a.row_bytes = r.row_bytes;
    a.n = static_cast<int>(n);
    a.k = static_cast<int>(k);
    a.m = static_cast<int>(m);
    a.x = x;
    a.ldx = ldx;
    a.y = y;
    a.ldy = ldy;
    a.vec_x = r.vec_x;
    with_format(t, k, [&](auto tag) {
        using F = typename decltype(tag)::type;
        if (batch_invariant) return launch_matvec<F, static_cast<int>(kMatvecMaxRows)>(a, s);
        if (m == 1) return launch_matvec<F, 1>(a, s);
        if (m == 2) return launch_matvec<F, 2>(a, s);
        if (m <= 4) return launch_matvec<F, 4>(a, s);
        return launch_matvec<F, 8>(a, s);
    });
}

bool matvec_fuses(DType t, int64_t n) {
    return rows_kernel_for(t, n);
}

void matvec_multi(DType t, const MatvecOutput* outs, int count, int64_t k, const float* x,
                  int64_t m, void* stream) {
    if (count < 1 || count > kMatvecMaxMats)
        fail<InvalidArgument>("cuda matvec_multi: {} matrices, expected 1 to {}", count,
                              kMatvecMaxMats);
    RowsArgs r = rows_args("matvec_multi", t, outs[0].w, k, x, k, m);
    for (int j = 0; j < count; ++j) {
        check_weights("matvec_multi", t, outs[j].w, k);
        check_rows("matvec_multi", outs[j].n);
        if (outs[j].n == 0) fail<InvalidArgument>("cuda matvec_multi: matrix {} has no rows", j);
        r.w[j] = static_cast<const uint8_t*>(outs[j].w);
        r.y[j] = outs[j].y;
        r.ldy[j] = outs[j].n;
        r.n[j] = static_cast<int>(outs[j].n);
    }
    r.mats = count;
    with_format(t, k, [&](auto tag) {
        launch_rows_m<typename decltype(tag)::type, Epilogue::kNone>(
            r, static_cast<cudaStream_t>(stream));
    });
}

void matvec_glu(DType t, const void* gate, const void* up, int64_t n, int64_t k, const float* x,
                int64_t m, float* y, bool gelu, void* stream) {
    RowsArgs r = rows_args("matvec_glu", t, gate, k, x, k, m);
    check_weights("matvec_glu", t, up, k);
    check_rows("matvec_glu", n);
    if (n == 0) return;
    r.w[0] = static_cast<const uint8_t*>(gate);
    r.w[1] = static_cast<const uint8_t*>(up);
    r.y[0] = y;
    r.ldy[0] = n;
    r.n[0] = static_cast<int>(n);
    r.mats = 1;
    const auto s = static_cast<cudaStream_t>(stream);
    with_format(t, k, [&](auto tag) {
        using F = typename decltype(tag)::type;
        if (gelu) return launch_rows_m<F, Epilogue::kGelu>(r, s);
        launch_rows_m<F, Epilogue::kSilu>(r, s);
    });
}

void dequantize_bf16(DType t, const void* w, int64_t rows, int64_t cols, uint16_t* out,
                     void* stream) {
    check_weights("dequantize_bf16", t, w, cols);
    if (rows < 0) fail<InvalidArgument>("cuda dequantize_bf16: rows = {}", rows);
    if (!aligned16(out)) fail<InvalidArgument>("cuda dequantize_bf16: out is not 16-byte aligned");
    if (rows == 0 || cols == 0) return;
    const int64_t rb = static_cast<int64_t>(row_bytes(t, cols));
    with_format(t, cols, [&](auto tag) {
        using F = typename decltype(tag)::type;
        const int64_t total = rows * (cols / F::kBlockElems * F::kChunks);
        constexpr int kThreads = 256;
        const int64_t blocks =
            std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
        dequantize_bf16_kernel<F>
            <<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
                static_cast<const uint8_t*>(w), rows, cols, rb, out);
    });
    check_cuda(cudaGetLastError(), "dequantize_bf16 launch");
}

void embed_rows(DType t, const void* table, int64_t cols, const int32_t* ids, int64_t n, float* out,
                void* stream) {
    check_weights("embed_rows", t, table, cols);
    if (n < 0 || n > INT_MAX) fail<InvalidArgument>("cuda embed_rows: n = {} ids out of range", n);
    if (!aligned16(out)) fail<InvalidArgument>("cuda embed_rows: out is not 16-byte aligned");
    if (n == 0 || cols == 0) return;
    const int64_t rb = static_cast<int64_t>(row_bytes(t, cols));
    with_format(t, cols, [&](auto tag) {
        using F = typename decltype(tag)::type;
        const int64_t chunks = cols / F::kBlockElems * F::kChunks;
        const int threads = static_cast<int>(std::min<int64_t>(256, (chunks + 31) / 32 * 32));
        embed_rows_kernel<F>
            <<<static_cast<unsigned>(n), threads, 0, static_cast<cudaStream_t>(stream)>>>(
                static_cast<const uint8_t*>(table), cols, rb, ids, out);
    });
    check_cuda(cudaGetLastError(), "embed_rows launch");
}

}  // namespace vela::cuda_backend
