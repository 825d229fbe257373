#include <gtest/gtest.h>

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
// faster kind, with one step of the other kind every kProbeEvery.
TEST(SpeedGate, RunsTheFasterKindAndProbesTheOther) {
    SpeedGate gate;
    EXPECT_TRUE(gate.allow());  // nothing measured: speculate
    gate.record(true, 10, 0.1);  // 100 tokens/s speculating
    EXPECT_FALSE(gate.allow());  // now measure without
    gate.record(false, 1, 0.004);  // 250 tokens/s without: speculation loses
    int64_t speculated = 0;
    for (int64_t i = 0; i < 4 * SpeedGate::kProbeEvery; ++i) speculated += gate.allow() ? 1 : 0;
    EXPECT_EQ(speculated, 4);  // one probe per kProbeEvery steps
    // Speculation turns faster (the context grew): it wins again within a few probes.
    for (int i = 0; i < 8; ++i) gate.record(true, 20, 0.01);  // 2000 tokens/s
    EXPECT_GT(gate.spec_rate(), gate.plain_rate());
    int64_t plain = 0;
    for (int64_t i = 0; i < 4 * SpeedGate::kProbeEvery; ++i) plain += gate.allow() ? 0 : 1;
    EXPECT_EQ(plain, 4);
    // Steps that produced nothing, or took no time, are not figures.
    const double before = gate.plain_rate();
    gate.record(false, 0, 0.5);
    gate.record(false, 5, 0.0);
    EXPECT_EQ(gate.plain_rate(), before);
}

}  // namespace
}  // namespace vela::spec
