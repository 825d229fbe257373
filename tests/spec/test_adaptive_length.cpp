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
    EXPECT_TRUE(gate.allow());      // nothing measured: speculate
    gate.record(true, 40, 0.01);    // 4000 tokens/s speculating, 10 ms a step
    EXPECT_FALSE(gate.allow());     // now measure without
    gate.record(false, 10, 0.004);  // 2500 tokens/s without, 4 ms: speculation wins
    std::vector<int64_t> probes;    // steps (from here) that did not speculate
    for (int64_t i = 1; i <= 2000; ++i) {
        if (!gate.allow()) probes.push_back(i);
    }
    // A probe (4 ms) is cheap next to the winner's steps: kProbeEvery, then doubling.
    const int64_t p = SpeedGate::kProbeEvery;
    ASSERT_GE(probes.size(), 4u);
    EXPECT_EQ(probes[0], 1 + p);  // kProbeEvery steps after step 1, where the winner is known
    EXPECT_EQ(probes[1] - probes[0], 2 * p);
    EXPECT_EQ(probes[2] - probes[1], 4 * p);
    EXPECT_EQ(probes.back() - probes[probes.size() - 2], SpeedGate::kMaxProbeEvery);
    // Speculation turns slower (1000 tokens/s, 40 ms a step): plain wins, and probes of
    // speculation come at least kProbeCost x 40 / 4 = 500 steps apart, so that they cost at
    // most ~2% of the time.
    for (int i = 0; i < 16; ++i) gate.record(true, 40, 0.04);  // 1000 tokens/s, 40 ms a step
    EXPECT_LT(gate.spec_rate(), gate.plain_rate());
    std::vector<int64_t> spec;
    for (int64_t i = 1; i <= 4000; ++i) {
        if (gate.allow()) spec.push_back(i);
    }
    ASSERT_GE(spec.size(), 2u);
    for (size_t i = 1; i < spec.size(); ++i) EXPECT_GE(spec[i] - spec[i - 1], 490);
    const double probe_time = 0.04 * static_cast<double>(spec.size());
    EXPECT_LT(probe_time / (0.004 * 4000.0), 0.03);
    // A step that was no figure (not representative) is run again in its kind: a probe of
    // speculation that had to catch up is followed by another, whose time counts.
    SpeedGate g;
    EXPECT_TRUE(g.allow());
    g.record(true, 40, 1.0, false);  // the first speculative step fed the prompt to the drafter
    EXPECT_TRUE(g.allow());          // so speculation is measured again
    EXPECT_EQ(g.spec_rate(), 0.0);
    g.record(true, 40, 0.01);
    EXPECT_FALSE(g.allow());  // then a plain step
    // A plain probe that recorded a CUDA graph (slow) is repeated until one replays.
    g.record(false, 10, 1.0, false);
    EXPECT_FALSE(g.allow());
    g.record(false, 10, 0.004);
    EXPECT_DOUBLE_EQ(g.plain_rate(), 2500.0);
    // A kind with no representative steps still gets a figure, after kMaxUnrepresentative.
    SpeedGate h;
    for (int i = 0; i < SpeedGate::kMaxUnrepresentative; ++i) {
        EXPECT_TRUE(h.allow());
        h.record(true, 40, 0.01, false);
        EXPECT_EQ(h.spec_rate(), 0.0);
    }
    EXPECT_TRUE(h.allow());
    h.record(true, 40, 0.01, false);
    EXPECT_DOUBLE_EQ(h.spec_rate(), 4000.0);
    EXPECT_FALSE(h.allow());
    // Rates are per sequence: speculation measured on a full batch (16 sequences, 58 tokens in
    // 56 ms: 65 tokens/s each) loses to plain steps of an emptying batch (6 sequences, 6 tokens
    // in 6.3 ms: 159 each), though its raw 1036 tokens/s beat their 952.
    SpeedGate b;
    EXPECT_TRUE(b.allow());
    b.record(true, 58, 0.056, true, 16);
    EXPECT_FALSE(b.allow());
    b.record(false, 6, 0.0063, true, 6);
    EXPECT_NEAR(b.spec_rate(), 58.0 / 16 / 0.056, 1e-9);
    EXPECT_NEAR(b.plain_rate(), 1.0 / 0.0063, 1e-9);
    EXPECT_FALSE(b.allow());  // plain wins
    // Steps that produced nothing, or took no time, are not figures.
    const double before = gate.plain_rate();
    gate.record(false, 0, 0.5);
    gate.record(false, 5, 0.0);
    EXPECT_EQ(gate.plain_rate(), before);
}

}  // namespace
}  // namespace vela::spec
