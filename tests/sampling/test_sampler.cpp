// Sampler behaviour: seeded reproducibility, the RNG stream itself, and a chi-square test that
// the drawn tokens follow distribution().
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "core/error.h"
#include "sampling/logprobs.h"
#include "sampling/sampler.h"

namespace vela {
namespace {

std::vector<float> fixed_logits(size_t n, uint64_t seed, float scale) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

std::vector<int32_t> generate(const SamplingParams& p, const std::vector<float>& logits, int n) {
    Sampler sampler(p);
    std::vector<int32_t> history = {1, 2, 3};
    for (int i = 0; i < n; ++i) {
        std::vector<float> row = logits;
        history.push_back(sampler.sample(row, history));
    }
    return history;
}

TEST(Sampler, SameSeedSameTokensDifferentSeedsDiffer) {
    const auto logits = fixed_logits(4099, 7, 1.5f);
    SamplingParams p;
    p.repetition_penalty = 1.2f;
    p.seed = 1234;
    const auto a = generate(p, logits, 300);
    EXPECT_EQ(a, generate(p, logits, 300));
    p.seed = 1235;
    EXPECT_NE(a, generate(p, logits, 300));
}

TEST(Sampler, RandomSeedIsDrawnAndReported) {
    SamplingParams p;  // seed = kRandomSeed
    Sampler a(p), b(p);
    EXPECT_NE(a.seed(), SamplingParams::kRandomSeed);
    EXPECT_NE(a.seed(), b.seed());  // 2^-64 chance of a false failure
    p.seed = a.seed();
    Sampler replay(p);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(a.uniform(), replay.uniform());
}

// The stream is std::mt19937_64 (fully specified by the standard) with our own bit conversion,
// so it is the same with every standard library: the standard fixes the 10000th output of a
// default-seeded engine.
TEST(Sampler, UniformStreamIsPlatformIndependent) {
    SamplingParams p;
    p.seed = std::mt19937_64::default_seed;
    Sampler s(p);
    for (int i = 0; i < 9999; ++i) {
        const double u = s.uniform();
        ASSERT_TRUE(u >= 0.0 && u < 1.0);
    }
    EXPECT_EQ(s.uniform(), static_cast<double>(9981545732273789042ull >> 11) * 0x1.0p-53);
}

TEST(Sampler, DistributionDoesNotAdvanceTheRng) {
    const auto logits = fixed_logits(512, 3, 2.0f);
    SamplingParams p;
    p.seed = 99;
    Sampler a(p), b(p);
    std::vector<float> probs;
    a.distribution(logits, {}, probs);
    auto r1 = logits, r2 = logits;
    EXPECT_EQ(a.sample(r1, {}), b.sample(r2, {}));
}

TEST(Sampler, AllMaskedThrows) {
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> logits = {-inf, -inf, std::numeric_limits<float>::quiet_NaN()};
    Sampler s(SamplingParams{});
    EXPECT_THROW(s.sample(logits, {}), InvalidArgument);
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    Sampler g(greedy);
    EXPECT_THROW(g.sample(logits, {}), InvalidArgument);
}

TEST(Sampler, MaskedTokensAreNeverDrawn) {
    auto logits = fixed_logits(300, 5, 0.1f);
    for (size_t i = 0; i < logits.size(); i += 2)
        logits[i] = -std::numeric_limits<float>::infinity();
    SamplingParams p;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 5;
    Sampler s(p);
    for (int i = 0; i < 2000; ++i) {
        auto row = logits;
        ASSERT_EQ(s.sample(row, {}) % 2, 1);
    }
}

// Wilson-Hilferty approximation of the chi-square quantile for z standard deviations.
double chi2_quantile(double df, double z) {
    const double a = 2.0 / (9.0 * df);
    return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

// 200k draws with a fixed seed against the processed distribution, every processor active.
TEST(Sampler, EmpiricalFrequenciesMatchDistribution) {
    const auto logits = fixed_logits(1000, 11, 2.0f);
    const std::vector<int32_t> history = {5, 5, 17, 300, 999, 42, 42, 42};
    SamplingParams p;
    p.temperature = 0.9f;
    p.top_k = 60;
    p.top_p = 0.97f;
    p.min_p = 0.01f;
    p.repetition_penalty = 1.1f;
    p.frequency_penalty = 0.2f;
    p.presence_penalty = 0.1f;
    p.seed = 20240611;
    Sampler s(p);
    std::vector<float> probs;
    s.distribution(logits, history, probs);
    const int n = 200000;
    std::vector<int64_t> counts(logits.size(), 0);
    for (int i = 0; i < n; ++i) {
        auto row = logits;
        ++counts[static_cast<size_t>(s.sample(row, history))];
    }
    // Bins with fewer than 5 expected draws are pooled so the chi-square approximation holds.
    double chi2 = 0.0, pooled_expected = 0.0, pooled_observed = 0.0;
    int bins = 0, support = 0;
    for (size_t t = 0; t < probs.size(); ++t) {
        if (probs[t] == 0.0f) {
            ASSERT_EQ(counts[t], 0) << "token " << t << " is outside the distribution";
            continue;
        }
        ++support;
        const double e = probs[t] * n;
        if (e < 5.0) {
            pooled_expected += e;
            pooled_observed += static_cast<double>(counts[t]);
            continue;
        }
        chi2 += (counts[t] - e) * (counts[t] - e) / e;
        ++bins;
    }
    if (pooled_expected > 0.0) {
        chi2 += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) /
                pooled_expected;
        ++bins;
    }
    ASSERT_GE(support, 10) << "the test needs a spread-out distribution";
    EXPECT_LT(chi2, chi2_quantile(bins - 1, 3.72)) << bins << " bins";  // p ~ 1e-4
}

// sample_from(): unnormalised weights, zeros never drawn, frequencies match (chi-square).
TEST(Sampler, SampleFromExplicitDistribution) {
    const std::vector<float> w = {0.0f, 3.0f, 0.0f, 1.0f, 0.5f, 0.0f, 5.5f, 0.0f};
    const double total = 10.0;
    SamplingParams p;
    p.seed = 77;
    Sampler s(p);
    const int n = 100000;
    std::vector<int64_t> counts(w.size(), 0);
    for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(s.sample_from(w))];
    double chi2 = 0.0;
    for (size_t t = 0; t < w.size(); ++t) {
        if (w[t] == 0.0f) {
            EXPECT_EQ(counts[t], 0) << t;
            continue;
        }
        const double e = w[t] / total * n;
        chi2 += (counts[t] - e) * (counts[t] - e) / e;
    }
    EXPECT_LT(chi2, chi2_quantile(3, 3.72));
    const std::vector<float> zero(4, 0.0f), negative = {1.0f, -0.5f};
    const std::vector<float> nan = {1.0f, std::numeric_limits<float>::quiet_NaN()};
    EXPECT_THROW(s.sample_from(zero), InvalidArgument);
    EXPECT_THROW(s.sample_from(negative), InvalidArgument);
    EXPECT_THROW(s.sample_from(nan), InvalidArgument);
}

// sample_top(): the draw from a row's ranked best tokens equals sample() on the whole row, draw
// for draw with the same seed, over temperatures, top-k, top-p and min-p, for lists longer than
// top_k (the device ranks the largest k of the batch) and for rows with fewer listable tokens
// than top_k (the list then ends at token -1).
TEST(Sampler, SampleTopEqualsSampleOnTheWholeRow) {
    const float inf = std::numeric_limits<float>::infinity();
    std::mt19937_64 rng(99);
    int checked = 0;
    for (float temperature : {0.3f, 1.0f, 1.7f}) {
        for (int32_t top_k : {1, 5, 40, 1000}) {
            for (float top_p : {1.0f, 0.9f, 0.4f}) {
                for (float min_p : {0.0f, 0.05f}) {
                    SamplingParams p;
                    p.temperature = temperature;
                    p.top_k = top_k;
                    p.top_p = top_p;
                    p.min_p = min_p;
                    p.seed = rng();
                    Sampler whole(p), top(p);
                    for (int draw = 0; draw < 40; ++draw) {
                        std::vector<float> row = fixed_logits(4099, rng(), 2.0f);
                        if (draw % 4 == 1)  // ties: a coarse grid
                            for (float& x : row) x = std::round(x * 2.f) / 2.f;
                        if (draw % 4 == 2)  // only three listable tokens
                            for (size_t i = 3; i < row.size(); ++i) row[i] = -inf;
                        sampling::Candidates ranked;
                        sampling::top_k(row, top_k + (draw % 2) * 17, ranked);
                        std::vector<sampling::Candidate> list = ranked.items;
                        list.resize(static_cast<size_t>(top_k + (draw % 2) * 17), {-1, -inf});
                        ASSERT_EQ(top.sample_top(list), whole.sample(row, {}))
                            << "t " << temperature << " k " << top_k << " p " << top_p << " min_p "
                            << min_p << " draw " << draw;
                        ++checked;
                    }
                }
            }
        }
    }
    EXPECT_EQ(checked, 3 * 4 * 3 * 2 * 40);
    SamplingParams p;
    Sampler s(p);
    const std::vector<sampling::Candidate> none(40, {-1, -inf});
    EXPECT_THROW(s.sample_top(none), InvalidArgument);
}

// Top-p / min-p without top-k (Sampler::nucleus) from the row's 1024 best tokens and its
// log-sum-exp: where the list holds the survivors, sample_top() gives sample()'s token on the whole
// row, draw for draw; where it may not (flat rows: the nucleus or min-p's threshold reaches past
// the list), it declines (-1) without touching the RNG, and sample() on the row draws instead,
// as the engine does. Peaked rows, flat rows, and rows of 300 listable tokens (the whole row
// listed: top_p then keeps its ranked order).
TEST(Sampler, SampleTopNucleusEqualsSampleOrDeclines) {
    const float inf = std::numeric_limits<float>::infinity();
    std::mt19937_64 rng(123);
    int drawn = 0, declined = 0;
    const std::pair<float, float> cuts[] = {{0.9f, 0.0f},  {0.5f, 0.0f},   {1.0f, 0.05f},
                                            {0.95f, 0.1f}, {1.0f, 0.001f}, {0.999f, 0.0f}};
    for (float temperature : {0.5f, 1.0f, 1.5f}) {
        for (const auto& [top_p, min_p] : cuts) {
            SamplingParams p;
            p.temperature = temperature;
            p.top_k = 0;
            p.top_p = top_p;
            p.min_p = min_p;
            p.seed = rng();
            ASSERT_TRUE(Sampler::nucleus(p) && Sampler::samples_top(p, 4099));
            Sampler whole(p), top(p);
            for (int draw = 0; draw < 60; ++draw) {
                std::vector<float> row = fixed_logits(4099, rng(), draw % 3 == 0 ? 0.5f : 4.0f);
                if (draw % 5 == 4)
                    for (size_t i = 300; i < row.size(); ++i) row[i] = -inf;
                sampling::Candidates ranked;
                sampling::top_k(row, Sampler::kNucleusList, ranked);
                std::vector<sampling::Candidate> list = ranked.items;
                list.resize(Sampler::kNucleusList, {-1, -inf});
                const int32_t t = top.sample_top(list, log_sum_exp(row));
                std::vector<float> a = row, b = row;
                const int32_t w = whole.sample(a, {});
                if (t < 0) {
                    ++declined;
                    ASSERT_EQ(top.sample(b, {}), w) << "after declining, draw " << draw;
                } else {
                    ++drawn;
                    ASSERT_EQ(t, w) << "t " << temperature << " p " << top_p << " min_p " << min_p
                                    << " draw " << draw;
                }
            }
        }
    }
    EXPECT_GT(declined, 0);
    EXPECT_GT(drawn, 2 * declined);
    // Without the row's log-sum-exp nothing is drawn.
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 0.9f;
    Sampler s(p);
    const std::vector<sampling::Candidate> one = {{3, 1.0f}, {-1, -inf}};
    EXPECT_EQ(s.sample_top(one), -1);
    EXPECT_EQ(s.sample_top(one, 1.0), 3);  // the whole row listed: its only token
}

// Penalised rows on the device: the penalties applied to the row by (token, count) entries of
// the window (as ModelRunner lists them for Backend::apply_penalties), then the ranked list of
// Sampler::top_list_size() entries: sample_top() gives sample()'s token on the whole row with the
// history, greedy (a list of one) and sampled. The history repeats the row's best tokens, so
// the penalties change the ranking.
TEST(Sampler, SampleTopAfterPenaltiesEqualsSampleOnTheWholeRow) {
    std::mt19937_64 rng(7);
    int checked = 0, changed = 0;
    for (float temperature : {0.0f, 0.7f, 1.3f}) {
        for (int32_t last_n : {8, -1}) {
            for (float repetition : {1.0f, 1.3f, 0.8f}) {
                SamplingParams p;
                p.temperature = temperature;
                p.top_k = 40;
                p.min_p = 0.02f;
                p.penalty_last_n = last_n;
                p.repetition_penalty = repetition;
                p.frequency_penalty = 0.5f;
                p.presence_penalty = 0.25f;
                p.seed = rng();
                Sampler whole(p), top(p);
                for (int draw = 0; draw < 30; ++draw) {
                    const std::vector<float> row = fixed_logits(4099, rng(), 2.0f);
                    sampling::Candidates best;
                    sampling::top_k(row, 12, best);
                    std::vector<int32_t> history;
                    for (int i = 0; i < 30; ++i)
                        history.push_back(best.items[rng() % best.items.size()].token);
                    // Entries as ModelRunner::add_penalties makes them.
                    const size_t n =
                        last_n < 0 ? history.size() : std::min(history.size(), size_t(last_n));
                    std::map<int32_t, int32_t> counts;
                    for (size_t i = history.size() - n; i < history.size(); ++i)
                        ++counts[history[i]];
                    std::vector<float> penalised = row;
                    for (const auto& [token, count] : counts) {
                        penalised[token] =
                            sampling::penalised_logit(penalised[token], count, p.repetition_penalty,
                                                      p.frequency_penalty, p.presence_penalty);
                    }
                    sampling::Candidates ranked;
                    sampling::top_k(penalised, Sampler::top_list_size(p), ranked);
                    changed += ranked.items[0].token != best.items[0].token;
                    std::vector<float> copy = row;
                    ASSERT_EQ(top.sample_top(ranked.items), whole.sample(copy, history))
                        << "t " << temperature << " last_n " << last_n << " rep " << repetition
                        << " draw " << draw;
                    ++checked;
                }
            }
        }
    }
    EXPECT_EQ(checked, 3 * 2 * 3 * 30);
    EXPECT_GT(changed, checked / 4);  // the penalties did move the best token
}

}  // namespace
}  // namespace vela
