// The verifier keeps the target's distribution exactly, whatever the drafter proposes.
//
// A toy "language model" over 8 tokens gives logits as a pseudo-random function of the prefix
// (so the distribution of the second token depends on the first, and penalties depend on the
// history). Each draw speculates from a fixed prompt with k = 3 until two tokens are emitted;
// the pair's empirical distribution over 10^5 draws is compared with the exact joint
// p(a | prompt) p(b | prompt, a), both from Sampler::distribution (the processing chain itself
// is tested against an independent reference in tests/sampling). Chi-square test, cells with
// an expected count below 5 pooled; the p-value from the Wilson-Hilferty approximation of the
// chi-square tail (accurate to a few percent in the tail at these degrees of freedom); the
// test fails at p < 1e-4, so a correct verifier fails one run in 10^4 per setting. Drafts:
// chains drawn from q, fixed token trees, and a draft model's spine trees (q's argmax chain
// and next-best siblings, deterministic, verified with one-hot q under any sampling settings).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "../common/test_seed.h"
#include "sampling/sampler.h"
#include "spec/spine_tree.h"
#include "spec/verifier.h"

namespace vela::spec {
namespace {

constexpr size_t kVocab = 8;
constexpr int kDraws = 100000;
constexpr int32_t kDraftLen = 3;
constexpr double kRejectBelow = 1e-4;

// Logits for the next token after `prefix`: N(0, 1.5^2) per token from a hash of the prefix.
std::vector<float> toy_logits(std::span<const int32_t> prefix, uint64_t salt) {
    uint64_t h = 1469598103934665603ull ^ salt;
    for (int32_t t : prefix) h = (h ^ static_cast<uint64_t>(t + 1)) * 1099511628211ull;
    std::mt19937_64 rng(h);
    std::normal_distribution<float> normal(0.0f, 1.5f);
    std::vector<float> logits(kVocab);
    for (float& l : logits) l = normal(rng);
    return logits;
}

// A drafter's q for one prefix (vocab floats summing to 1); null: deterministic token 7.
using DraftDistribution = std::function<std::vector<float>(std::span<const int32_t>)>;

struct Setting {
    const char* name;
    SamplingParams params;
    DraftDistribution q;
    bool tree = false;   // a deterministic token tree instead of q's chain
    bool spine = false;  // a draft model's spine tree from q (spine_tree.h) instead
};

std::vector<float> softmax(std::vector<float> l, float temperature) {
    float m = *std::max_element(l.begin(), l.end());
    double sum = 0;
    for (float& x : l) sum += (x = std::exp((x - m) / temperature));
    for (float& x : l) x = static_cast<float>(x / sum);
    return l;
}

// Draws a draft of kDraftLen tokens after `history`.
Draft make_draft(const DraftDistribution& q, std::vector<int32_t> history, std::mt19937_64& rng) {
    Draft d;
    for (int32_t i = 0; i < kDraftLen; ++i) {
        if (!q) {
            d.tokens.push_back(static_cast<int32_t>(kVocab - 1));
            history.push_back(d.tokens.back());
            continue;
        }
        const std::vector<float> probs = q(history);
        std::discrete_distribution<int32_t> pick(probs.begin(), probs.end());
        d.tokens.push_back(pick(rng));
        d.probs.insert(d.probs.end(), probs.begin(), probs.end());
        history.push_back(d.tokens.back());
    }
    return d;
}

// A deterministic token tree after `history`: three candidates for the next token (one of them
// repeated, which the verifier must survive), two under the first, one under the second, and a
// third level under the first's first child. Tokens vary with the history.
Draft make_tree(const std::vector<int32_t>& history) {
    const auto h = static_cast<int32_t>(history.back() + history.size());
    auto t = [&](int32_t k) { return (h + k) % static_cast<int32_t>(kVocab); };
    Draft d;
    d.tokens = {t(1), t(4), t(1), t(7), t(2), t(5), t(3)};
    d.parents = {-1, -1, -1, 0, 0, 1, 3};
    return d;
}

// A draft model's spine tree after `history` (DraftModelDrafter with a width): q's argmax chain,
// 3 deep, with the next-best tokens of q beside it (2, 1 and 1 siblings by depth).
Draft make_spine_tree(const DraftDistribution& q, std::vector<int32_t> history) {
    Draft d;
    int32_t spine = -1;
    for (int32_t width : {3, 2, 2}) {
        const std::vector<float> probs = q(history);
        const auto best =
            static_cast<int32_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
        spine = append_spine_level(best, probs, 0.0f, width, spine, d);
        history.push_back(best);
    }
    return d;
}

// Upper tail of the chi-square distribution (Wilson-Hilferty).
double chi_square_p_value(double chi2, int df) {
    const double v = 2.0 / (9.0 * df);
    const double z = (std::cbrt(chi2 / df) - (1.0 - v)) / std::sqrt(v);
    return 0.5 * std::erfc(z / std::sqrt(2.0));
}

constexpr uint64_t kTargetSalt = 11;

// The target's rows for a draft: row 0 after `seq`, row 1 + i after node i's path (for a
// chain: the first i + 1 drafts).
std::vector<float> target_rows(const std::vector<int32_t>& seq, const Draft& draft) {
    std::vector<float> rows = toy_logits(seq, kTargetSalt);
    for (int64_t i = 0; i < draft.size(); ++i) {
        std::vector<int32_t> path;
        for (int64_t a = i; a >= 0; a = draft.is_tree() ? draft.parents[a] : a - 1) {
            path.insert(path.begin(), draft.tokens[static_cast<size_t>(a)]);
        }
        std::vector<int32_t> prefix = seq;
        prefix.insert(prefix.end(), path.begin(), path.end());
        const std::vector<float> l = toy_logits(prefix, kTargetSalt);
        rows.insert(rows.end(), l.begin(), l.end());
    }
    return rows;
}

// Runs kDraws speculative draws and returns the chi-square p-value of the emitted pairs.
double emitted_pair_p_value(const Setting& s, uint32_t seed) {
    SamplingParams params = s.params;
    params.seed = seed;
    Sampler sampler(params);
    std::mt19937_64 draft_rng(seed + 1);
    Verifier verifier;
    const std::vector<int32_t> prompt{3, 1, 3};
    std::vector<double> counts(kVocab * kVocab, 0.0);
    for (int n = 0; n < kDraws; ++n) {
        std::vector<int32_t> seq = prompt;
        while (seq.size() < prompt.size() + 2) {
            const Draft draft = s.spine  ? make_spine_tree(s.q, seq)
                                : s.tree ? make_tree(seq)
                                         : make_draft(s.q, seq, draft_rng);
            std::vector<float> rows = target_rows(seq, draft);
            const Verdict v = verifier.verify(sampler, rows, seq, draft);
            EXPECT_EQ(static_cast<int64_t>(v.tokens.size()), v.n_accepted + 1);
            seq.insert(seq.end(), v.tokens.begin(), v.tokens.end());
        }
        counts[static_cast<size_t>(seq[3]) * kVocab + static_cast<size_t>(seq[4])] += 1;
    }
    // Exact joint distribution of the first two tokens.
    std::vector<float> p1, p2;
    sampler.distribution(toy_logits(prompt, kTargetSalt), prompt, p1);
    double chi2 = 0, pooled_obs = 0, pooled_exp = 0;
    int cells = 0;
    for (size_t a = 0; a < kVocab; ++a) {
        std::vector<int32_t> h = prompt;
        h.push_back(static_cast<int32_t>(a));
        sampler.distribution(toy_logits(h, kTargetSalt), h, p2);
        for (size_t b = 0; b < kVocab; ++b) {
            const double expected = kDraws * static_cast<double>(p1[a]) * p2[b];
            const double observed = counts[a * kVocab + b];
            if (expected == 0.0) {
                EXPECT_EQ(observed, 0.0)
                    << "emitted a token the target never produces: " << a << " " << b;
            } else if (expected < 5.0) {
                pooled_obs += observed;
                pooled_exp += expected;
            } else {
                chi2 += (observed - expected) * (observed - expected) / expected;
                ++cells;
            }
        }
    }
    if (pooled_exp > 0) {
        chi2 += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
        ++cells;
    }
    const double p = chi_square_p_value(chi2, cells - 1);
    std::printf("%s: chi2 %.1f, %d cells, p = %.3g\n", s.name, chi2, cells, p);
    return p;
}

SamplingParams params(float temperature, int32_t top_k, float top_p, float min_p) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    return p;
}

std::vector<Setting> settings() {
    // A good drafter: the target's own softmax at another temperature; bad ones: uniform, one
    // that prefers the target's least likely tokens, and a fixed token (deterministic).
    const DraftDistribution close = [](std::span<const int32_t> h) {
        return softmax(toy_logits(h, kTargetSalt), 1.4f);
    };
    const DraftDistribution uniform = [](std::span<const int32_t>) {
        return std::vector<float>(kVocab, 1.0f / kVocab);
    };
    const DraftDistribution contrary = [](std::span<const int32_t> h) {
        std::vector<float> l = toy_logits(h, kTargetSalt);
        for (float& x : l) x = -x;
        return softmax(l, 0.5f);
    };
    SamplingParams penalised = params(1.0f, 6, 1.0f, 0.0f);
    penalised.repetition_penalty = 1.5f;
    penalised.presence_penalty = 0.7f;
    return {
        {"temperature 1, no truncation, close drafter", params(1.0f, 0, 1.0f, 0.0f), close},
        {"temperature 0.7, top-k 5, uniform drafter", params(0.7f, 5, 1.0f, 0.0f), uniform},
        {"temperature 1.3, top-p 0.8, min-p 0.05, contrary drafter", params(1.3f, 0, 0.8f, 0.05f),
         contrary},
        {"temperature 0.9, top-k 4, top-p 0.9, fixed-token drafter", params(0.9f, 4, 0.9f, 0.0f),
         nullptr},
        {"penalties, top-k 6, contrary drafter", penalised, contrary},
        {"temperature 1, top-p 0.9, token tree", params(1.0f, 0, 0.9f, 0.0f), nullptr, true},
        {"penalties, top-k 6, token tree", penalised, nullptr, true},
        {"temperature 1, top-p 0.9, spine tree, close drafter", params(1.0f, 0, 0.9f, 0.0f), close,
         false, true},
        {"penalties, top-k 6, spine tree, contrary drafter", penalised, contrary, false, true},
    };
}

TEST(VerifierDistribution, EmittedTokensFollowTheTarget) {
    for (const Setting& s : settings()) {
        const uint32_t seed = test::fresh_seed();
        EXPECT_GE(emitted_pair_p_value(s, seed), kRejectBelow) << s.name << ", seed " << seed;
    }
}

// Greedy (chains and trees): every emitted token is the argmax after what precedes it.
TEST(VerifierDistribution, GreedyEmitsTheArgmaxChain) {
    SamplingParams greedy = params(0.0f, 40, 0.95f, 0.05f);
    greedy.seed = 1;
    Sampler sampler(greedy);
    Verifier verifier;
    std::mt19937_64 rng(test::fresh_seed());
    const DraftDistribution uniform = [](std::span<const int32_t>) {
        return std::vector<float>(kVocab, 1.0f / kVocab);
    };
    for (int n = 0; n < 2000; ++n) {
        std::vector<int32_t> seq{static_cast<int32_t>(n % kVocab)};
        const Draft draft = n % 3 == 2 ? make_tree(seq) : make_draft(n % 3 ? uniform : nullptr, seq, rng);
        std::vector<float> rows = target_rows(seq, draft);
        const Verdict v = verifier.verify(sampler, rows, seq, draft);
        for (int32_t t : v.tokens) {
            const std::vector<float> l = toy_logits(seq, kTargetSalt);
            ASSERT_EQ(t, std::max_element(l.begin(), l.end()) - l.begin());
            seq.push_back(t);
        }
    }
}

}  // namespace
}  // namespace vela::spec
