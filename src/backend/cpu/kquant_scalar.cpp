// Portable K-quant kernels against 8-bit activation super-blocks (ActBlockK): the reference the
// SIMD kernels are tested against and the fallback where an ISA has no kernel for a type.
//
// Every K-quant weight is w = d * sc_s * u - dmin * m_s (u a small code, sc_s/m_s integer
// sub-block scale/minimum, Q3_K/Q6_K without a minimum but with an offset code), so with
// x = dx * q one super-block's dot is dx * (d * sum_s sc_s * dot(u_s, q_s) - dmin * sum_s m_s *
// sum(q_s)): integer sums, and sum(q_s) comes from the activation's bsums. Only the two final
// products are in float, which is why the SIMD kernels can match this one to float rounding.
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kquant_scales.h"
#include "core/fp16.h"

namespace vela::cpu {
namespace {

template <class Block>
Block load_block(const uint8_t* p) {
    Block b;
    std::memcpy(&b, p, sizeof b);
    return b;
}

// 2-bit code of element e of a Q2_K/Q3_K super-block: four 2-bit planes per 32 bytes of qs.
int code2(const uint8_t* qs, int e) {
    return (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

float dot_q2_k(const uint8_t* p, const ActBlockK& x) {
    const auto b = load_block<BlockQ2_K>(p);
    int32_t isum = 0, msum = 0;
    for (int s = 0; s < 16; ++s) {
        int32_t dot = 0;
        for (int e = 16 * s; e < 16 * s + 16; ++e) dot += code2(b.qs, e) * x.q[e];
        isum += (b.scales[s] & 0x0F) * dot;
        msum += (b.scales[s] >> 4) * x.bsums[s];
    }
    return x.d * (fp16_to_fp32(b.d) * static_cast<float>(isum) -
                  fp16_to_fp32(b.dmin) * static_cast<float>(msum));
}

// Q3_K scale s (0..15): low 4 bits from scales[s % 8] (nibble s / 8), high 2 bits from
// scales[8 + s % 4] (pair s / 4), biased by 32.
int q3k_scale(const uint8_t* sc, int s) {
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0F;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 0x03;
    return (lo | (hi << 4)) - 32;
}

float dot_q3_k(const uint8_t* p, const ActBlockK& x) {
    const auto b = load_block<BlockQ3_K>(p);
    int32_t isum = 0;
    for (int s = 0; s < 16; ++s) {
        int32_t dot = 0;
        for (int e = 16 * s; e < 16 * s + 16; ++e) {
            const int high = (b.hmask[e % 32] >> (e / 32)) & 1;
            dot += (code2(b.qs, e) + 4 * high - 4) * x.q[e];
        }
        isum += q3k_scale(b.scales, s) * dot;
    }
    return x.d * fp16_to_fp32(b.d) * static_cast<float>(isum);
}

// Q4_K and Q5_K: sub-blocks of 32, nibble j % 2 of qs[(j / 2) * 32 + l]; Q5_K adds bit j of
// qh[l] as bit 4.
template <class Block, bool kFive>
float dot_q45_k(const uint8_t* p, const ActBlockK& x) {
    const auto b = load_block<Block>(p);
    const Q4KScales sm = unpack_q4k_scales(b.scales);
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
        int32_t dot = 0;
        for (int l = 0; l < 32; ++l) {
            int u = (b.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F;
            if constexpr (kFive) u |= ((b.qh[l] >> j) & 1) << 4;
            dot += u * x.q[32 * j + l];
        }
        const auto sc = static_cast<int32_t>((sm.scales >> (8 * j)) & 0xFF);
        const auto mn = static_cast<int32_t>((sm.mins >> (8 * j)) & 0xFF);
        isum += sc * dot;
        msum += mn * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
    }
    return x.d * (fp16_to_fp32(b.d) * static_cast<float>(isum) -
                  fp16_to_fp32(b.dmin) * static_cast<float>(msum));
}

// Q6_K: element r of half h (0..127): low 4 bits in nibble r / 64 of ql[64h + r % 64], high 2
// bits in pair r / 32 of qh[32h + r % 32]; code - 32, one int8 scale per 16.
float dot_q6_k(const uint8_t* p, const ActBlockK& x) {
    const auto b = load_block<BlockQ6_K>(p);
    int32_t isum = 0;
    for (int s = 0; s < 16; ++s) {
        int32_t dot = 0;
        for (int e = 16 * s; e < 16 * s + 16; ++e) {
            const int h = e / 128, r = e % 128;
            const int lo = (b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
            const int hi = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
            dot += ((lo | (hi << 4)) - 32) * x.q[e];
        }
        isum += b.scales[s] * dot;
    }
    return x.d * fp16_to_fp32(b.d) * static_cast<float>(isum);
}

template <float (*Dot)(const uint8_t*, const ActBlockK&), size_t kBytes>
void tile(const KTileArgs& a) {
    for (int r = 0; r < a.nr; ++r) {
        for (int c = 0; c < a.nc; ++c) {
            const uint8_t* w = a.w + r * a.w_stride;
            const ActBlockK* x = a.x + c * a.x_stride;
            float acc = 0.0f;
            for (int64_t b = 0; b < a.nb; ++b) acc += Dot(w + b * kBytes, x[b]);
            a.y[c * a.ldy + r] = acc;
        }
    }
}

void quantize_act(const float* x, ActBlockK* out, int64_t k) {
    for (int64_t b = 0; b < k / kQKK; ++b, x += kQKK) {
        float amax = 0.0f;
        for (int j = 0; j < kQKK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int s = 0; s < 16; ++s) {
            int32_t sum = 0;
            for (int j = 16 * s; j < 16 * s + 16; ++j) {
                // Round half to even, as the SIMD conversions do, so every path sees the same q.
                const auto q = static_cast<int32_t>(std::nearbyint(x[j] * id));
                out[b].q[j] = static_cast<int8_t>(q);
                sum += q;
            }
            out[b].bsums[s] = static_cast<int16_t>(sum);
        }
        out[b].d = d;
    }
}

}  // namespace

KQuantKernels kquant_kernels_scalar() {
    return {
        1,
        quantize_act,
        {tile<dot_q2_k, sizeof(BlockQ2_K)>, tile<dot_q3_k, sizeof(BlockQ3_K)>,
         tile<dot_q45_k<BlockQ4_K, false>, sizeof(BlockQ4_K)>,
         tile<dot_q45_k<BlockQ5_K, true>, sizeof(BlockQ5_K)>, tile<dot_q6_k, sizeof(BlockQ6_K)>}};
}

}  // namespace vela::cpu
