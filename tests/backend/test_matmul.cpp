// matmul of every weight type against float64 dot products of the dequantised weights
// (dequantize_row itself is checked against the gguf package), at awkward sizes, with fresh
// random data and NaN-poisoned outputs; and every SIMD path of this CPU against the scalar one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/error.h"
#include "../common/test_seed.h"
#include "random_weights.h"

namespace vela::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Elements per 8-bit activation block the matmul rounds to for weights of type t (one scale
// each): 32 for the legacy types, 256 for the K-quants, 0 where it does not round (float types).
int64_t act_block(DType t) {
    const int64_t bs = dtype_info(t).block_size;
    return bs == 32 || bs == 256 ? bs : 0;
}

struct Problem {
    DType type;
    int64_t n, k, m, ldx, ldy;
    std::vector<uint8_t> w;
    std::vector<float> x;         // m rows, stride ldx
    std::vector<double> w_float;  // dequantised weights, n x k
};

Problem make_problem(DType type, int64_t n, int64_t k, int64_t m, std::mt19937& rng) {
    Problem p{type, n, k, m, k + 3, n + 5, test::random_weights(type, n, k, rng), {}, {}};
    p.x = test::random_floats(static_cast<size_t>(m * p.ldx), rng);
    // One all-zero activation block exercises d = 0 in the activation quantiser.
    if (m > 1 && k >= 64) std::fill(p.x.begin() + p.ldx, p.x.begin() + p.ldx + 32, 0.0f);
    std::vector<float> row(static_cast<size_t>(k));
    p.w_float.resize(static_cast<size_t>(n * k));
    for (int64_t r = 0; r < n; ++r) {
        dequantize_row(type, p.w.data() + r * row_bytes(type, k), row.data(), k);
        std::copy(row.begin(), row.end(), p.w_float.begin() + r * k);
    }
    return p;
}

std::vector<float> run(const Problem& p, Isa isa, int threads) {
    std::vector<float> y(static_cast<size_t>(p.m * p.ldy), kNaN);
    Workspace ws(isa);
    ThreadPool pool(threads);
    matmul({p.w.data(), p.type, p.n, p.k, p.x.data(), p.ldx, p.m, y.data(), p.ldy}, ws, pool);
    return y;
}

// |error| bound of row r . token c. Activations are rounded per block (act_block) to d * q with
// d = amax / 127, an error of at most amax / 254 per element; `simd` instead bounds the
// float-order difference between two paths that share the quantised activations (offset codes
// reach 128 * d).
double tolerance(const Problem& p, int64_t r, int64_t c, bool simd) {
    const double* w = p.w_float.data() + r * p.k;
    const float* x = p.x.data() + c * p.ldx;
    const int64_t block = act_block(p.type) != 0 ? act_block(p.type) : 32;
    double abs_dot = 0.0, quant = 0.0, offset = 0.0;
    for (int64_t b = 0; b < p.k; b += block) {
        double amax = 0.0, wsum = 0.0, wmax = 0.0;
        for (int64_t i = b; i < b + block; ++i) {
            amax = std::max(amax, std::fabs(double{x[i]}));
            wsum += std::fabs(w[i]);
            wmax = std::max(wmax, std::fabs(w[i]));
            abs_dot += std::fabs(w[i] * x[i]);
        }
        quant += amax / 254.0 * wsum;
        offset += (wsum + static_cast<double>(block) * wmax) * amax;
    }
    if (simd) return 2e-6 * offset + 1e-6;
    return (act_block(p.type) != 0 ? quant * 1.001 : 0.0) + 1e-5 * abs_dot + 1e-6;
}

void expect_padding_untouched(const Problem& p, const std::vector<float>& y) {
    for (int64_t c = 0; c < p.m; ++c) {
        for (int64_t j = p.n; j < p.ldy; ++j)
            ASSERT_TRUE(std::isnan(y[c * p.ldy + j])) << "wrote past n";
    }
}

void check_against_float64(const Problem& p, Isa isa, int threads) {
    const std::vector<float> y = run(p, isa, threads);
    expect_padding_untouched(p, y);
    for (int64_t c = 0; c < p.m; ++c) {
        for (int64_t r = 0; r < p.n; ++r) {
            double ref = 0.0;
            for (int64_t i = 0; i < p.k; ++i) ref += p.w_float[r * p.k + i] * p.x[c * p.ldx + i];
            ASSERT_NEAR(y[c * p.ldy + r], ref, tolerance(p, r, c, false))
                << dtype_name(p.type) << " isa " << isa_name(isa) << " n=" << p.n << " k=" << p.k
                << " m=" << p.m << " at row " << r << " token " << c;
        }
    }
}

std::vector<Isa> isas_of_this_cpu() {
    std::vector<Isa> out{Isa::Scalar};
    if (static_cast<int>(detect_isa()) >= static_cast<int>(Isa::Avx2)) out.push_back(Isa::Avx2);
    if (detect_isa() == Isa::Avx512) out.push_back(Isa::Avx512);
    return out;
}

class MatmulType : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulType, MatchesFloat64AtAwkwardSizes) {
    const DType t = GetParam();
    const int64_t bs = dtype_info(t).block_size;
    // 3 blocks of 32 (an odd count: the pairwise AVX-512 loop's tail) or 1 super-block.
    const int64_t k_small = bs == 256 ? 256 : 96;
    std::mt19937 rng(test::fresh_seed());
    for (int64_t m : {1, 3, 17, 64}) {
        for (int64_t n : {1, 33, 576}) {
            const Problem p = make_problem(t, n, k_small, m, rng);
            check_against_float64(p, detect_isa(), 2);
        }
    }
    const Problem wide = make_problem(t, 37, bs == 256 ? 512 : 576, 5, rng);
    check_against_float64(wide, detect_isa(), 3);
}

TEST_P(MatmulType, EverySimdPathMatchesScalar) {
    const DType t = GetParam();
    const int64_t k = dtype_info(t).block_size == 256 ? 512 : 160;
    std::mt19937 rng(test::fresh_seed());
    for (int64_t m : {1, 6, 17}) {
        const Problem p = make_problem(t, 45, k, m, rng);
        const std::vector<float> ref = run(p, Isa::Scalar, 1);
        for (Isa isa : isas_of_this_cpu()) {
            const std::vector<float> y = run(p, isa, 2);
            for (int64_t c = 0; c < m; ++c) {
                for (int64_t r = 0; r < p.n; ++r) {
                    ASSERT_NEAR(y[c * p.ldy + r], ref[c * p.ldy + r], tolerance(p, r, c, true))
                        << dtype_name(t) << " isa " << isa_name(isa) << " m=" << m << " row " << r
                        << " token " << c;
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulType,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                           DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                                           DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Matmul, DefaultModelShapeOnEveryPath) {
    // The shapes that matter most: Q4_1 576 -> 1536 over a prefill-sized batch.
    std::mt19937 rng(test::fresh_seed());
    const Problem p = make_problem(DType::Q4_1, 1536, 576, 64, rng);
    for (Isa isa : isas_of_this_cpu()) check_against_float64(p, isa, 2);
}

TEST(Matmul, QwenKQuantShapesOnEveryPath) {
    // Qwen2.5-Coder Q4_K_M: Q4_K/Q6_K rows of 1536 (hidden) and 8960 (ffn down, 35 super-blocks:
    // an odd count), over a decode token and a prefill tile with a ragged tail.
    std::mt19937 rng(test::fresh_seed());
    for (DType t : {DType::Q4_K, DType::Q6_K}) {
        for (int64_t k : {1536, 8960}) {
            for (int64_t m : {1, 23}) {
                const Problem p = make_problem(t, 70, k, m, rng);
                for (Isa isa : isas_of_this_cpu()) check_against_float64(p, isa, 2);
            }
        }
    }
}

TEST(Matmul, RejectsUnsupportedTypeNamingIt) {
    std::vector<uint8_t> w(4096);
    std::vector<float> x(256), y(4);
    Workspace ws;
    ThreadPool pool(1);
    try {
        matmul({w.data(), DType::IQ2_XXS, 1, 256, x.data(), 256, 1, y.data(), 1}, ws, pool);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
    }
    EXPECT_THROW(matmul({w.data(), DType::Q8_0, 1, 48, x.data(), 48, 1, y.data(), 1}, ws, pool),
                 InvalidArgument);
}

TEST(Isa, ParseAndClamp) {
    EXPECT_EQ(parse_isa("avx2"), Isa::Avx2);
    EXPECT_EQ(parse_isa("neon"), std::nullopt);
    EXPECT_LE(static_cast<int>(Workspace(Isa::Avx512).isa()), static_cast<int>(detect_isa()));
    EXPECT_EQ(Workspace(Isa::Scalar).isa(), Isa::Scalar);
}

}  // namespace
}  // namespace vela::cpu
