// Row codecs of the quantised KV formats against their double-precision definitions
// (tests/common/kv_quant_reference.h) at odd row lengths: what the codec stores must read back
// as the reference value (exactly, except at rounding ties), and within the format's
// theoretical bound of the input: |x - x̂| <= scale / 2 per group.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "../common/kv_quant_reference.h"
#include "../common/test_seed.h"
#include "kv/kv_quant.h"

namespace vela::test {
namespace {

struct Q8Row {
    std::vector<int8_t> q;
    std::vector<uint16_t> scales;
    std::vector<float> back;
};

Q8Row round_trip_q8(const std::vector<float>& x) {
    const auto n = static_cast<int64_t>(x.size());
    Q8Row r{std::vector<int8_t>(x.size()), std::vector<uint16_t>(q8_groups(n)),
            std::vector<float>(x.size())};
    quantize_q8_row(x.data(), n, r.q.data(), r.scales.data());
    dequantize_q8_row(r.q.data(), r.scales.data(), n, r.back.data());
    return r;
}

TEST(KvQuant, Q8MatchesDoublePrecisionReference) {
    std::mt19937 rng(fresh_seed());
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> spread(-12.0f, 4.0f);
    for (int64_t n : {1, 7, 31, 32, 33, 40, 64, 72, 97, 127, 128, 200}) {
        for (int trial = 0; trial < 20; ++trial) {
            // Each row at its own magnitude (2^-12 .. 2^4), with one outlier channel 30x.
            const float mag = std::exp2(spread(rng));
            std::vector<float> x(static_cast<size_t>(n));
            for (float& v : x) v = normal(rng) * mag;
            x[static_cast<size_t>(trial) % x.size()] *= 30.0f;
            const Q8Row got = round_trip_q8(x);
            const QuantRow ref = q8_reference(x.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                const double err = std::fabs(got.back[i] - ref.value[i]);
                ASSERT_LE(err, ref.slack[i]) << "n " << n << " element " << i << " of " << x[i]
                                             << ": got " << got.back[i] << " want "
                                             << ref.value[i];
                // The format's bound: half a step.
                ASSERT_LE(std::fabs(got.back[i] - double{x[i]}), 0.5 * ref.scale[i] * (1 + 1e-5))
                    << "n " << n << " element " << i;
            }
        }
    }
}

TEST(KvQuant, Q8ZeroAndNanRows) {
    const std::vector<float> zeros(40, 0.0f);
    for (float v : round_trip_q8(zeros).back) EXPECT_EQ(v, 0.0f);
    // A NaN poisons its own group (so a poisoned KV slot reads back NaN) and no other.
    std::vector<float> x(40, 1.0f);
    x[3] = std::numeric_limits<float>::quiet_NaN();
    const Q8Row r = round_trip_q8(x);
    for (int i = 0; i < 32; ++i) EXPECT_TRUE(std::isnan(r.back[i])) << i;
    for (int i = 32; i < 40; ++i) EXPECT_NEAR(r.back[i], 1.0f, 1.0 / 254) << i;
}

}  // namespace
}  // namespace vela::test
