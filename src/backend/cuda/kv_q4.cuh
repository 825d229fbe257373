#pragma once
// Device helpers of KIVI's 4-bit KV (kv_ops.h, KvCode::Q4), shared by the append kernels of
// kv_ops.cu and kv_q4.cu. Every rounding is kv/kv_quant.cpp's, so a block holds the bytes the
// CPU's Q4 storage would.
#include <cuda_fp16.h>

#include "backend/cuda/kv_ops.h"

namespace vela::cuda_backend::q4 {

constexpr unsigned kFull = 0xffffffffu;

// KIVI's range of values in [lo, hi] as fp16 (kv_quant.cpp's q4_scale_min): min rounded down,
// scale = (hi - min) / 15 rounded up; NaN in, NaN out.
__device__ __forceinline__ void q4_scale_min(float lo, float hi, bool nan, __half& scale,
                                             __half& min) {
    if (nan) {
        scale = min = __ushort_as_half(0x7e00);
        return;
    }
    min = __float2half_rd(lo);
    scale = __float2half_ru((hi - __half2float(min)) / 15.0f);
}

// x's code against (scale, min) as stored: round to nearest, ties to even; NaN gives 0.
__device__ __forceinline__ uint32_t q4_code(float x, float scale, float min) {
    const float r = scale > 0.f ? rintf((x - min) / scale) : 0.f;
    return static_cast<uint32_t>(fminf(fmaxf(r, 0.f), 15.f));  // fmaxf(NaN, 0) = 0
}

// Byte offset, in a block, of (kv head, row)'s codes.
__device__ __forceinline__ int64_t code_offset(const KvCacheShape& s, int64_t head, int64_t row) {
    return (head * s.block_size + row) * (s.head_dim / 2);
}

// One warp stores the V row x[0, hd) of (slot, head): per group, the (scale, min) pair and the
// codes, packed 8 values to 4 bytes (byte i: value i low, value i + 4 high).
__device__ inline void store_q4_value_row(const float* x, void* cache, const KvCacheShape& s, int64_t slot,
                                   int64_t head, int lane) {
    const int64_t blk = slot / s.block_size, off = slot % s.block_size, hd = s.head_dim;
    char* block = static_cast<char*>(cache) + blk * s.block_bytes;
    auto* codes = reinterpret_cast<uint8_t*>(block + code_offset(s, head, off));
    const int64_t groups = (hd + s.group - 1) / s.group;
    auto* params = reinterpret_cast<__half*>(block + s.scale_offset) +
                   (head * s.block_size + off) * groups * 2;
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t begin = g * s.group, end = min(hd, begin + s.group);
        float lo = INFINITY, hi = -INFINITY;
        bool nan = false;
        for (int64_t d = begin + lane; d < end; d += 32) {
            const float v = x[d];
            nan = nan || v != v;
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
        }
        for (int o = 16; o > 0; o >>= 1) {
            lo = fminf(lo, __shfl_xor_sync(kFull, lo, o));
            hi = fmaxf(hi, __shfl_xor_sync(kFull, hi, o));
        }
        __half scale, mn;
        q4_scale_min(lo, hi, __any_sync(kFull, nan), scale, mn);
        if (lane == 0) {
            params[2 * g] = scale;
            params[2 * g + 1] = mn;
        }
        const float sf = __half2float(scale), mf = __half2float(mn);
        // head_dim and the group are multiples of 32: every lane runs every iteration.
        for (int64_t d = begin + lane; d < end; d += 32) {
            const uint32_t c = q4_code(x[d], sf, mf);
            const uint32_t high = __shfl_down_sync(kFull, c, 4);  // value d + 4's code
            if (d % 8 < 4) codes[d / 8 * 4 + d % 4] = static_cast<uint8_t>(c | high << 4);
        }
    }
}

// One warp stores the K row x[0, hd) of (slot, head) in fp16 into its block's residual; a block
// without one (a closed block whose last row is written again) keeps its codes.
__device__ inline void store_q4_key_row(const float* x, const KvResidual& r, const KvCacheShape& s,
                                 int64_t slot, int64_t head, int lane) {
    const int64_t blk = slot / s.block_size, off = slot % s.block_size;
    const int32_t at = r.slot_of[blk];
    if (at < 0) return;
    __half* dst = reinterpret_cast<__half*>(r.keys) +
                  ((at * s.n_kv_heads + head) * s.block_size + off) * s.head_dim;
    for (int64_t d = lane; d < s.head_dim; d += 32) dst[d] = __float2half_rn(x[d]);
}

}  // namespace vela::cuda_backend::q4
