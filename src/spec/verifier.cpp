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
    history_.assign(history.begin(), history.end());
    if (draft.is_tree()) return verify_tree(sampler, rows, draft);
    Verdict v;
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
            v.path.push_back(static_cast<int32_t>(i));
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

Verdict Verifier::verify_tree(Sampler& sampler, std::span<float> rows, const Draft& draft) {
    VELA_ASSERT(draft.deterministic() && draft.parents.size() == draft.tokens.size());
    const auto k = static_cast<int32_t>(draft.size());
    const size_t vocab = rows.size() / static_cast<size_t>(k + 1);
    Verdict v;
    for (int32_t node = -1;;) {  // -1: the sequence's last token (row 0)
        const auto row = rows.subspan(static_cast<size_t>(node + 1) * vocab, vocab);
        bool has_child = false;
        for (int32_t c = node + 1; c < k && !has_child; ++c) has_child = draft.parents[c] == node;
        if (!has_child) {
            // A leaf reached: the bonus token, drawn exactly as without speculation.
            v.tokens.push_back(sampler.sample(row, history_));
            return v;
        }
        sampler.distribution(row, history_, p_);
        double mass = 1.0;  // of p_, as children are rejected and zeroed
        int32_t next = -2;
        for (int32_t c = node + 1; c < k && next == -2; ++c) {
            if (draft.parents[c] != node) continue;
            const int32_t x = draft.tokens[c];
            VELA_ASSERT(x >= 0 && static_cast<size_t>(x) < vocab);
            const double px = p_[static_cast<size_t>(x)];
            if (px >= mass || sampler.uniform() * mass < px) {
                next = c;
            } else {
                mass -= px;
                p_[static_cast<size_t>(x)] = 0.0f;
            }
        }
        if (next == -2) {
            // Every child rejected: the rest of p (sample_from normalises it). It has mass
            // unless the children held all of p up to rounding, and then p itself is right.
            const bool has_mass = std::any_of(p_.begin(), p_.end(), [](float r) { return r > 0; });
            if (!has_mass) sampler.distribution(row, history_, p_);
            v.tokens.push_back(sampler.sample_from(p_));
            return v;
        }
        v.tokens.push_back(draft.tokens[next]);
        v.path.push_back(next);
        history_.push_back(draft.tokens[next]);
        ++v.n_accepted;
        node = next;
    }
}

}  // namespace vela::spec
