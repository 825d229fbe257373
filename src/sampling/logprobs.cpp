#include "sampling/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "sampling/logits_processors.h"

namespace vela {

double log_sum_exp(std::span<const float> logits) {
    VELA_ASSERT(!logits.empty());
    const float m = *std::max_element(logits.begin(), logits.end());
    if (!std::isfinite(m)) return m;  // all -inf (or +inf present): nothing finite to normalise
    double z = 0.0;
    for (float l : logits) z += std::exp(static_cast<double>(l) - m);
    return m + std::log(z);
}

void log_softmax(std::span<const float> logits, std::span<float> out) {
    VELA_ASSERT(out.size() == logits.size());
    const double lse = log_sum_exp(logits);
    for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(logits[i] - lse);
}

float token_logprob(std::span<const float> logits, int32_t token) {
    if (token < 0 || static_cast<size_t>(token) >= logits.size())
        fail<InvalidArgument>("logprobs: token {} outside the vocabulary of {}", token,
                              logits.size());
    return static_cast<float>(logits[static_cast<size_t>(token)] - log_sum_exp(logits));
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int32_t n) {
    if (n <= 0 || logits.empty()) return {};
    sampling::Candidates best;
    sampling::top_k(logits, n, best);
    const double lse = log_sum_exp(logits);
    std::vector<TokenLogprob> out;
    out.reserve(best.items.size());
    for (const auto& c : best.items) out.push_back({c.token, static_cast<float>(c.logit - lse)});
    return out;
}

}  // namespace vela
