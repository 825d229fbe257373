// The processors one by one against straightforward double-precision math on fresh random data,
// plus the log-softmax helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "../common/test_seed.h"
#include "core/error.h"
#include "sampling/fast_exp.h"
#include "sampling/logits_processors.h"
#include "sampling/logprobs.h"
#include "sampling/sampler.h"

namespace vela {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Fresh data every run; the seed is printed and VELA_TEST_SEED replays it (test_seed.h).
using test::fresh_seed;

// Quantised logits give many exact ties, the case where a sloppy order would show.
std::vector<float> random_logits(std::mt19937_64& rng, size_t n, float scale, bool ties) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = ties ? std::round(dist(rng) * 4.0f) / 4.0f : dist(rng);
    return v;
}

// Full sort by (logit desc, id asc): the reference order.
std::vector<int32_t> ranked(const std::vector<float>& logits) {
    std::vector<int32_t> ids(logits.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
        return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    return ids;
}

std::vector<int32_t> tokens_of(const sampling::Candidates& c) {
    std::vector<int32_t> out;
    for (const auto& x : c.items) out.push_back(x.token);
    return out;
}

TEST(Greedy, ArgmaxTiesGoToLowestId) {
    const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, kNaN, 3.0f};
    EXPECT_EQ(sampling::argmax(logits), 1);
    const std::vector<float> nan_first = {kNaN, -kInf, 0.5f, 0.5f};
    EXPECT_EQ(sampling::argmax(nan_first), 2);
    const std::vector<float> masked = {-kInf, -kInf, kNaN};
    EXPECT_EQ(sampling::argmax(masked), -1);
}

TEST(Greedy, SamplerAtTemperatureZeroIsExactArgmax) {
    std::mt19937_64 rng(fresh_seed());
    SamplingParams p;
    p.temperature = 0.0f;
    Sampler sampler(p);
    for (size_t n : {1u, 7u, 4099u, 49152u}) {
        auto logits = random_logits(rng, n, 2.0f, true);
        const int32_t want = ranked(logits).front();  // ties to the lowest id by construction
        EXPECT_EQ(sampler.sample(logits, {}), want) << "vocab " << n;
        std::vector<float> probs(n, kNaN);
        sampler.distribution(logits, {}, probs);
        for (size_t t = 0; t < n; ++t)
            ASSERT_EQ(probs[t], t == static_cast<size_t>(want) ? 1.0f : 0.0f);
    }
}

TEST(Greedy, PenaltiesApplyBeforeArgmax) {
    SamplingParams p;
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;  // 4 / 2 = 2 < 3: token 0 loses its lead
    Sampler sampler(p);
    std::vector<float> logits = {4.0f, 3.0f, 1.0f};
    const std::vector<int32_t> history = {0, 2};
    EXPECT_EQ(sampler.sample(logits, history), 1);
    EXPECT_EQ(logits[0], 2.0f);  // modified in place, as documented
    EXPECT_EQ(logits[2], 0.5f);
}

TEST(Processors, PenaltiesMatchFormula) {
    SamplingParams p;
    p.repetition_penalty = 1.5f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.penalty_last_n = 4;
    std::vector<float> logits = {3.0f, -2.0f, 1.0f, 0.0f, 5.0f};
    // Window = last 4: {1, 1, 3, 1}; token 4 is outside the window and untouched.
    const std::vector<int32_t> history = {4, 4, 1, 1, 3, 1};
    std::vector<int32_t> scratch;
    sampling::apply_penalties(logits, history, p, scratch);
    EXPECT_FLOAT_EQ(logits[0], 3.0f);
    EXPECT_FLOAT_EQ(logits[1], -2.0f * 1.5f - 3 * 0.5f - 0.25f);
    EXPECT_FLOAT_EQ(logits[2], 1.0f);
    EXPECT_FLOAT_EQ(logits[3], 0.0f - 0.5f - 0.25f);  // zero counts as "not positive"
    EXPECT_FLOAT_EQ(logits[4], 5.0f);
    // The count table is left clean, also after a throw: a second call sees only its own history.
    const std::vector<int32_t> bad = {3, 7};
    EXPECT_THROW(sampling::apply_penalties(logits, bad, p, scratch), InvalidArgument);
    EXPECT_TRUE(std::all_of(scratch.begin(), scratch.end(), [](int32_t c) { return c == 0; }));
    std::vector<float> again = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    const std::vector<int32_t> once = {2};
    sampling::apply_penalties(again, once, p, scratch);
    EXPECT_FLOAT_EQ(again[2], 1.0f / 1.5f - 0.5f - 0.25f);
    EXPECT_FLOAT_EQ(again[1], 1.0f);
}

TEST(Processors, TopKMatchesFullSort) {
    std::mt19937_64 rng(fresh_seed());
    for (size_t n : {1u, 2u, 97u, 4099u, 152064u}) {
        for (int32_t k : {1, 2, 40, 100}) {
            const auto logits = random_logits(rng, n, 3.0f, true);
            sampling::Candidates c;
            sampling::top_k(logits, k, c);
            auto want = ranked(logits);
            want.resize(std::min(want.size(), static_cast<size_t>(k)));
            EXPECT_EQ(tokens_of(c), want) << "vocab " << n << " k " << k;
            EXPECT_TRUE(c.sorted);
        }
    }
}

TEST(Processors, TopKSkipsMaskedTokens) {
    const std::vector<float> logits = {-kInf, 1.0f, kNaN, -kInf, 0.0f};
    sampling::Candidates c;
    sampling::top_k(logits, 4, c);
    EXPECT_EQ(tokens_of(c), (std::vector<int32_t>{1, 4}));
}

// Full-sort reference for top_p: the size of the ranked prefix whose mass reaches p, or 0 when
// the running mass passes within 1e-9 of p at the cut (float vs double exp could then disagree).
size_t nucleus_size(const std::vector<float>& logits, const std::vector<int32_t>& order, float p) {
    const double m = logits[order[0]];
    double z = 0.0;
    for (float l : logits) z += std::exp(l - m);
    double cum = 0.0;
    for (size_t i = 0; i < order.size(); ++i) {
        const double prev = cum;
        cum += std::exp(logits[order[i]] - m) / z;
        if (cum >= p) return std::min(cum - p, p - prev) < 1e-9 ? 0 : i + 1;
    }
    return order.size();
}

// top_p from an unsorted vocabulary: the bucketed search must agree with a full sort whatever
// the nucleus size (one token, thousands, nearly all) and with heavy ties (one bucket = all).

TEST(Processors, TopPMatchesFullSortReference) {
    std::mt19937_64 rng(fresh_seed());
    for (size_t n : {1500u, 152064u}) {
        for (float scale : {40.0f, 4.0f, 1.0f, 0.2f, 0.0f}) {
            for (float p : {0.3f, 0.9f, 0.999f}) {
                const auto logits = random_logits(rng, n, scale, scale > 0.5f);
                const auto order = ranked(logits);
                const size_t keep = nucleus_size(logits, order, p);
                if (keep == 0) continue;  // too close to call
                sampling::Candidates c;
                sampling::all_candidates(logits, c);
                sampling::top_p(c, p);
                // A large unsorted set keeps its id order; either way it is the ranked prefix.
                std::vector<int32_t> want(order.begin(),
                                          order.begin() + static_cast<std::ptrdiff_t>(keep));
                if (!c.sorted) std::sort(want.begin(), want.end());
                ASSERT_EQ(tokens_of(c), want) << "vocab " << n << " scale " << scale << " p " << p;
            }
        }
    }
}

TEST(Processors, MinPSameSurvivorsSortedOrNot) {
    std::mt19937_64 rng(fresh_seed());
    const auto logits = random_logits(rng, 5003, 2.0f, true);
    const float p = 0.05f;
    const double threshold = *std::max_element(logits.begin(), logits.end()) + std::log(0.05);
    sampling::Candidates unsorted, sorted;
    sampling::all_candidates(logits, unsorted);
    sampling::top_k(logits, 5003, sorted);
    sampling::min_p(unsorted, p);
    sampling::min_p(sorted, p);
    std::vector<int32_t> want;
    for (size_t i = 0; i < logits.size(); ++i)
        if (logits[i] >= threshold) want.push_back(static_cast<int32_t>(i));
    EXPECT_EQ(tokens_of(unsorted), want);  // id order preserved
    auto s = tokens_of(sorted);
    std::sort(s.begin(), s.end());
    EXPECT_EQ(s, want);
}

TEST(Processors, SoftmaxWithTemperature) {
    sampling::Candidates c;
    c.items = {{3, 2.0f}, {0, -1.0f}, {9, 0.5f}, {4, -200.0f}};
    std::vector<float> w(7, std::numeric_limits<float>::quiet_NaN());
    const double total = sampling::softmax(c, 0.5f, w);
    const double e[] = {1.0, std::exp(-6.0), std::exp(-3.0), 0.0};  // exp((l - max) / T)
    ASSERT_EQ(w.size(), 4u);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(w[i], e[i], 3e-7 * e[i]) << i;
    EXPECT_NEAR(total, e[0] + e[1] + e[2], 1e-6);
}

// The vectorisable exp used by the processors, against libm in double over its whole domain.
TEST(Processors, FastExpWithinStatedAccuracy) {
    double worst = 0.0;
    for (int i = 0; i <= 870000; ++i) {
        const float x = static_cast<float>(-i) * 1e-4f;
        const double want = std::exp(static_cast<double>(x));
        worst = std::max(worst, std::abs(sampling::exp_nonpositive(x) - want) / want);
    }
    EXPECT_LT(worst, 3e-7);
    EXPECT_EQ(sampling::exp_nonpositive(0.0f), 1.0f);
    EXPECT_EQ(sampling::exp_nonpositive(-100.0f), 0.0f);
    EXPECT_EQ(sampling::exp_nonpositive(-kInf), 0.0f);
}

TEST(Logprobs, MatchDoubleReference) {
    std::mt19937_64 rng(fresh_seed());
    auto logits = random_logits(rng, 49157, 5.0f, true);
    logits[11] = -kInf;
    double m = -1e300, z = 0.0;
    for (float l : logits) m = std::max(m, static_cast<double>(l));
    for (float l : logits) z += std::exp(l - m);
    const double lse = m + std::log(z);
    std::vector<float> out(logits.size(), kNaN);
    log_softmax(logits, out);
    for (size_t i = 0; i < logits.size(); ++i) {
        if (i == 11) {
            ASSERT_EQ(out[i], -kInf);
            continue;
        }
        ASSERT_NEAR(out[i], logits[i] - lse, 1e-5) << i;
    }
    EXPECT_NEAR(token_logprob(logits, 123), logits[123] - lse, 1e-5);
    EXPECT_THROW(token_logprob(logits, 49157), InvalidArgument);
    const auto top = top_logprobs(logits, 5);
    const auto order = ranked(logits);
    ASSERT_EQ(top.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
        EXPECT_EQ(top[i].token, order[i]);
        EXPECT_NEAR(top[i].logprob, logits[order[i]] - lse, 1e-5);
    }
}

}  // namespace
}  // namespace vela
