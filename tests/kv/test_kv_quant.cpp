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

Q8Row round_trip_q8(const std::vector<float>& x, int64_t group) {
    const auto n = static_cast<int64_t>(x.size());
    Q8Row r{std::vector<int8_t>(x.size()), std::vector<uint16_t>(kv_groups(n, group)),
            std::vector<float>(x.size())};
    quantize_q8_row(x.data(), n, group, r.q.data(), r.scales.data());
    dequantize_q8_row(r.q.data(), r.scales.data(), n, group, r.back.data());
    return r;
}

std::vector<float> round_trip_q4(const std::vector<float>& x, int64_t group) {
    const auto n = static_cast<int64_t>(x.size());
    std::vector<uint8_t> q(static_cast<size_t>(q4_row_bytes(n)));
    std::vector<uint16_t> scale_min(static_cast<size_t>(2 * kv_groups(n, group)));
    std::vector<float> back(x.size());
    quantize_q4_row(x.data(), n, group, q.data(), scale_min.data());
    dequantize_q4_row(q.data(), scale_min.data(), n, group, back.data());
    return back;
}

// Rows of odd lengths, each at its own magnitude (2^-12 .. 2^4) with one outlier channel 30x,
// through `round_trip` against `reference`, in each group size.
template <class RoundTrip, class Reference>
void expect_matches_reference(const char* format, RoundTrip round_trip, Reference reference) {
    std::mt19937 rng(fresh_seed());
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> spread(-12.0f, 4.0f);
    for (int64_t group : {32, 64, 128}) {
        for (int64_t n : {1, 7, 31, 32, 33, 37, 40, 64, 72, 97, 127, 128, 200}) {
            for (int trial = 0; trial < 20; ++trial) {
                const float mag = std::exp2(spread(rng));
                std::vector<float> x(static_cast<size_t>(n));
                for (float& v : x) v = normal(rng) * mag;
                x[static_cast<size_t>(trial) % x.size()] *= 30.0f;
                const std::vector<float> got = round_trip(x, group);
                const QuantRow ref = reference(x.data(), n, group);
                for (int64_t i = 0; i < n; ++i) {
                    const double err = std::fabs(got[i] - ref.value[i]);
                    ASSERT_LE(err, ref.slack[i])
                        << format << " group " << group << " n " << n << " element " << i << " of "
                        << x[i] << ": got " << got[i] << " want " << ref.value[i];
                    // The format's bound: half a step, plus half a float ulp of Q4's min + q *
                    // scale (a group of equal values has a step of a few fp16 subnormals).
                    ASSERT_LE(std::fabs(got[i] - double{x[i]}),
                              0.5 * ref.scale[i] * (1 + 1e-5) + std::fabs(ref.value[i]) * 0x1p-24)
                        << format << " group " << group << " n " << n << " element " << i;
                }
            }
        }
    }
}

TEST(KvQuant, Q8MatchesDoublePrecisionReference) {
    expect_matches_reference(
        "q8",
        [](const std::vector<float>& x, int64_t group) { return round_trip_q8(x, group).back; },
        q8_reference);
}

TEST(KvQuant, Q4MatchesDoublePrecisionReference) {
    expect_matches_reference("q4", round_trip_q4, q4_reference);
}

// K in Q4: each channel of a block of block_size tokens is one group of the Q4 reference.
TEST(KvQuant, Q4KeysPerChannelMatchDoublePrecisionReference) {
    std::mt19937 rng(fresh_seed());
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> spread(-12.0f, 4.0f);
    for (int64_t hd : {40, 64, 72, 128, 7}) {
        for (int64_t bs : {1, 7, 16, 32}) {
            for (int trial = 0; trial < 10; ++trial) {
                // Each channel at its own magnitude, one of them an outlier 30x (keys' outliers
                // are channels).
                std::vector<float> mag(static_cast<size_t>(hd));
                for (float& m : mag) m = std::exp2(spread(rng));
                mag[static_cast<size_t>(trial) % mag.size()] *= 30.0f;
                std::vector<float> x(static_cast<size_t>(bs * hd));
                for (int64_t i = 0; i < bs * hd; ++i) x[i] = normal(rng) * mag[i % hd];
                std::vector<uint8_t> q(static_cast<size_t>(bs * q4_row_bytes(hd)));
                std::vector<uint16_t> scale_min(static_cast<size_t>(2 * hd));
                quantize_q4_channels(x.data(), bs, hd, q.data(), scale_min.data());
                std::vector<float> back(static_cast<size_t>(bs * hd));
                for (int64_t t = 0; t < bs; ++t) {
                    dequantize_q4_channels_row(q.data() + t * q4_row_bytes(hd), scale_min.data(),
                                               hd, back.data() + t * hd);
                }
                for (int64_t c = 0; c < hd; ++c) {
                    std::vector<float> channel(static_cast<size_t>(bs));
                    for (int64_t t = 0; t < bs; ++t) channel[t] = x[t * hd + c];
                    const QuantRow ref = q4_reference(channel.data(), bs, bs);  // one group
                    for (int64_t t = 0; t < bs; ++t) {
                        const double got = back[t * hd + c];
                        ASSERT_LE(std::fabs(got - ref.value[t]), ref.slack[t])
                            << "head_dim " << hd << " block " << bs << " channel " << c << " token "
                            << t << ": got " << got << " want " << ref.value[t];
                        // Half a step, plus half a float ulp of min + q * scale.
                        ASSERT_LE(
                            std::fabs(got - double{channel[t]}),
                            0.5 * ref.scale[t] * (1 + 1e-5) + std::fabs(ref.value[t]) * 0x1p-24)
                            << "head_dim " << hd << " block " << bs << " channel " << c << " token "
                            << t << ": x " << channel[t] << " got " << got;
                    }
                }
            }
        }
    }
}

TEST(KvQuant, Q4KeysNanPoisonsItsChannelOnly) {
    const int64_t hd = 40, bs = 16;
    std::vector<float> x(static_cast<size_t>(bs * hd));
    for (int64_t i = 0; i < bs * hd; ++i) x[i] = static_cast<float>(i % hd) - 3.0f;
    x[5 * hd + 9] = std::numeric_limits<float>::quiet_NaN();
    std::vector<uint8_t> q(static_cast<size_t>(bs * q4_row_bytes(hd)));
    std::vector<uint16_t> scale_min(static_cast<size_t>(2 * hd));
    quantize_q4_channels(x.data(), bs, hd, q.data(), scale_min.data());
    std::vector<float> row(static_cast<size_t>(hd));
    for (int64_t t = 0; t < bs; ++t) {
        dequantize_q4_channels_row(q.data() + t * q4_row_bytes(hd), scale_min.data(), hd,
                                   row.data());
        for (int64_t c = 0; c < hd; ++c) {
            if (c == 9) {
                EXPECT_TRUE(std::isnan(row[c])) << "token " << t;
            } else {
                EXPECT_EQ(row[c], x[t * hd + c]) << "token " << t << " channel " << c;  // constant
            }
        }
    }
}

TEST(KvQuant, ZeroAndNanRows) {
    const std::vector<float> zeros(40, 0.0f);
    for (float v : round_trip_q8(zeros, 32).back) EXPECT_EQ(v, 0.0f);
    // A NaN poisons its own group (so a poisoned KV slot reads back NaN) and no other.
    std::vector<float> x(40, 1.0f);
    x[3] = std::numeric_limits<float>::quiet_NaN();
    const Q8Row r = round_trip_q8(x, 32);
    for (int i = 0; i < 32; ++i) EXPECT_TRUE(std::isnan(r.back[i])) << i;
    for (int i = 32; i < 40; ++i) EXPECT_NEAR(r.back[i], 1.0f, 1.0 / 254) << i;
    const std::vector<float> q4 = round_trip_q4(x, 32);
    for (int i = 0; i < 32; ++i) EXPECT_TRUE(std::isnan(q4[i])) << i;
    for (int i = 32; i < 40; ++i) EXPECT_FLOAT_EQ(q4[i], 1.0f) << i;
    for (float v : round_trip_q4(zeros, 32)) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace vela::test
