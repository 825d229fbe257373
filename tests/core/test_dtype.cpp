#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/dtype.h"
#include "core/fp16.h"

namespace vela {
namespace {

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t hardware_fp16(float f) {
    return static_cast<uint16_t>(_cvtss_sh(f, 0));  // 0: round to nearest even
}
#endif

TEST(DType, KnownLayouts) {
    EXPECT_EQ(row_bytes(DType::F32, 7), 28u);
    EXPECT_EQ(row_bytes(DType::Q4_1, 64), 40u);
    EXPECT_EQ(row_bytes(DType::Q6_K, 512), 420u);
    EXPECT_FALSE(dtype_info(4u).has_value());  // removed Q4_2 id
    EXPECT_FALSE(dtype_info(1000u).has_value());
    EXPECT_EQ(dtype_name(DType::BF16), "BF16");
}

TEST(Fp16, RoundTripsEveryHalf) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = fp16_to_fp32(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        EXPECT_EQ(fp32_to_fp16(f), h) << h;
    }
}

// Tiny values (subnormal halves and below, where the conversion shifts furthest) against the
// CPU's own conversion (F16C, round to nearest even), every 31st float bit pattern of both signs.
TEST(Fp16, TinyValuesMatchTheHardware) {
#if defined(__x86_64__)
    if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C";
    for (uint32_t bits = 0; bits < 0x38800000u; bits += 31) {
        for (uint32_t sign : {0u, 0x80000000u}) {
            const uint32_t x = bits | sign;
            float f;
            std::memcpy(&f, &x, sizeof f);
            ASSERT_EQ(fp32_to_fp16(f), hardware_fp16(f)) << std::hex << x;
        }
    }
#else
    GTEST_SKIP() << "no x86 reference";
#endif
}

TEST(Fp16, RoundsToNearestEven) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-70000.f, 70000.f);
    for (int i = 0; i < 100000; ++i) {
        const float f = dist(rng) * (i % 2 ? 1e-4f : 1.f);
        const uint16_t h = fp32_to_fp16(f);
        const float back = fp16_to_fp32(h);
        if (std::isinf(back)) {
            EXPECT_GT(std::fabs(f), 65504.f);
            continue;
        }
        // No other half is closer.
        const float up = fp16_to_fp32(static_cast<uint16_t>(h + 1));
        const float down = fp16_to_fp32(static_cast<uint16_t>(h - 1));
        EXPECT_LE(std::fabs(back - f), std::fabs(up - f)) << f;
        EXPECT_LE(std::fabs(back - f), std::fabs(down - f)) << f;
    }
}

TEST(Bf16, Truncation) {
    EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(1.0f)), 1.0f);
    EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(-2.5f)), -2.5f);
    EXPECT_NEAR(bf16_to_fp32(fp32_to_bf16(3.14159f)), 3.14159f, 0.01f);
}

}  // namespace
}  // namespace vela
