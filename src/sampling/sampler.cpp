#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace vela {
namespace {

uint64_t resolve_seed(uint64_t seed) {
    if (seed != SamplingParams::kRandomSeed) return seed;
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

const SamplingParams& validated(const SamplingParams& p) {
    p.validate();
    return p;
}

[[noreturn]] void fail_no_candidate(size_t vocab) {
    fail<InvalidArgument>("sampling: none of the {} logits is above -inf (all masked or NaN)",
                          vocab);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params)
    : params_(validated(params)), seed_(resolve_seed(params.seed)), rng_(seed_) {}

double Sampler::uniform() {
    // The top 53 bits of one 64-bit draw, scaled exactly into [0, 1).
    return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

bool Sampler::process(std::span<float> logits, std::span<const int32_t> history) {
    sampling::apply_penalties(logits, history, params_, counts_);
    if (params_.temperature == 0.0f) return false;
    const auto k = params_.top_k;
    if (k > 0 && static_cast<size_t>(k) < logits.size()) {
        sampling::top_k(logits, k, candidates_);
    } else {
        sampling::all_candidates(logits, candidates_);
    }
    if (candidates_.items.empty()) fail_no_candidate(logits.size());
    truncate_and_weigh();
    return true;
}

void Sampler::truncate_and_weigh() {
    sampling::top_p(candidates_, params_.top_p);
    sampling::min_p(candidates_, params_.min_p);
    total_ = sampling::softmax(candidates_, params_.temperature, weights_);
}

int32_t Sampler::draw() {
    // Inverse CDF over the canonical candidate order.
    const double target = uniform() * total_;
    double cum = 0.0;
    for (size_t i = 0; i < weights_.size(); ++i) {
        cum += weights_[i];
        if (target < cum) return candidates_.items[i].token;
    }
    // Rounding (total_ is summed in another order) left target on top: the last token that has
    // any weight, never an underflowed one.
    size_t last = weights_.size() - 1;
    while (last > 0 && weights_[last] == 0.0f) --last;
    return candidates_.items[last].token;
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
    if (!process(logits, history)) {
        const int32_t best = sampling::argmax(logits);
        if (best < 0) fail_no_candidate(logits.size());
        return best;
    }
    return draw();
}

int32_t Sampler::sample_top(std::span<const sampling::Candidate> ranked, double lse) {
    VELA_ASSERT(samples_top(params_, std::numeric_limits<int64_t>::max()));
    if (nucleus(params_)) {
        if (ranked.empty() || ranked[0].token < 0)
            fail<InvalidArgument>("sampling: no logit above -inf (all masked or NaN)");
        if (!sampling::truncate_ranked(ranked, lse, params_.top_p, params_.min_p, candidates_))
            return -1;
        total_ = sampling::softmax(candidates_, params_.temperature, weights_);
        return draw();
    }
    // sample() keeps the top_k best, ranked (greedy: the best); a list padded past the row's
    // listable tokens ends at the first token -1.
    size_t n = std::min(ranked.size(), static_cast<size_t>(top_list_size(params_)));
    for (size_t i = 0; i < n; ++i) {
        if (ranked[i].token < 0) {
            n = i;
            break;
        }
    }
    if (n == 0) fail<InvalidArgument>("sampling: no logit above -inf (all masked or NaN)");
    if (params_.temperature == 0.0f) return ranked[0].token;  // argmax, ties to the lowest id
    candidates_.items.assign(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n));
    candidates_.sorted = true;
    truncate_and_weigh();
    return draw();
}

int32_t Sampler::sample_from(std::span<const float> probs) {
    double total = 0.0;
    for (float w : probs) {
        if (!(w >= 0.0f))
            fail<InvalidArgument>("sampling: distribution has a weight {} (< 0 or NaN)", w);
        total += w;
    }
    if (!(total > 0.0) || !std::isfinite(total))
        fail<InvalidArgument>("sampling: distribution over {} tokens sums to {}", probs.size(),
                              total);
    const double target = uniform() * total;
    double cum = 0.0;
    int32_t last_positive = 0;
    for (size_t i = 0; i < probs.size(); ++i) {
        if (probs[i] == 0.0f) continue;  // a zero weight is never drawn, even at u = 0
        cum += probs[i];
        last_positive = static_cast<int32_t>(i);
        if (target < cum) return last_positive;
    }
    return last_positive;  // rounding left target at the very top
}

void Sampler::distribution(std::span<const float> logits, std::span<const int32_t> history,
                           std::vector<float>& probs) {
    penalized_.assign(logits.begin(), logits.end());
    probs.assign(logits.size(), 0.0f);
    if (!process(penalized_, history)) {
        const int32_t best = sampling::argmax(penalized_);
        if (best < 0) fail_no_candidate(logits.size());
        probs[static_cast<size_t>(best)] = 1.0f;
        return;
    }
    for (size_t i = 0; i < weights_.size(); ++i)
        probs[static_cast<size_t>(candidates_.items[i].token)] =
            static_cast<float>(weights_[i] / total_);
}

}  // namespace vela
