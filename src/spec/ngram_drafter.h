#pragma once
// Prompt lookup (n-gram) drafting, no model: find the most recent earlier occurrence of the
// sequence's last n tokens (n from max_ngram down to min_ngram, the longest match wins) in its
// prompt + output, and propose the tokens that followed it. Pays off when the output copies
// from the input (editing code, quoting, summarising); proposes nothing otherwise, at a cost of
// one scan of the sequence per step. Deterministic: q is one-hot.
//
// With branches > 1 it proposes a token tree: the continuations of up to `branches` earlier
// occurrences (most recent first, longest n first), merged where they agree, at most max_tokens
// nodes in all; the most recent continuation's chain comes first, so cutting the tree keeps it.
#include "spec/drafter.h"

namespace vela::spec {

class NgramDrafter final : public Drafter {
  public:
    explicit NgramDrafter(int32_t min_ngram = 1, int32_t max_ngram = 3, int32_t branches = 1);
    const char* name() const override { return "ngram"; }
    void propose(std::span<const DraftRequest> requests, std::vector<Draft>& drafts) override;

    // The proposal for one token list (exposed for tests).
    void propose_one(std::span<const int32_t> tokens, int32_t max_tokens, Draft& draft) const;

  private:
    // Adds the continuation starting at tokens[from] to the tree (up to max_tokens nodes).
    static void insert(std::span<const int32_t> tokens, int64_t from, int32_t max_tokens,
                       Draft& draft);

    int32_t min_ngram_;
    int32_t max_ngram_;
    int32_t branches_;
};

}  // namespace vela::spec
