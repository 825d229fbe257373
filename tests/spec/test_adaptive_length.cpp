#include <gtest/gtest.h>

#include "spec/adaptive_length.h"

namespace vela::spec {
namespace {

TEST(AdaptiveLength, FollowsAcceptanceAndPausesWhenDraftsFail) {
    AdaptiveLength len;
    EXPECT_EQ(len.next(5), 5);  // nothing known: the maximum
    len.record(5, 5);
    EXPECT_EQ(len.next(5), 5);  // all accepted: stays at the maximum
    len.record(5, 1);
    EXPECT_EQ(len.next(5), 2);  // the accepted count + 1
    // Rejection after rejection: drafting pauses, then probes with one token.
    int steps = 0;
    while (len.next(5) > 0 && steps < 100) {
        len.record(len.next(5), 0);
        ++steps;
    }
    EXPECT_LT(steps, 100);
    int paused = 1;  // the next() that returned 0 above
    while (len.next(5) == 0) ++paused;
    EXPECT_EQ(paused, AdaptiveLength::kPauseSteps);
}

TEST(AdaptiveLength, NeverExceedsTheMaximum) {
    AdaptiveLength len;
    len.record(3, 3);
    EXPECT_EQ(len.next(2), 2);
    EXPECT_EQ(len.next(8), 4);
}

}  // namespace
}  // namespace vela::spec
