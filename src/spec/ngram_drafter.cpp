#include "spec/ngram_drafter.h"

#include <algorithm>

#include "core/error.h"

namespace vela::spec {

NgramDrafter::NgramDrafter(int32_t min_ngram, int32_t max_ngram, int32_t branches)
    : min_ngram_(min_ngram), max_ngram_(max_ngram), branches_(branches) {
    if (min_ngram < 1 || max_ngram < min_ngram) {
        fail<InvalidArgument>("n-gram drafter: need 1 <= min n ({}) <= max n ({})", min_ngram,
                              max_ngram);
    }
    if (branches < 1 || branches > 64) {
        fail<InvalidArgument>("n-gram drafter: branches must be between 1 and 64, got {}",
                              branches);
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
    int32_t found = 0;
    for (int64_t n = std::min<int64_t>(max_ngram_, len - 1); n >= min_ngram_; --n) {
        const auto pattern = tokens.subspan(static_cast<size_t>(len - n));
        // Most recent occurrence first: nearby text is the likeliest to be copied next.
        for (int64_t start = len - n - 1; start >= 0; --start) {
            if (!std::equal(pattern.begin(), pattern.end(), tokens.begin() + start)) continue;
            if (branches_ == 1) {
                const int64_t from = start + n;
                const int64_t count = std::min<int64_t>(max_tokens, len - from);
                draft.tokens.assign(tokens.begin() + from, tokens.begin() + from + count);
                return;
            }
            insert(tokens, start + n, max_tokens, draft);
            if (++found == branches_ || draft.size() == max_tokens) return;
        }
    }
}

void NgramDrafter::insert(std::span<const int32_t> tokens, int64_t from, int32_t max_tokens,
                          Draft& draft) {
    const auto len = static_cast<int64_t>(tokens.size());
    int32_t node = -1;
    for (int64_t i = from; i < len && i - from < max_tokens; ++i) {
        int32_t child = -1;
        for (int32_t c = node + 1; c < draft.size(); ++c) {
            if (draft.parents[c] == node && draft.tokens[c] == tokens[i]) {
                child = c;
                break;
            }
        }
        if (child < 0) {
            if (draft.size() == max_tokens) return;
            child = static_cast<int32_t>(draft.size());
            draft.tokens.push_back(tokens[i]);
            draft.parents.push_back(node);
        }
        node = child;
    }
}

}  // namespace vela::spec
