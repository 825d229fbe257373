// Portable kernels: the fallback on CPUs without AVX2 and the reference the SIMD paths are
// tested against. Same arithmetic as the SIMD kernels (8-bit activations, integer block dots),
// only the float summation order differs.
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/fp16.h"

namespace vela::cpu {
namespace {

// A weight block as w_i = dw * u[i] + cw.
struct DecodedBlock {
    int32_t u[32];
    float dw;
    float cw;
};

template <Q8Kind K>
void decode(const uint8_t* p, DecodedBlock& out) {
    if constexpr (K == Q8Kind::Q8_0) {
        BlockQ8_0 b;
        std::memcpy(&b, p, sizeof b);
        out.dw = fp16_to_fp32(b.d);
        out.cw = 0.0f;
        for (int j = 0; j < 32; ++j) out.u[j] = b.qs[j];
        return;
    } else {
        constexpr bool kFive = K == Q8Kind::Q5_0 || K == Q8Kind::Q5_1;
        constexpr bool kMin = K == Q8Kind::Q4_1 || K == Q8Kind::Q5_1;
        constexpr size_t kHeader = (kMin ? 4 : 2) + (kFive ? 4 : 0);
        uint16_t d, m = 0;
        std::memcpy(&d, p, 2);
        if constexpr (kMin) std::memcpy(&m, p + 2, 2);
        uint32_t qh = 0;
        if constexpr (kFive) std::memcpy(&qh, p + (kMin ? 4 : 2), 4);
        const uint8_t* qs = p + kHeader;
        for (int j = 0; j < 16; ++j) {
            out.u[j] = (qs[j] & 0x0F) | static_cast<int32_t>(((qh >> j) & 1) << 4);
            out.u[j + 16] = (qs[j] >> 4) | static_cast<int32_t>(((qh >> (j + 16)) & 1) << 4);
        }
        out.dw = fp16_to_fp32(d);
        if constexpr (kMin) {
            out.cw = fp16_to_fp32(m);
        } else {
            out.cw = -(kFive ? 16.0f : 8.0f) * out.dw;
        }
    }
}

constexpr size_t block_bytes(Q8Kind k) {
    constexpr size_t kBytes[] = {sizeof(BlockQ4_0), sizeof(BlockQ4_1), sizeof(BlockQ5_0),
                                 sizeof(BlockQ5_1), sizeof(BlockQ8_0)};
    return kBytes[static_cast<int>(k)];
}

template <Q8Kind K>
void tile(const TileArgs& a) {
    for (int r = 0; r < a.nr; ++r) {
        for (int c = 0; c < a.nc; ++c) {
            const uint8_t* w = a.w + r * a.w_stride;
            const ActBlock* x = a.x + c * a.x_stride;
            float acc = 0.0f;
            DecodedBlock blk;
            for (int64_t b = 0; b < a.nb; ++b) {
                decode<K>(w + b * block_bytes(K), blk);
                int32_t isum = 0;
                for (int j = 0; j < 32; ++j) isum += blk.u[j] * x[b].q[j];
                acc += blk.dw * x[b].d * static_cast<float>(isum) + blk.cw * x[b].s;
            }
            a.y[c * a.ldy + r] = acc;
        }
    }
}

void quantize_act(const float* x, ActBlock* out, int64_t k) {
    for (int64_t b = 0; b < k / 32; ++b, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; ++j) {
            // Round half to even, as the SIMD conversions do, so every path sees the same q.
            const int32_t q = static_cast<int32_t>(std::nearbyint(x[j] * id));
            out[b].q[j] = static_cast<int8_t>(q);
            sum += q;
        }
        out[b].d = d;
        out[b].s = d * static_cast<float>(sum);
    }
}

float dot_f32(const float* a, const float* b, int64_t k) {
    float acc = 0.0f;
    for (int64_t i = 0; i < k; ++i) acc += a[i] * b[i];
    return acc;
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t k) {
    for (int64_t i = 0; i < k; ++i) dst[i] = fp16_to_fp32(src[i]);
}

}  // namespace

const KernelSet& kernels_scalar() {
    static const KernelSet set = {
        1,
        {tile<Q8Kind::Q4_0>, tile<Q8Kind::Q4_1>, tile<Q8Kind::Q5_0>, tile<Q8Kind::Q5_1>,
         tile<Q8Kind::Q8_0>},
        quantize_act,
        dot_f32,
        f16_to_f32,
        nullptr,
        {},
        nullptr,
        kquant_kernels_scalar(),
    };
    return set;
}

}  // namespace vela::cpu
