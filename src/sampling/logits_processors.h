#pragma once
// The processors of the sampling chain, in llama.cpp's default order:
//   penalties -> top_k -> top_p -> min_p -> temperature -> draw.
// top_p and min_p look at the temperature-1 distribution of the survivors so far; temperature
// only reshapes what survives. Each step does only the sorting it needs: top_k selects with a
// bounded heap; top_p over a large unsorted set histograms the probability mass by logit and
// sorts only the bucket where the nucleus ends; min_p is one linear pass.
//
// Determinism: candidates are ordered either by token id (never reordered) or by the strict
// total order (logit desc, token asc). Both are canonical, so the survivors and their order do
// not depend on the standard library's sort/selection algorithms.
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"
#include "sampling/sampling_params.h"

namespace vela::sampling {

struct Candidate {
    int32_t token;
    float logit;
};

// (logit desc, token asc): a strict total order, so a sorted prefix is unique.
inline bool ranks_before(const Candidate& a, const Candidate& b) {
    return a.logit != b.logit ? a.logit > b.logit : a.token < b.token;
}

struct Candidates {
    std::vector<Candidate> items;
    bool sorted = false;  // false: ascending token id; true: ranks_before order
    std::vector<float>
        scratch;  // processors' work buffer, kept to avoid a vocab-sized allocation per token
};

// One logit seen `count` times in the penalty window: CTRL's repetition penalty (divide a
// positive logit, multiply a negative one), then OpenAI's count * frequency + presence.
// (Backend::apply_penalties computes the same floats on the device.)
inline float penalised_logit(float l, int32_t count, float repetition, float frequency,
                             float presence) {
    l = l > 0.0f ? l / repetition : l * repetition;
    return l - (static_cast<float>(count) * frequency + presence);
}

// Calls f(token, count) once for each distinct token of the penalty window (the last
// `penalty_last_n` entries of history; all when negative), in order of first appearance, with
// its count there. `counts` is a work table the caller keeps (grown to n_vocab, all zero between
// calls). Throws InvalidArgument for a token outside [0, n_vocab), before any call.
template <class F>
void for_each_penalised(std::span<const int32_t> history, const SamplingParams& params,
                        size_t n_vocab, std::vector<int32_t>& counts, F&& f) {
    const size_t n = params.penalty_last_n < 0
                         ? history.size()
                         : std::min(history.size(), static_cast<size_t>(params.penalty_last_n));
    const std::span<const int32_t> window = history.last(n);
    // Validate first: a throw must not leave the count table dirty.
    for (int32_t t : window)
        if (t < 0 || static_cast<size_t>(t) >= n_vocab)
            fail<InvalidArgument>("sampling: history token {} outside the vocabulary of {}", t,
                                  n_vocab);
    // A vocab-sized table, zero between calls: O(window) per token even for a whole long context.
    if (counts.size() < n_vocab) counts.resize(n_vocab, 0);
    for (int32_t t : window) ++counts[static_cast<size_t>(t)];
    for (int32_t t : window) {
        int32_t& count = counts[static_cast<size_t>(t)];
        if (count == 0) continue;  // this token was already passed on
        f(t, count);
        count = 0;
    }
}

// Applies the penalties to tokens seen in the last `penalty_last_n` entries of history.
// `counts` is a work table the caller keeps (grown to the vocab, all zero between calls).
// Throws InvalidArgument for a history token outside logits.
void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     const SamplingParams& params, std::vector<int32_t>& counts);

// Exact argmax, ties to the lowest id, NaN ignored; -1 when no logit is above -inf.
int32_t argmax(std::span<const float> logits);

// Every token with a logit above -inf (NaN dropped), in id order.
void all_candidates(std::span<const float> logits, Candidates& out);

// The k best tokens of `logits`, sorted. k >= logits.size() keeps everything (still sorted).
void top_k(std::span<const float> logits, int32_t k, Candidates& out);

// Keeps the smallest ranked prefix whose softmax mass reaches p (the crossing token included).
// A sorted set stays sorted; a large unsorted one keeps its id order.
void top_p(Candidates& c, float p);

// Keeps tokens whose probability is at least min_p times the largest one's.
void min_p(Candidates& c, float p);

// top_p then min_p over a whole row, all_candidates(row), from its best tokens alone: `ranked`
// holds the row's first entries as top_k ranks them (a list padded with token -1 past the row's
// listable tokens) and `lse` is log(sum(exp(row))) (log_sum_exp). Puts the survivors into `out`
// in the order top_p and min_p leave them there (ranked for a row of <= 1024 listable tokens
// under top_p, else id order), and returns true; or returns false when the list may not hold
// every survivor (the nucleus reaches past it, or so may min_p's threshold), leaving `out` as
// it was. The nucleus mass is compared with p * exp(lse - max): rounding may place its edge
// one token off top_p's on the row itself.
bool truncate_ranked(std::span<const Candidate> ranked, double lse, float top_p, float min_p,
                     Candidates& out);

// Unnormalised softmax weights exp((logit - max) / temperature), in candidate order, and their
// sum (temperature > 0). Float exponentials within ~3e-7, double sum.
double softmax(const Candidates& c, float temperature, std::vector<float>& weights);

}  // namespace vela::sampling
