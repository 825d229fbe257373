// Elementwise ops against plain double-precision loops, on fresh random data at odd sizes,
// outputs poisoned with NaN first; aliasing (y == x) is part of the contract and tested.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "../common/test_seed.h"
#include "random_weights.h"

namespace vela::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kRel = 1e-5f;  // float32 results of O(1) values against double references

std::vector<int64_t> sizes() {
    return {1, 7, 64, 577, 1536};
}

TEST(RmsNorm, MatchesDoubleAndAllowsInPlace) {
    std::mt19937 rng(test::fresh_seed());
    for (int64_t n : sizes()) {
        const std::vector<float> x = test::random_floats(n, rng, 3.0f),
                                 w = test::random_floats(n, rng);
        const float eps = 1e-5f;
        double ss = 0.0;
        for (float v : x) ss += double{v} * v;
        const double inv = 1.0 / std::sqrt(ss / n + eps);
        std::vector<float> y(n, kNaN), inplace = x;
        rms_norm(x.data(), w.data(), y.data(), n, eps);
        rms_norm(inplace.data(), w.data(), inplace.data(), n, eps);
        for (int64_t i = 0; i < n; ++i) {
            const double ref = x[i] * inv * w[i];
            ASSERT_NEAR(y[i], ref, kRel * (std::fabs(ref) + 1e-3)) << "n=" << n << " i=" << i;
            ASSERT_EQ(inplace[i], y[i]);
        }
    }
}

TEST(Add, MatchesAndAliases) {
    std::mt19937 rng(test::fresh_seed());
    for (int64_t n : sizes()) {
        std::vector<float> a = test::random_floats(n, rng), b = test::random_floats(n, rng);
        std::vector<float> y(n, kNaN);
        add(a.data(), b.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] + b[i]);
        add(a.data(), b.data(), a.data(), n);
        EXPECT_EQ(a, y);
    }
}

TEST(SiluMul, MatchesDouble) {
    std::mt19937 rng(test::fresh_seed());
    for (int64_t n : sizes()) {
        std::vector<float> g = test::random_floats(n, rng, 4.0f), u = test::random_floats(n, rng);
        g[0] = -90.0f;  // exp overflow side must give 0, not NaN
        std::vector<float> y(n, kNaN);
        silu_mul(g.data(), u.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            const double ref = g[i] / (1.0 + std::exp(-double{g[i]})) * u[i];
            ASSERT_NEAR(y[i], ref, kRel * (std::fabs(ref) + 1e-6)) << "n=" << n << " i=" << i;
        }
    }
}

TEST(Softmax, MatchesDoubleAndIsStableForLargeLogits) {
    std::mt19937 rng(test::fresh_seed());
    for (int64_t n : sizes()) {
        std::vector<float> x = test::random_floats(n, rng, 5.0f);
        x[0] += 1000.0f;  // naive exp would overflow
        std::vector<double> ref(n);
        double mx = -1e300, sum = 0.0;
        for (float v : x) mx = std::max(mx, double{v});
        for (int64_t i = 0; i < n; ++i) sum += ref[i] = std::exp(x[i] - mx);
        softmax(x.data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(x[i], ref[i] / sum, 1e-6 + kRel * ref[i] / sum);
    }
}

// Reference rotation as complex multiplication of each (first, second) pair by e^{i theta}.
void check_rope(bool neox, int64_t n_heads, int64_t head_dim, int64_t rot_dim) {
    std::mt19937 rng(test::fresh_seed());
    const int64_t half = rot_dim / 2;
    std::vector<float> x = test::random_floats(n_heads * head_dim, rng);
    std::vector<float> cos(half), sin(half);
    const double pos = 37.0;
    for (int64_t i = 0; i < half; ++i) {
        const double theta = pos * std::pow(10000.0, -2.0 * i / rot_dim);
        cos[i] = static_cast<float>(std::cos(theta));
        sin[i] = static_cast<float>(std::sin(theta));
    }
    const std::vector<float> orig = x;
    rope(x.data(), n_heads, head_dim, rot_dim, cos.data(), sin.data(), neox);
    for (int64_t h = 0; h < n_heads; ++h) {
        const float* o = orig.data() + h * head_dim;
        const float* v = x.data() + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
            const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            const std::complex<double> z =
                std::complex<double>(o[a], o[b]) * std::complex<double>(cos[i], sin[i]);
            ASSERT_NEAR(v[a], z.real(), 1e-5) << "head " << h << " pair " << i;
            ASSERT_NEAR(v[b], z.imag(), 1e-5) << "head " << h << " pair " << i;
        }
        for (int64_t d = rot_dim; d < head_dim; ++d) ASSERT_EQ(v[d], o[d]) << "unrotated dim moved";
    }
}

TEST(Rope, AdjacentPairsLlamaLayout) {
    check_rope(false, 9, 64, 64);
    check_rope(false, 3, 80, 32);  // partial rotation
}

TEST(Rope, NeoxHalves) {
    check_rope(true, 9, 64, 64);
    check_rope(true, 5, 96, 48);
}

TEST(Rope, LayoutsDiffer) {
    // Guard against both flags taking the same branch: the layouts must disagree on real data.
    std::vector<float> a(64), b(64), cos(32, 0.0f), sin(32, 1.0f);
    for (int i = 0; i < 64; ++i) a[i] = b[i] = static_cast<float>(i);
    rope(a.data(), 1, 64, 64, cos.data(), sin.data(), false);
    rope(b.data(), 1, 64, 64, cos.data(), sin.data(), true);
    EXPECT_NE(a, b);
}

}  // namespace
}  // namespace vela::cpu
