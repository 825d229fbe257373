#pragma once
// Random but valid weight matrices of any supported type, for matmul tests: random bytes for
// the codes and moderate, finite fp16 values for every block scale/min (any bit pattern of the
// codes is a valid block).
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"

namespace vela::test {

// Byte offsets of the fp16 scale fields inside one block of `t` (empty for plain types).
inline std::vector<size_t> fp16_field_offsets(DType t) {
    switch (t) {
        case DType::Q4_0:
        case DType::Q5_0:
        case DType::Q8_0:
            return {0};
        case DType::Q4_1:
        case DType::Q5_1:
            return {0, 2};
        case DType::Q2_K:
            return {80, 82};
        case DType::Q3_K:
            return {108};
        case DType::Q4_K:
        case DType::Q5_K:
            return {0, 2};
        case DType::Q6_K:
            return {208};
        default:
            return {};
    }
}

inline std::vector<uint8_t> random_weights(DType t, int64_t n, int64_t k, std::mt19937& rng) {
    const size_t bytes = row_bytes(t, k) * static_cast<size_t>(n);
    std::vector<uint8_t> w(bytes);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto put16 = [&](size_t off, uint16_t v) { std::memcpy(w.data() + off, &v, 2); };
    if (t == DType::F32) {
        for (size_t i = 0; i < bytes; i += 4) {
            const float f = normal(rng);
            std::memcpy(w.data() + i, &f, 4);
        }
        return w;
    }
    if (t == DType::F16 || t == DType::BF16) {
        for (size_t i = 0; i < bytes; i += 2) {
            put16(i, t == DType::F16 ? fp32_to_fp16(normal(rng)) : fp32_to_bf16(normal(rng)));
        }
        return w;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (uint8_t& b : w) b = static_cast<uint8_t>(byte(rng));
    const DTypeInfo& info = dtype_info(t);
    // Scales sized so dequantised weights are O(1) for every type, minimums of either sign.
    const float scale = info.block_size == 32 ? 0.1f : 0.01f;
    std::uniform_real_distribution<float> uni(-scale, scale);
    for (size_t blk = 0; blk < bytes / info.type_size; ++blk) {
        for (size_t off : fp16_field_offsets(t))
            put16(blk * info.type_size + off, fp32_to_fp16(uni(rng)));
    }
    return w;
}

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float sigma = 1.0f) {
    std::normal_distribution<float> normal(0.0f, sigma);
    std::vector<float> v(n);
    for (float& f : v) f = normal(rng);
    return v;
}

}  // namespace vela::test
