// The reference itself, checked against numpy (float64) on a small GQA case with and without a
// sliding window; both compute in double, so they agree to ~1e-12.
#include <gtest/gtest.h>

#include <cmath>

#include "attention/reference_attention.h"

namespace vela {
namespace {

#include "reference_fixture.inc"

TEST(ReferenceAttention, MatchesNumpy) {
    for (int64_t window : {0, 2}) {
        const std::vector<double> out =
            reference_attention({kQ, kK, kV, 3, 6, 4, 2, 8, 0.35, window});
        const double* want = window == 0 ? kOutCausal : kOutWindow2;
        ASSERT_EQ(out.size(), std::size(kOutCausal));
        for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-12) << i;
    }
}

}  // namespace
}  // namespace vela
