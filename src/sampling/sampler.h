#pragma once
// One Sampler per sequence: runs the logits-processor chain (see logits_processors.h) and draws
// the next token from its own seeded RNG.
//
// Reproducibility: std::mt19937_64 is fully specified by the standard and the uniform draw is
// our own bit conversion, so the same seed and the same logits give the same tokens with any
// standard library (std::uniform_real_distribution would not).
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "sampling/logits_processors.h"
#include "sampling/sampling_params.h"

namespace vela {

class Sampler {
  public:
    // Validates params (throws InvalidArgument) and seeds the RNG.
    explicit Sampler(const SamplingParams& params);

    // logits: one row of vocab floats, modified in place by the penalties.
    // history: prompt + generated tokens so far (the penalties' window is taken from its end).
    // Throws InvalidArgument when no logit is above -inf or a history token is out of range.
    int32_t sample(std::span<float> logits, std::span<const int32_t> history);

    // The same draw from the row's best tokens alone: `ranked` holds at least the
    // top_list_size() best (token, logit) pairs of the row after its penalties, ranked as
    // sampling::top_k ranks them (Backend::apply_penalties, then Backend::top_k_rows, on the
    // device). Gives sample()'s token for the same row, history and RNG state. Only for params
    // with samples_top(). For nucleus() params `lse` is the row's log-sum-exp
    // (log_sum_exp), and the list may fall short of the survivors of top_p / min_p
    // (sampling::truncate_ranked): then there is no draw (the RNG is not advanced) and the
    // result is -1; sample() on the whole row draws instead.
    int32_t sample_top(std::span<const sampling::Candidate> ranked,
                       double lse = std::numeric_limits<double>::quiet_NaN());
    // Whether sample_top() can draw for these params from top_list_size() entries (the row has
    // n_vocab tokens): greedy (the first entry), temperature with 0 < top_k < n_vocab, or,
    // often, nucleus().
    static bool samples_top(const SamplingParams& p, int64_t n_vocab) {
        return p.temperature == 0.0f ||
               (p.temperature > 0.0f && p.top_k > 0 && p.top_k < n_vocab) || nucleus(p);
    }
    // Temperature with top_p and / or min_p, no top_k and no penalties: drawn from the row's
    // kNucleusList best tokens and its log-sum-exp where they hold the survivors.
    static bool nucleus(const SamplingParams& p) {
        return p.temperature > 0.0f && p.top_k <= 0 && (p.top_p < 1.0f || p.min_p > 0.0f) &&
               !p.penalties_enabled();
    }
    static constexpr int32_t kNucleusList = 1024;
    static int32_t top_list_size(const SamplingParams& p) {
        return p.temperature == 0.0f ? 1 : p.top_k > 0 ? p.top_k : kNucleusList;
    }

    // The final distribution after every processor, for rejection sampling and logprobs:
    // probs gets logits.size() entries, zero outside the survivors; one-hot when greedy.
    // Does not advance the RNG.
    void distribution(std::span<const float> logits, std::span<const int32_t> history,
                      std::vector<float>& probs);

    // Draws a token from an explicit distribution (non-negative weights, any positive sum), in
    // id order with one uniform() draw: the residual max(0, p - q) of speculative rejection
    // sampling is drawn this way. Throws InvalidArgument for negative/NaN weights or a zero sum.
    int32_t sample_from(std::span<const float> probs);

    // Next draw of this sampler's RNG, uniform in [0, 1) with 53 random bits: the accept/reject
    // coin of speculative decoding comes from the same reproducible stream.
    double uniform();

    const SamplingParams& params() const { return params_; }
    uint64_t seed() const { return seed_; }  // the seed actually used (drawn if kRandomSeed)

  private:
    // Penalties (into `logits` itself) then truncation into candidates_; false when greedy.
    bool process(std::span<float> logits, std::span<const int32_t> history);
    // top_p and min_p on candidates_ (non-empty), then their weights into weights_ / total_.
    void truncate_and_weigh();
    // Inverse CDF over candidates_ with one uniform() draw.
    int32_t draw();

    SamplingParams params_;
    uint64_t seed_;
    std::mt19937_64 rng_;
    sampling::Candidates candidates_;
    std::vector<float> weights_;    // unnormalised, aligned with candidates_
    double total_ = 0.0;            // their sum
    std::vector<int32_t> counts_;   // penalties' occurrence table, zero between calls
    std::vector<float> penalized_;  // distribution()'s copy: its logits are const
};

}  // namespace vela
