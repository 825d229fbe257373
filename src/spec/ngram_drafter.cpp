#include "spec/ngram_drafter.h"

#include <algorithm>

#include "core/error.h"

namespace vela::spec {

NgramDrafter::NgramDrafter(int32_t min_ngram, int32_t max_ngram)
    : min_ngram_(min_ngram), max_ngram_(max_ngram) {
    if (min_ngram < 1 || max_ngram < min_ngram) {
        fail<InvalidArgument>("n-gram drafter: need 1 <= min n ({}) <= max n ({})", min_ngram,
                              max_ngram);
    }
}

void NgramDrafter::propose(std::span<const DraftRequest> requests, std::vector<Draft>& drafts) {
    drafts.resize(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
        propose_one(requests[i].tokens, requests[i].max_tokens, drafts[i]);
    }
}

void NgramDrafter::propose_one(std::span<const int32_t> tokens, int32_t max_tokens,
                               Draft& draft) const {
    draft.clear();
    const auto len = static_cast<int64_t>(tokens.size());
    for (int64_t n = std::min<int64_t>(max_ngram_, len - 1); n >= min_ngram_; --n) {
        const auto pattern = tokens.subspan(static_cast<size_t>(len - n));
        // Most recent occurrence first: nearby text is the likeliest to be copied next.
        for (int64_t start = len - n - 1; start >= 0; --start) {
            if (!std::equal(pattern.begin(), pattern.end(), tokens.begin() + start)) continue;
            const int64_t from = start + n;
            const int64_t count = std::min<int64_t>(max_tokens, len - from);
            draft.tokens.assign(tokens.begin() + from, tokens.begin() + from + count);
            return;
        }
    }
}

}  // namespace vela::spec
