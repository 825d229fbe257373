#pragma once
// A drafter proposes, for each sequence of a step, up to k tokens that the target model is likely
// to produce next; the target checks them all in one forward and the Verifier (verifier.h) keeps
// exactly the target's output distribution, whatever the drafter proposes. A bad drafter costs
// speed, never correctness.
//
// Drafters see sequences as plain token lists (spec/ sits below engine/): the engine asks
// propose() before it schedules a step, then tells stateful drafters (a draft model's KV) which
// tokens each sequence holds after verification (accepted) and when it ends (release).
#include <cstdint>
#include <span>
#include <vector>

#include "sampling/sampling_params.h"

namespace vela::spec {

struct DraftRequest {
    int64_t seq_id = 0;
    // Prompt + generated tokens so far; the target has computed all but the last.
    std::span<const int32_t> tokens;
    const SamplingParams* sampling = nullptr;  // the sequence's own, for drafters that sample
    int32_t max_tokens = 0;                    // k: propose at most this many
    // Drafters that size their own trees (DraftModelDrafter with a width): max_tokens is then
    // the tree's depth (draft forwards) and max_nodes its node count, at most (>= max_tokens).
    int32_t max_nodes = 0;
};

// A chain of draft tokens, or a token tree: with `parents`, token i continues token
// parents[i] (< i), or the sequence itself when -1; siblings differ. Trees come from
// deterministic drafters only (probs empty).
struct Draft {
    std::vector<int32_t> tokens;
    std::vector<int32_t> parents;  // empty: a chain
    // q(. | tokens so far + tokens[0..i)) for each draft token, n_vocab floats per token, the
    // distribution tokens[i] was drawn from. Empty: a deterministic drafter (q is one-hot).
    std::vector<float> probs;

    bool deterministic() const { return probs.empty(); }
    bool is_tree() const { return !parents.empty(); }
    int64_t size() const { return static_cast<int64_t>(tokens.size()); }
    // The longest path: tokens a step can accept at most.
    int64_t depth() const;
    void clear() {
        tokens.clear();
        parents.clear();
        probs.clear();
    }
    void truncate(int64_t n);
};

class Drafter {
  public:
    virtual ~Drafter() = default;
    virtual const char* name() const = 0;
    // drafts[i] receives the proposal for requests[i] (possibly empty).
    virtual void propose(std::span<const DraftRequest> requests, std::vector<Draft>& drafts) = 0;
    // After verification: the sequence now consists of `tokens`. A drafter with state (a draft
    // model's KV) rolls back what it drafted beyond them.
    virtual void accepted(int64_t /*seq_id*/, std::span<const int32_t> /*tokens*/) {}
    // The sequence has finished: drop its state.
    virtual void release(int64_t /*seq_id*/) {}
    // Tokens the last propose() fed beyond the newest of each sequence: a draft model catching
    // up on tokens it did not draft (the prompt, steps that did not draft). Such a step's time
    // is not that of drafting (not representative: spec::SpeedGate::record).
    virtual int64_t last_catch_up() const { return 0; }
};

}  // namespace vela::spec
