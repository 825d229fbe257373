#pragma once
// Split-K paged decode (Flash-Decoding). A CTA owns (context slice, kv head, sequence) and all
// query heads of that kv head (GQA packing), so each K/V byte is read from memory once per
// step. Decode is bandwidth-bound: the kernel is organised around wide, coalesced loads with
// several in flight (raw 16-byte rows are held in registers and widened only when used), and
// does its arithmetic in fp32 on CUDA cores.
#include <cuda_fp8.h>

#include <cmath>

#include "cuda/attention_params.h"
#include "cuda/launch.h"
#include "cuda/mma.cuh"

namespace vela::cuda::detail {

constexpr int kDecodeThreads = 256;
constexpr int kDecodeUnroll = 8;  // 16-byte key rows in flight per lane

template <KvFormat F>
constexpr int kv_elem_bytes() {
    return F == KvFormat::kInt8 || F == KvFormat::kFp8E4M3 ? 1 : 2;
}

// Widens one 16-byte load (8 16-bit or 16 8-bit stored values) to float, unscaled.
template <KvFormat F, int N>
__device__ __forceinline__ void widen(const uint4& raw, float (&x)[N]) {
    static_assert(N * kv_elem_bytes<F>() == 16);
    if constexpr (F == KvFormat::kF16 || F == KvFormat::kBf16) {
        using T = std::conditional_t<F == KvFormat::kF16, __half, __nv_bfloat16>;
        const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int i = 0; i < N; ++i) x[i] = to_float(v[i]);
    } else if constexpr (F == KvFormat::kInt8) {
        const int8_t* v = reinterpret_cast<const int8_t*>(&raw);
#pragma unroll
        for (int i = 0; i < N; ++i) x[i] = static_cast<float>(v[i]);
    } else {
        const __nv_fp8x2_storage_t* v = reinterpret_cast<const __nv_fp8x2_storage_t*>(&raw);
#pragma unroll
        for (int i = 0; i < N / 2; ++i) {
            const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(v[i], __NV_E4M3)));
            x[2 * i] = f.x;
            x[2 * i + 1] = f.y;
        }
    }
}

struct DecodeSlot {  // where one lane's slice of a key row lives
    int64_t elem;    // element offset of (key, kv head, this lane's first dim)
    float k_scale, v_scale;
    bool valid;
};

template <KvFormat F>
__device__ __forceinline__ DecodeSlot decode_slot(const DecodeParams& p, const int32_t* table,
                                                  int kvh, int key, int end, int dim0) {
    DecodeSlot s{0, 1.f, 1.f, key < end};
    if (!s.valid) return s;
    const int64_t blk = table[key / p.paged.block_size];
    s.elem = blk * p.paged.block_stride + (key % p.paged.block_size) * p.paged.token_stride +
             kvh * p.paged.head_stride + dim0;
    if constexpr (kv_elem_bytes<F>() == 1) {
        s.k_scale = p.k_scale[blk * p.num_kv_heads + kvh];
        s.v_scale = p.v_scale[blk * p.num_kv_heads + kvh];
    }
    return s;
}

template <KvFormat F>
__device__ __forceinline__ uint4 load16(const void* base, const DecodeSlot& s) {
    if (!s.valid) return make_uint4(0, 0, 0, 0);  // zeros keep the shuffled dots finite
    const char* p = static_cast<const char*>(base) + s.elem * kv_elem_bytes<F>();
    return __ldg(reinterpret_cast<const uint4*>(p));
}

// Partial results: o_part[b][h][split][HD] (normalised within the split), lse_part[b][h][split]
// in log2 units of the scaled scores. G is the group size rounded up to 1, 4 or 8: padded
// heads compute on zero queries and are never stored.
template <KvFormat F, int HD, int G>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_split_kernel(const DecodeParams p, int split_len, float* o_part, float* lse_part) {
    constexpr int kElems = 16 / kv_elem_bytes<F>();  // stored values per 16-byte load
    constexpr int kLanesPerKey = HD / kElems;
    constexpr int kKeysPerWarp = 32 / kLanesPerKey;
    constexpr int kKeysPerStep = kKeysPerWarp * (kDecodeThreads / 32);
    extern __shared__ float smem[];
    const int group = p.num_heads / p.num_kv_heads;  // real group, <= G
    float* s_score = smem;                           // [group][split_len]
    float* s_out = smem + group * split_len;         // [group][HD]
    __shared__ float s_max[G], s_sum[G];

    const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int start = split * split_len, end = min(p.seqlens_k[b], start + split_len);
    const int32_t* table =
        p.paged.block_table + static_cast<int64_t>(b) * p.paged.block_table_stride;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int dim0 = (lane % kLanesPerKey) * kElems;
    const int slot0 = warp * kKeysPerWarp + lane / kLanesPerKey;  // key slot within a step
    const float scale_log2 = p.softmax_scale * 1.4426950408889634f;

    float q[G][kElems];
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int c = 0; c < kElems; c += 8) {
            float x[8] = {};
            if (g < group) {
                const int64_t off =
                    (static_cast<int64_t>(b) * p.num_heads + kvh * group + g) * HD + dim0 + c;
                const uint4 raw =
                    __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.q) + off));
                if (p.dtype == Dtype::kF16)
                    widen<KvFormat::kF16>(raw, x);
                else
                    widen<KvFormat::kBf16>(raw, x);
            }
#pragma unroll
            for (int i = 0; i < 8; ++i) q[g][c + i] = x[i] * scale_log2;
        }
    }
    for (int i = threadIdx.x; i < group * HD; i += kDecodeThreads) s_out[i] = 0.f;

    // Pass 1: scores (log2 units) of every key of the slice into shared memory.
    for (int k0 = start; k0 < end; k0 += kKeysPerStep * kDecodeUnroll) {
        DecodeSlot sl[kDecodeUnroll];
        uint4 raw[kDecodeUnroll];
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            sl[u] = decode_slot<F>(p, table, kvh, k0 + u * kKeysPerStep + slot0, end, dim0);
            raw[u] = load16<F>(p.paged.k_cache, sl[u]);
        }
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            float x[kElems];
            widen<F>(raw[u], x);
            const int i = k0 + u * kKeysPerStep + slot0 - start;
#pragma unroll
            for (int g = 0; g < G; ++g) {
                float d = 0.f;
#pragma unroll
                for (int e = 0; e < kElems; ++e) d += q[g][e] * x[e];
#pragma unroll
                for (int off = kLanesPerKey / 2; off > 0; off /= 2)
                    d += __shfl_xor_sync(0xffffffffu, d, off);
                if (g < group && sl[u].valid && lane % kLanesPerKey == 0)
                    s_score[g * split_len + i] = d * sl[u].k_scale;
            }
        }
    }
    __syncthreads();

    // Softmax over the slice: warp g handles query head g.
    const int n = end - start;
    for (int g = warp; g < group; g += kDecodeThreads / 32) {
        float mx = -INFINITY;
        for (int i = lane; i < n; i += 32) mx = fmaxf(mx, s_score[g * split_len + i]);
        for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        float sum = 0.f;
        for (int i = lane; i < n; i += 32) {
            const float e = exp2f(s_score[g * split_len + i] - mx);
            s_score[g * split_len + i] = e;
            sum += e;
        }
        for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        if (lane == 0) {
            s_max[g] = mx;
            s_sum[g] = sum;
        }
    }
    __syncthreads();

    // Pass 2: weighted sum of V rows.
    float acc[G][kElems] = {};
    for (int k0 = start; k0 < end; k0 += kKeysPerStep * kDecodeUnroll) {
        DecodeSlot sl[kDecodeUnroll];
        uint4 raw[kDecodeUnroll];
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            sl[u] = decode_slot<F>(p, table, kvh, k0 + u * kKeysPerStep + slot0, end, dim0);
            raw[u] = load16<F>(p.paged.v_cache, sl[u]);
        }
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            if (!sl[u].valid) continue;
            float x[kElems];
            widen<F>(raw[u], x);
            const int i = k0 + u * kKeysPerStep + slot0 - start;
#pragma unroll
            for (int g = 0; g < G; ++g) {
                const float w = g < group ? s_score[g * split_len + i] * sl[u].v_scale : 0.f;
#pragma unroll
                for (int e = 0; e < kElems; ++e) acc[g][e] += w * x[e];
            }
        }
    }
    // Reduce over the key slots of a warp, then across warps through shared atomics.
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int e = 0; e < kElems; ++e) {
#pragma unroll
            for (int off = kLanesPerKey; off < 32; off *= 2)
                acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], off);
            if (g < group && lane < kLanesPerKey) atomicAdd(&s_out[g * HD + dim0 + e], acc[g][e]);
        }
    }
    __syncthreads();

    for (int i = threadIdx.x; i < group * HD; i += kDecodeThreads) {
        const int g = i / HD, d = i % HD;
        const int64_t row =
            (static_cast<int64_t>(b) * p.num_heads + kvh * group + g) * gridDim.x + split;
        const float sum = s_sum[g];
        o_part[row * HD + d] = n > 0 && sum > 0.f ? s_out[i] / sum : 0.f;
        if (d == 0) lse_part[row] = n > 0 && sum > 0.f ? s_max[g] + log2f(sum) : -INFINITY;
    }
}

// Merges the splits of one (sequence, head): out = sum_s w_s o_s with w_s = 2^(lse_s - lse).
template <class T>
__global__ void decode_combine_kernel(const DecodeParams p, int num_splits, const float* o_part,
                                      const float* lse_part) {
    const int64_t row = blockIdx.x;  // b * num_heads + h
    const float* lse = lse_part + row * num_splits;
    float mx = -INFINITY;
    for (int s = 0; s < num_splits; ++s) mx = fmaxf(mx, lse[s]);
    float total = 0.f;
    for (int s = 0; s < num_splits; ++s) total += mx == -INFINITY ? 0.f : exp2f(lse[s] - mx);
    const float inv = total > 0.f ? 1.f / total : 0.f;
    for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
        float v = 0.f;
        for (int s = 0; s < num_splits; ++s)
            if (lse[s] != -INFINITY)
                v += exp2f(lse[s] - mx) * o_part[(row * num_splits + s) * p.head_dim + d];
        static_cast<T*>(p.o)[row * p.head_dim + d] = T(v * inv);
    }
    if (threadIdx.x == 0 && p.lse != nullptr)
        p.lse[row] = total > 0.f ? (mx + log2f(total)) * 0.6931471805599453f : -INFINITY;
}

}  // namespace vela::cuda::detail
