#pragma once
// Log-probabilities of raw logits (before any sampling processor): what OpenAI `logprobs`
// reports and what perplexity averages. Accumulated in double so a 152k vocabulary does not
// lose the small probabilities.
#include <cstdint>
#include <span>
#include <vector>

namespace vela {

struct TokenLogprob {
    int32_t token;
    float logprob;
};

// log(sum(exp(logits))), accumulated in double around the row's largest value (returned as is
// when it is not finite). Backend::logsumexp_rows computes the same on the device.
double log_sum_exp(std::span<const float> logits);

// out[i] = logits[i] - logsumexp(logits); out.size() must equal logits.size().
void log_softmax(std::span<const float> logits, std::span<float> out);

// log p(token) under softmax(logits), without writing a vocab-sized buffer.
float token_logprob(std::span<const float> logits, int32_t token);

// The n most likely tokens, most likely first (ties to the lowest id). Fewer when the vocab is
// smaller or some logits are -inf (masked tokens are never listed).
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int32_t n);

}  // namespace vela
