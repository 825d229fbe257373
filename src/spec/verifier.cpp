#include "spec/verifier.h"

#include <algorithm>

#include "core/error.h"

namespace vela::spec {

Verdict Verifier::verify(Sampler& sampler, std::span<float> rows, std::span<const int32_t> history,
                         const Draft& draft) {
    const auto k = static_cast<size_t>(draft.size());
    VELA_ASSERT(rows.size() % (k + 1) == 0);
    const size_t vocab = rows.size() / (k + 1);
    VELA_ASSERT(draft.deterministic() || draft.probs.size() == k * vocab);
    Verdict v;
    history_.assign(history.begin(), history.end());
    for (size_t i = 0; i < k; ++i) {
        const int32_t x = draft.tokens[i];
        VELA_ASSERT(x >= 0 && static_cast<size_t>(x) < vocab);
        sampler.distribution(rows.subspan(i * vocab, vocab), history_, p_);
        const std::span<const float> q =
            draft.deterministic() ? std::span<const float>{}
                                  : std::span<const float>(draft.probs).subspan(i * vocab, vocab);
        const float px = p_[static_cast<size_t>(x)];
        const float qx = q.empty() ? 1.0f : q[static_cast<size_t>(x)];
        if (px >= qx || sampler.uniform() * qx < px) {
            v.tokens.push_back(x);
            history_.push_back(x);
            ++v.n_accepted;
            continue;
        }
        // Rejected: draw from the residual max(0, p - q) (sample_from normalises it). It has
        // mass, since p(x) < q(x) and both sum to 1, unless p and q differ by rounding only:
        // then p itself is the right distribution.
        residual_.assign(p_.begin(), p_.end());
        if (q.empty()) {
            residual_[static_cast<size_t>(x)] = 0.0f;
        } else {
            for (size_t t = 0; t < vocab; ++t) residual_[t] = std::max(0.0f, p_[t] - q[t]);
        }
        const bool has_mass =
            std::any_of(residual_.begin(), residual_.end(), [](float r) { return r > 0.0f; });
        v.tokens.push_back(sampler.sample_from(has_mass ? residual_ : p_));
        return v;
    }
    // Every draft token accepted: the bonus token, drawn exactly as without speculation.
    v.tokens.push_back(sampler.sample(rows.subspan(k * vocab, vocab), history_));
    return v;
}

}  // namespace vela::spec
