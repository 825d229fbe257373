#pragma once
// One forward step's work: the new tokens of several sequences, flattened. Built by the
// engine's ModelRunner (or a test), read by Model::forward; KV slots are already allocated.
#include <cstdint>
#include <vector>

namespace vela {

struct BatchSequence {
    int64_t seq_id = 0;    // sequence in the KvCache
    int64_t n_past = 0;    // tokens already in the cache before this step
    int64_t n_tokens = 0;  // new tokens this step (consecutive rows of the batch)
    // Which rows need logits: none, the last one (generation), or all (perplexity,
    // speculative verification).
    enum class Logits { None, Last, All } logits = Logits::Last;
};

struct Batch {
    std::vector<int32_t> tokens;  // all new tokens, sequence after sequence
    std::vector<int64_t> slots;   // KV slot of each token
    std::vector<BatchSequence> seqs;

    int64_t n_rows() const { return static_cast<int64_t>(tokens.size()); }
    // Number of logit rows forward() will produce, in sequence order.
    int64_t n_logit_rows() const {
        int64_t n = 0;
        for (const auto& s : seqs) {
            n += s.logits == BatchSequence::Logits::All    ? s.n_tokens
                 : s.logits == BatchSequence::Logits::Last ? 1
                                                           : 0;
        }
        return n;
    }
};

}  // namespace vela
