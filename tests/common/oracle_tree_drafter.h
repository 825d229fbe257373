#pragma once
// A drafter for tests of token-tree verification in the engine.
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "spec/drafter.h"

namespace vela::test {

// Knows every prompt's greedy continuation and proposes token trees that put it second: at
// each level a wrong token first, then the right one, which continues the tree. Every accepted
// path takes second children, so its KV rows must be moved behind the last token: a wrong
// move changes what follows.
class OracleTreeDrafter final : public spec::Drafter {
  public:
    OracleTreeDrafter(std::vector<std::vector<int32_t>> prompts,
                      std::vector<std::vector<int32_t>> continuations, int32_t n_vocab)
        : prompts_(std::move(prompts)), next_(std::move(continuations)), n_vocab_(n_vocab) {}
    const char* name() const override { return "oracle-tree"; }
    void propose(std::span<const spec::DraftRequest> requests,
                 std::vector<spec::Draft>& drafts) override {
        drafts.resize(requests.size());
        for (size_t i = 0; i < requests.size(); ++i) {
            spec::Draft& d = drafts[i];
            d.clear();
            const auto& tokens = requests[i].tokens;
            for (size_t p = 0; p < prompts_.size(); ++p) {
                const std::vector<int32_t>& prompt = prompts_[p];
                if (tokens.size() < prompt.size() ||
                    !std::equal(prompt.begin(), prompt.end(), tokens.begin())) {
                    continue;
                }
                int32_t parent = -1;
                for (size_t at = tokens.size() - prompt.size();
                     at < next_[p].size() && d.size() + 2 <= requests[i].max_tokens; ++at) {
                    const int32_t right = next_[p][at];
                    d.tokens.push_back((right + 1) % n_vocab_);
                    d.parents.push_back(parent);
                    d.tokens.push_back(right);
                    d.parents.push_back(parent);
                    parent = static_cast<int32_t>(d.size() - 1);
                }
                break;
            }
        }
    }

  private:
    std::vector<std::vector<int32_t>> prompts_, next_;
    int32_t n_vocab_;
};

}  // namespace vela::test
