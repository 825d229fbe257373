#pragma once
// Shared-memory tile layout and tensor-core fragment loaders of the decode kernel. A warp's tile
// is 16 keys of K and 16 of V in their stored format (rows of HD values, 16-byte units XOR-
// swizzled per row so ldmatrix / LDS phases hit distinct banks). 16-bit formats feed mma.sync
// through ldmatrix; 8-bit formats (INT8, FP8-e4m3) are widened to fp16 pairs in registers, once
// per element, so the arithmetic per byte stays far below what memory bandwidth allows.
//
// Scores use S = Q K^T with M = the CTA's query columns (the group's heads, rows 8-15 zero
// padding; or 16 columns of several query rows, kQT = 2) and N = keys. The output is computed
// transposed, O^T = V^T P^T with M = 16 output dims and N = 8 columns a tile: P^T is the B
// operand straight from the score accumulators, and no accumulator holds padding (half the mma
// and half the registers of O = P V with padded heads). For 8-bit K the head
// dimension (the contraction) is permuted so each lane widens 16 contiguous bytes: lane quad c of
// mma step s covers dims 64 (s / 4) + 16 c + 4 (s % 4) + {0, 1} (a0/b0) and + {2, 3} (a2/b1);
// Q is loaded in the same order. For 8-bit V the output dims of mma tile mt are permuted instead
// (out_dim below), so each lane reads 4-byte words and transposes them with byte permutes.
#include <cuda_fp8.h>

#include <cmath>
#include <type_traits>

#include "cuda/attention_params.h"
#include "cuda/mma.cuh"

namespace vela::cuda::detail {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * 32;
constexpr int kDecodeTile = 16;  // keys per warp step: one k-step of P V
constexpr int kDecodeRows = 8;   // query columns per output mma tile (group <= 8)

// kCtasPerSm: 2 for every format, 3 (shallower rings) for 8-bit KV on long contexts, see
// decode.cu.
template <KvFormat F, int HD, int kCtasPerSm = 2>
struct DecodeShape {
    static constexpr bool kQuant = F == KvFormat::kInt8 || F == KvFormat::kFp8E4M3;  // 8-bit
    // KIVI 4-bit: a warp widens each staged tile into fp16 tiles of its own (kScratchBytes, the
    // 16-bit layout) and runs the 16-bit fragment code on them (decode_q4.cuh).
    static constexpr bool kQ4 = F == KvFormat::kQ4;
    static constexpr int kElemBytes = kQuant || kQ4 ? 1 : 2;  // strides count bytes of codes
    static constexpr int kUnits = kQ4 ? HD / 32 : HD * kElemBytes / 16;  // 16-byte units a row
    static constexpr int kTileBytes = kDecodeTile * kUnits * 16;
    // Q4: the tile's block's K (scale, min) of every channel, then each row's V (scale, min)
    // pairs (at most HD / 32 groups).
    static constexpr int kQ4ParamBytes = kQ4 ? 4 * HD + kDecodeTile * HD / 32 * 4 : 0;
    static constexpr int kScratchBytes = kQ4 ? 2 * kDecodeTile * HD * 2 : 0;
    // K tile, V tile, then (quantised) 16 K scales and 16 V scales, or Q4's pairs.
    static constexpr int kStageBytes =
        2 * kTileBytes + (kQuant ? 2 * kDecodeTile * 4 : 0) + kQ4ParamBytes;
    // K/V stage bytes per CTA: at 2 CTAs per SM 3 stages of 16-bit KV, 5 of 8-bit; at 3, 4 of
    // 8-bit. (A block-id ring loaded kStages tiles ahead instead of one does not help: a warp is
    // bound by its own instruction latency, ~4.6 cycles an instruction at 2 warps per
    // scheduler, Nsight Compute on H100. Yet 4 CTAs per SM, 16 warps with 3 stages each, ran
    // 1.00x at 8-bit batch 8 / 4k and 0.74-0.93x at batch 1 / 16k-32k on H200.)
    static constexpr int kStageBudget = (kCtasPerSm == 2 ? 96 : 66) * 1024;
    static constexpr int kMinCtasPerSm = kCtasPerSm;  // registers capped to match
    static constexpr int kStagesFit =
        (kStageBudget - kDecodeWarps * kScratchBytes) / (kDecodeWarps * kStageBytes);
    static constexpr int kStages = kStagesFit < 8 ? kStagesFit : 8;
    static constexpr int kMergeBytes = kDecodeWarps * kDecodeRows * (HD + 6) * 4;
    // Each warp's ring, then (Q4) each warp's scratch tiles.
    static constexpr int kPipeBytes = kDecodeWarps * (kStages * kStageBytes + kScratchBytes);
    static constexpr int kSmem = kPipeBytes > kMergeBytes ? kPipeBytes : kMergeBytes;
    using T = std::conditional_t<F == KvFormat::kBf16, __nv_bfloat16, __half>;  // mma inputs
    static_assert(kStages >= 2 && kUnits >= (kQ4 ? 2 : 4) && kUnits <= 32);
};

// Byte offset of 16-byte unit `unit` of tile row `row`. 16-bit rows: unit ^ (row & 7) spreads an
// ldmatrix phase (8 rows, one unit) over all banks. 8-bit rows: bit 2 follows row parity (K: a
// quarter warp reads rows 2k, 2k+1) and bits 1-2 follow row / 2 (V: rows 2c + const, c = 0..3).
template <KvFormat F, int HD>
__device__ __forceinline__ int tile_offset(int row, int unit) {
    using S = DecodeShape<F, HD>;
    if constexpr (S::kQ4) return (row * S::kUnits + unit) * 16;  // read by plain loads
    const int sw = S::kQuant ? ((row & 1) << 2) ^ (((row >> 1) & 3) << 1) : row & 7;
    return row * S::kUnits * 16 + ((unit ^ sw) & (S::kUnits - 1)) * 16;
}

// Head dim of the first of the two Q values in register half (0: a0, 1: a2) of mma step s.
template <KvFormat F>
__device__ __forceinline__ int q_dim(int s, int half, int c) {
    if constexpr (DecodeShape<F, 64>::kQuant) return 64 * (s / 4) + 16 * c + 4 * (s % 4) + 2 * half;
    return 16 * s + 2 * c + 8 * half;
}

// Head dim of output row g (half 0) or g + 8 (half 1) of output mma tile mt (16 dims x 8 heads).
template <KvFormat F>
__device__ __forceinline__ int out_dim(int mt, int half, int g) {
    if constexpr (DecodeShape<F, 64>::kQuant) return 32 * (mt / 2) + 4 * g + 2 * (mt % 2) + half;
    return 16 * mt + g + 8 * half;
}

// Offset of INT8 K and V as widened (kInt8Bias + x): exact in fp16, and no subtraction per
// element. The scores subtract kInt8Bias * sum(q) once per key; the output kInt8Bias * sum(P)
// once per slice (DecodeState::unbias).
constexpr float kInt8Bias = 1152.f;

// Widens 4 stored 8-bit values to two fp16 pairs: bytes 0,1 -> lo, bytes 2,3 -> hi (exact).
// INT8 values come out as x + kInt8Bias.
template <KvFormat F>
__device__ __forceinline__ void widen4(uint32_t w, uint32_t& lo, uint32_t& hi) {
    if constexpr (F == KvFormat::kInt8) {
        // 0x64XX is the fp16 1024 + XX; biasing the int8 by 128 makes XX unsigned.
        const uint32_t u = w ^ 0x80808080u;
        lo = __byte_perm(u, 0x64646464u, 0x4140);
        hi = __byte_perm(u, 0x64646464u, 0x4342);
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
        asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.rn.f16x2.e4m3x2 %0, l;\n"
            " cvt.rn.f16x2.e4m3x2 %1, h;\n}"
            : "=r"(lo), "=r"(hi)
            : "r"(w));
#else
        const __half2_raw a =
            __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w & 0xffffu), __NV_E4M3);
        const __half2_raw b =
            __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w >> 16), __NV_E4M3);
        lo = a.x | (static_cast<uint32_t>(a.y) << 16);
        hi = b.x | (static_cast<uint32_t>(b.y) << 16);
#endif
    }
}

// The A fragment of k-step st: rows 0-7 from column tile 0 (a0/a2), rows 8-15 from tile 1 or
// zero.
template <int HD, int kQT>
__device__ __forceinline__ void q_fragment(const uint32_t (&qa)[kQT][HD / 16][2], int st,
                                           uint32_t (&a)[4]) {
    a[0] = qa[0][st][0];
    a[2] = qa[0][st][1];
    a[1] = kQT > 1 ? qa[kQT - 1][st][0] : 0u;
    a[3] = kQT > 1 ? qa[kQT - 1][st][1] : 0u;
}

// s[nt] += Q K^T for keys 8 nt .. 8 nt + 7 of the tile (qa: a0/a2 of each k-step of each column
// tile); s[nt][0..1] are column r = lane / 4, s[nt][2..3] column r + 8. INT8 scores come out
// offset by kInt8Bias * sum(q).
template <KvFormat F, int HD, int kQT>
__device__ __forceinline__ void tile_scores(const char* kt, const uint32_t (&qa)[kQT][HD / 16][2],
                                            float (&s)[2][4], int lane) {
    using S = DecodeShape<F, HD>;
    using T = typename S::T;
    static_assert(kQT == 1 || kQT == 2);
    if constexpr (!S::kQuant) {
        const int m = lane >> 3, row = (m >> 1) * 8 + (lane & 7);
#pragma unroll
        for (int st = 0; st < HD / 16; ++st) {
            uint32_t b[4], a[4];
            ldmatrix_x4(b, kt + tile_offset<F, HD>(row, 2 * st + (m & 1)));
            q_fragment<HD, kQT>(qa, st, a);
            mma_16816<T>(s[0], a, b[0], b[1]);
            mma_16816<T>(s[1], a, b[2], b[3]);
        }
    } else {
        const int r = lane >> 2, c = lane & 3;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
            for (int j = 0; j < HD / 64; ++j) {
                const uint4 w =
                    *reinterpret_cast<const uint4*>(kt + tile_offset<F, HD>(8 * nt + r, 4 * j + c));
                uint32_t h[8];
                widen4<F>(w.x, h[0], h[1]);
                widen4<F>(w.y, h[2], h[3]);
                widen4<F>(w.z, h[4], h[5]);
                widen4<F>(w.w, h[6], h[7]);
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    uint32_t a[4];
                    q_fragment<HD, kQT>(qa, 4 * j + t, a);
                    mma_16816<T>(s[nt], a, h[2 * t], h[2 * t + 1]);
                }
            }
        }
    }
}

// o[qt]^T += V^T P^T for the tile; pb[qt] is P^T (k = the tile's 16 keys, n = the 8 columns of
// tile qt) as a B fragment: (keys 2c, 2c+1 ; 2c+8, 2c+9) of column g, exactly the layout of the
// score accumulators. One V fragment feeds every column tile.
template <KvFormat F, int HD, int kQT>
__device__ __forceinline__ void tile_values(const char* vt, const uint32_t (&pb)[kQT][2],
                                            float (&o)[kQT][HD / 16][4], int lane) {
    using S = DecodeShape<F, HD>;
    using T = typename S::T;
    if constexpr (!S::kQuant) {
        // ldmatrix.trans of 8 x 8 blocks (keys x dims): matrices 0-3 = keys 0-7 / dims +0,
        // keys 0-7 / dims +8, keys 8-15 / dims +0, keys 8-15 / dims +8 = a0, a1, a2, a3.
        const int m = lane >> 3, row = (m >> 1) * 8 + (lane & 7);
#pragma unroll
        for (int mt = 0; mt < HD / 16; ++mt) {
            uint32_t a[4];
            ldmatrix_x4_trans(a, vt + tile_offset<F, HD>(row, 2 * mt + (m & 1)));
#pragma unroll
            for (int qt = 0; qt < kQT; ++qt) mma_16816<T>(o[qt][mt], a, pb[qt][0], pb[qt][1]);
        }
    } else {
        const int r = lane >> 2, c = lane & 3;
#pragma unroll
        for (int j = 0; j < HD / 32; ++j) {
            const int unit = 2 * j + (r >> 2), byte = 4 * (r & 3);
            uint32_t x[4];  // keys 2c, 2c+1, 2c+8, 2c+9; dims 32 j + 4 r .. + 3
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int row = 2 * c + (k & 1) + 8 * (k >> 1);
                x[k] =
                    *reinterpret_cast<const uint32_t*>(vt + tile_offset<F, HD>(row, unit) + byte);
            }
            // Byte pairs (key 2c, key 2c + 1) or (2c + 8, 2c + 9) of dims 2h and 2h + 1, widened
            // straight into A: a0 / a1 = rows g / g + 8 (dims 2h, 2h + 1) of keys 2c, 2c + 1; a2 /
            // a3 the same of keys 2c + 8, 2c + 9. INT8 V stays biased by kInt8Bias: the bias
            // times the sum of P comes off once at the end (see consume_tiles).
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const uint32_t sel = h == 0 ? 0x5140u : 0x7362u;
                uint32_t a[4];
                widen4<F>(__byte_perm(x[0], x[1], sel), a[0], a[1]);
                widen4<F>(__byte_perm(x[2], x[3], sel), a[2], a[3]);
#pragma unroll
                for (int qt = 0; qt < kQT; ++qt)
                    mma_16816<T>(o[qt][2 * j + h], a, pb[qt][0], pb[qt][1]);
            }
        }
    }
}

// One warp's running softmax state per column tile qt: output accumulators o^T (tile mt: rows =
// out_dim(mt, 0 / 1, g), columns = 8 qt + 2c, 8 qt + 2c + 1: o[qt][mt][i] is column 8 qt + 2c +
// i % 2), and for column 8 qt + r (r = lane / 4) the running max m (log2 units) and this lane's
// part of the running sum l. INT8 V enters the P V product biased by kInt8Bias, so o carries
// kInt8Bias * p_sum on top, where p_sum (same layout as an o tile) sums the V-scaled P as
// rounded for the mma; unbias() takes it off.
template <int HD, int kQT = 1>
struct DecodeState {
    float o[kQT][HD / 16][4] = {};
    float p_sum[kQT][4] = {};
    float m[kQT], l[kQT];

    __device__ DecodeState() {
#pragma unroll
        for (int qt = 0; qt < kQT; ++qt) {
            m[qt] = -INFINITY;
            l[qt] = 0.f;
        }
    }
    __device__ void unbias() {
#pragma unroll
        for (int qt = 0; qt < kQT; ++qt)
#pragma unroll
            for (int mt = 0; mt < HD / 16; ++mt)
#pragma unroll
                for (int i = 0; i < 4; ++i) o[qt][mt][i] -= kInt8Bias * p_sum[qt][i];
    }
};

}  // namespace vela::cuda::detail
