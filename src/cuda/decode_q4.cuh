#pragma once
// KIVI 4-bit K/V in the decode kernel (KvFormat::kQ4): a warp widens each staged tile of codes
// into fp16 K and V tiles of its own, in the 16-bit layout, and the 16-bit fragment code runs on
// them. value = min + code * scale in one fp16 fma (the code and the product exact: one rounding).
// K uses the (scale, min) of each channel of its block, V those of each group of its row; keys
// of the query's own open block come from the block's fp16 residual instead (PagedKv).
#include <cuda_fp16.h>

#include "cuda/decode_frag.cuh"

namespace vela::cuda::detail {

// The 8 values of a packed code word (byte i: value i low, value i + 4 high) as exact fp16
// pairs (0, 1), (2, 3), (4, 5), (6, 7): 0x64XX is the fp16 1024 + XX.
__device__ __forceinline__ void q4_codes(uint32_t w, __half2 (&c)[4]) {
    const uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
    const uint32_t r[4] = {__byte_perm(lo, 0x64646464u, 0x4140), __byte_perm(lo, 0x64646464u, 0x4342),
                           __byte_perm(hi, 0x64646464u, 0x4140), __byte_perm(hi, 0x64646464u, 0x4342)};
    const __half2 bias = __float2half2_rn(1024.f);
#pragma unroll
    for (int i = 0; i < 4; ++i) c[i] = __hsub2(*reinterpret_cast<const __half2*>(&r[i]), bias);
}

// What a CTA's keys of Q4 need beyond the staged tiles: its warp's scratch, the V groups, and the
// query's own open block (keys from `residual_from` on read `residual`, rows of head_dim fp16
// values from that block's first key; nullptr when the block is closed).
struct Q4Keys {
    char* scratch;
    int groups;  // V (scale, min) pairs a row
    int residual_from;
    const __half* residual;
};

// Widens the staged tile at `stage` (first key tile0) into the warp's scratch: K at scratch, V
// after it, both fp16 tiles in the layout of tile_offset<kF16, HD>. Lane pairs own a row, each
// half of its dims.
template <int HD>
__device__ __forceinline__ void q4_widen_tile(const char* stage, const Q4Keys& q4, int tile0,
                                              int lane) {
    using S = DecodeShape<KvFormat::kQ4, HD>;
    constexpr int kWords = HD / 16;  // code words (8 values) in half a row
    const int row = lane >> 1, half = lane & 1;
    const char* k_codes = stage + row * (HD / 2) + half * (HD / 4);
    const char* v_codes = k_codes + S::kTileBytes;
    const auto* k_pairs = reinterpret_cast<const __half*>(stage + 2 * S::kTileBytes);
    const auto* v_pairs = reinterpret_cast<const __half2*>(stage + 2 * S::kTileBytes + 4 * HD) +
                          row * (HD / 32);
    const int group = HD / q4.groups;
    char* k_out = q4.scratch;
    char* v_out = q4.scratch + kDecodeTile * HD * 2;
    const bool from_residual = q4.residual != nullptr && tile0 >= q4.residual_from;
    const __half* res_row = from_residual ? q4.residual + (tile0 - q4.residual_from + row) * HD
                                          : nullptr;
#pragma unroll
    for (int w4 = 0; w4 < kWords; w4 += 4) {
        const uint4 kq = *reinterpret_cast<const uint4*>(k_codes + 4 * w4);
        const uint4 vq = *reinterpret_cast<const uint4*>(v_codes + 4 * w4);
        const uint32_t kw[4] = {kq.x, kq.y, kq.z, kq.w}, vw[4] = {vq.x, vq.y, vq.z, vq.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int unit = half * kWords + w4 + j;  // dims 8 unit .. 8 unit + 7
            const int at = tile_offset<KvFormat::kF16, HD>(row, unit);
            __half2 c[4], out[4];
            if (from_residual) {
                *reinterpret_cast<uint4*>(k_out + at) =
                    *reinterpret_cast<const uint4*>(res_row + 8 * unit);
            } else {
                q4_codes(kw[j], c);
                const uint4 su = *reinterpret_cast<const uint4*>(k_pairs + 8 * unit);
                const uint4 mu = *reinterpret_cast<const uint4*>(k_pairs + HD + 8 * unit);
                const auto* sc = reinterpret_cast<const __half2*>(&su);
                const auto* mn = reinterpret_cast<const __half2*>(&mu);
#pragma unroll
                for (int i = 0; i < 4; ++i) out[i] = __hfma2(c[i], sc[i], mn[i]);
                *reinterpret_cast<uint4*>(k_out + at) = *reinterpret_cast<const uint4*>(out);
            }
            q4_codes(vw[j], c);
            const __half2 sm = v_pairs[8 * unit / group];  // (scale, min)
            const __half2 sc = __low2half2(sm), mn = __high2half2(sm);
#pragma unroll
            for (int i = 0; i < 4; ++i) out[i] = __hfma2(c[i], sc, mn);
            *reinterpret_cast<uint4*>(v_out + at) = *reinterpret_cast<const uint4*>(out);
        }
    }
}

}  // namespace vela::cuda::detail
