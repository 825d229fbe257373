#include <gtest/gtest.h>

#include <vector>

#include "spec/adaptive_length.h"
#include "spec/speed_gate.h"

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

// The measured gate of self-speculation: speculation first, then a step without, then the
// faster kind, probing the other kProbeEvery steps after the winner changes and then at
// doubling intervals.
TEST(SpeedGate, RunsTheFasterKindAndProbesTheOther) {
    SpeedGate gate;
    EXPECT_TRUE(gate.allow());  // nothing measured: speculate
    gate.record(true, 10, 0.1);  // 100 tokens/s speculating
    EXPECT_FALSE(gate.allow());  // now measure without
    gate.record(false, 1, 0.004);  // 250 tokens/s without: speculation loses
    std::vector<int64_t> probes;  // steps (from here) that speculated
    for (int64_t i = 1; i <= 2000; ++i) {
        if (gate.allow()) probes.push_back(i);
    }
    const int64_t p = SpeedGate::kProbeEvery;
    ASSERT_GE(probes.size(), 4u);
    EXPECT_EQ(probes[0], 1 + p);  // kProbeEvery steps after step 1, where the winner is known
    EXPECT_EQ(probes[1] - probes[0], 2 * p);
    EXPECT_EQ(probes[2] - probes[1], 4 * p);
    EXPECT_EQ(probes.back() - probes[probes.size() - 2], SpeedGate::kMaxProbeEvery);
    // Speculation turns faster (the context grew): the next probe finds it, and it runs.
    for (int i = 0; i < 8; ++i) gate.record(true, 20, 0.01);  // 2000 tokens/s
    EXPECT_GT(gate.spec_rate(), gate.plain_rate());
    int64_t plain = 0;
    for (int64_t i = 0; i < 4 * p; ++i) plain += gate.allow() ? 0 : 1;
    EXPECT_EQ(plain, 2);  // probes of the plain kind at p and 3p
    // Steps that produced nothing, or took no time, are not figures.
    const double before = gate.plain_rate();
    gate.record(false, 0, 0.5);
    gate.record(false, 5, 0.0);
    EXPECT_EQ(gate.plain_rate(), before);
}

}  // namespace
}  // namespace vela::spec
