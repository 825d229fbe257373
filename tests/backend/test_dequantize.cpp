// dequantize_row against the gguf Python package's dequantizer (fixtures written by
// gen_quant_reference.py): exact match expected, both compute d * q (+ m) in float32.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/error.h"

namespace vela::cpu {
namespace {

constexpr int64_t kRows = 2, kK = 512;  // the generator's shape

std::vector<char> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("missing fixture " + path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class DequantizeFixture : public ::testing::TestWithParam<DType> {};

TEST_P(DequantizeFixture, MatchesGgufPackage) {
    const DType t = GetParam();
    const std::string base =
        std::string(VELA_SOURCE_DIR) + "/tests/backend/data/" + std::string(dtype_name(t));
    const std::vector<char> raw = read_file(base + ".bin");
    const std::vector<char> ref_bytes = read_file(base + ".f32");
    ASSERT_EQ(raw.size(), row_bytes(t, kK) * kRows);
    ASSERT_EQ(ref_bytes.size(), sizeof(float) * kRows * kK);
    const auto* ref = reinterpret_cast<const float*>(ref_bytes.data());
    for (int64_t r = 0; r < kRows; ++r) {
        std::vector<float> out(kK, std::numeric_limits<float>::quiet_NaN());
        dequantize_row(t, raw.data() + r * row_bytes(t, kK), out.data(), kK);
        for (int64_t i = 0; i < kK; ++i) {
            const float want = ref[r * kK + i];
            // The package multiplies in a different order for some types: allow 1 ulp-ish.
            ASSERT_NEAR(out[i], want, 1e-6f * std::fabs(want) + 1e-30f)
                << dtype_name(t) << " row " << r << " element " << i;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeFixture,
                         ::testing::Values(DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1,
                                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K,
                                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Dequantize, F32IsACopy) {
    const float src[3] = {1.5f, -2.0f, 3.25f};
    float dst[3] = {0, 0, 0};
    dequantize_row(DType::F32, src, dst, 3);
    EXPECT_EQ(dst[0], 1.5f);
    EXPECT_EQ(dst[1], -2.0f);
    EXPECT_EQ(dst[2], 3.25f);
}

TEST(Dequantize, RejectsUnsupportedTypeAndRaggedRow) {
    std::vector<uint8_t> buf(1024);
    std::vector<float> out(256);
    EXPECT_THROW(dequantize_row(DType::IQ2_XXS, buf.data(), out.data(), 256), Error);
    EXPECT_THROW(dequantize_row(DType::Q4_1, buf.data(), out.data(), 40), InvalidArgument);
}

}  // namespace
}  // namespace vela::cpu
