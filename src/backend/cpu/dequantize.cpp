// Scalar dequantisation of every supported weight type: the reference for the tests and the
// weight-row decoder of the float matmul path. Layout facts follow the GGUF block formats
// (see quant_blocks.h).
#include <cstring>

#include "backend/cpu/ops.h"
#include "backend/cpu/quant_blocks.h"
#include "core/error.h"
#include "core/fp16.h"

namespace vela::cpu {
namespace {

float h2f(uint16_t h) {
    return fp16_to_fp32(h);
}

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Legacy 32-element types: element i < 16 is the low nibble of qs[i], i >= 16 the high nibble.
template <class Block, bool kFiveBit, bool kHasMin>
void dequant_legacy(const Block* b, float* y, int64_t nb, int offset) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = h2f(b[i].d);
        float m = 0.0f;
        if constexpr (kHasMin) m = h2f(b[i].m);
        uint32_t qh = 0;
        if constexpr (kFiveBit) qh = load_u32(b[i].qh);
        for (int j = 0; j < 16; ++j) {
            int lo = b[i].qs[j] & 0x0F;
            int hi = b[i].qs[j] >> 4;
            if constexpr (kFiveBit) {
                lo |= ((qh >> j) & 1) << 4;
                hi |= ((qh >> (j + 16)) & 1) << 4;
            }
            y[j] = d * static_cast<float>(lo - offset) + m;
            y[j + 16] = d * static_cast<float>(hi - offset) + m;
        }
    }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(b[i].qs[j]);
    }
}

void dequant_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQKK) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int e = 0; e < kQKK; ++e) {
            const int q = (b[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const uint8_t sc = b[i].scales[e / 16];
            y[e] = d * static_cast<float>(sc & 0x0F) * q - dmin * static_cast<float>(sc >> 4);
        }
    }
}

// Q3_K scale i (0..15): low 4 bits from scales[i % 8] (nibble i / 8), high 2 bits from
// scales[8 + i % 4] (pair i / 4), biased by 32.
int q3k_scale(const uint8_t* s, int i) {
    const int lo = (s[i % 8] >> (4 * (i / 8))) & 0x0F;
    const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 0x03;
    return (lo | (hi << 4)) - 32;
}

void dequant_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQKK) {
        const float d = h2f(b[i].d);
        for (int e = 0; e < kQKK; ++e) {
            const int lo = (b[i].qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const int high_clear = ((b[i].hmask[e % 32] >> (e / 32)) & 1) ^ 1;
            y[e] = d * static_cast<float>(q3k_scale(b[i].scales, e / 16) * (lo - 4 * high_clear));
        }
    }
}

// Q4_K/Q5_K 6-bit scale and min of sub-block j (0..7), packed in 12 bytes.
void k4_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
    if (j < 4) {
        sc = s[j] & 63;
        mn = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30);
        mn = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
    }
}

template <class Block, bool kFiveBit>
void dequant_q45_k(const Block* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQKK) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int j = 0; j < 8; ++j) {
            int sc, mn;
            k4_scale_min(b[i].scales, j, sc, mn);
            const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
            for (int l = 0; l < 32; ++l) {
                int q = (b[i].qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F;
                if constexpr (kFiveBit) q |= ((b[i].qh[l] >> j) & 1) << 4;
                y[j * 32 + l] = dl * static_cast<float>(q) - ml;
            }
        }
    }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQKK) {
        const float d = h2f(b[i].d);
        for (int e = 0; e < kQKK; ++e) {
            const int half = e / 128, r = e % 128;
            const int lo = (b[i].ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
            const int hi = (b[i].qh[half * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
            y[e] = d * static_cast<float>(b[i].scales[e / 16]) *
                   static_cast<float>((lo | (hi << 4)) - 32);
        }
    }
}

}  // namespace

bool supports_weight_type(DType type) {
    switch (type) {
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

void dequantize_row(DType type, const void* src, float* dst, int64_t k) {
    if (!supports_weight_type(type))
        fail("cpu backend: no kernel for weight type {}", dtype_name(type));
    const int64_t bs = dtype_info(type).block_size;
    if (k % bs != 0) {
        fail<InvalidArgument>(
            "cpu backend: row of {} elements is not a multiple of the {} block size {}", k,
            dtype_name(type), bs);
    }
    const int64_t nb = k / bs;
    switch (type) {
        case DType::F32:
            std::memcpy(dst, src, static_cast<size_t>(k) * sizeof(float));
            return;
        case DType::F16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < k; ++i) dst[i] = fp16_to_fp32(h[i]);
            return;
        }
        case DType::BF16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < k; ++i) dst[i] = bf16_to_fp32(h[i]);
            return;
        }
        case DType::Q4_0:
            return dequant_legacy<BlockQ4_0, false, false>(static_cast<const BlockQ4_0*>(src), dst,
                                                           nb, 8);
        case DType::Q4_1:
            return dequant_legacy<BlockQ4_1, false, true>(static_cast<const BlockQ4_1*>(src), dst,
                                                          nb, 0);
        case DType::Q5_0:
            return dequant_legacy<BlockQ5_0, true, false>(static_cast<const BlockQ5_0*>(src), dst,
                                                          nb, 16);
        case DType::Q5_1:
            return dequant_legacy<BlockQ5_1, true, true>(static_cast<const BlockQ5_1*>(src), dst,
                                                         nb, 0);
        case DType::Q8_0:
            return dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
        case DType::Q2_K:
            return dequant_q2_k(static_cast<const BlockQ2_K*>(src), dst, nb);
        case DType::Q3_K:
            return dequant_q3_k(static_cast<const BlockQ3_K*>(src), dst, nb);
        case DType::Q4_K:
            return dequant_q45_k<BlockQ4_K, false>(static_cast<const BlockQ4_K*>(src), dst, nb);
        case DType::Q5_K:
            return dequant_q45_k<BlockQ5_K, true>(static_cast<const BlockQ5_K*>(src), dst, nb);
        case DType::Q6_K:
            return dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb);
        default:
            break;
    }
    VELA_ASSERT(false && "supports_weight_type and dequantize_row disagree");
}

}  // namespace vela::cpu
