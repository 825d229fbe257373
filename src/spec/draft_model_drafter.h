#pragma once
// Drafting with a smaller model that shares the target's vocabulary (Qwen2.5-Coder 0.5B for
// 1.5B). It keeps its own paged KV per sequence, in step with the target: after each
// verification it holds exactly the sequence's accepted tokens (accepted() rolls back the
// drafts beyond them); propose() first feeds the tokens it has not seen (the prompt, the
// corrected or bonus token), then drafts k tokens one batched forward at a time. With sampling,
// each draft token is drawn from the draft model's distribution under the sequence's own
// sampling parameters, and that distribution is handed to the verifier as q.
//
// With a tree width > 1 (DraftTreeOptions, spine_tree.h) it drafts token trees instead: the
// greedy chain (max_tokens deep) plus, at each depth, the next-best tokens of the same draft
// distribution as siblings, as many as SpineTreeSizer finds worth their verification rows
// within max_nodes, from the acceptance it observes in accepted(). Trees are deterministic
// (probs empty) under sampling too: the chain is the draft distribution's argmax path.
//
// When the draft KV pool is full, a sequence that does not fit gets no draft this step (its
// draft KV is dropped and rebuilt later): drafting never makes the target wait for memory.
#include <map>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "kv/block_manager.h"
#include "model/forward_batch.h"
#include "model/model.h"
#include "sampling/sampler.h"
#include "spec/drafter.h"
#include "spec/spine_tree.h"
#include "tokenizer/tokenizer.h"

namespace vela::spec {

class DraftModelDrafter final : public Drafter {
  public:
    // InvalidArgument naming the first difference when the draft model's vocabulary (token
    // texts, logits width) is not the target's. kv_tokens: capacity of the draft KV pool.
    DraftModelDrafter(Model& draft, const Tokenizer& draft_tokenizer, Backend& backend,
                      const Model& target, const Tokenizer& target_tokenizer, int64_t kv_tokens,
                      KvFormats kv_formats, DraftTreeOptions tree = {});
    ~DraftModelDrafter() override;

    const char* name() const override { return "draft"; }
    void propose(std::span<const DraftRequest> requests, std::vector<Draft>& drafts) override;
    void accepted(int64_t seq_id, std::span<const int32_t> tokens) override;
    void release(int64_t seq_id) override;
    int64_t last_catch_up() const override { return catch_up_; }

    // Tokens whose draft KV is held for a sequence (tests).
    int64_t n_held(int64_t seq_id) const;
    const SpineTreeSizer& tree_sizer() const { return sizer_; }

  private:
    struct State {
        std::vector<int32_t> held;  // tokens whose KV is in the draft cache, in order
        std::unique_ptr<Sampler> sampler;
        // This step's tree until accepted() reads its outcome: the draft, the sequence's
        // length before it, the spine node reached so far and each depth's width.
        Draft tree;
        size_t base = 0;
        int32_t spine = -1;
        int32_t depth = 0;
        std::vector<int32_t> widths;
    };
    bool trees() const { return sizer_.options().max_width > 1; }
    // Appends the next draft token for state s (and its siblings in a tree) from logits `row`;
    // returns the token to feed back.
    int32_t extend(State& s, std::span<const float> row, Draft& d);
    void roll_back(int64_t seq_id, State& s, std::span<const int32_t> tokens);
    // One forward of the draft model feeding feed[i] to sequence ids[i] (whose blocks fit).
    void forward(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& feed);
    State& state_for(const DraftRequest& r);
    void drop(int64_t seq_id);

    Model& model_;
    Backend& backend_;
    int32_t n_vocab_;
    BlockManager blocks_;
    std::unique_ptr<KvStorage> storage_;
    ForwardBatch batch_;
    std::vector<float> logits_;
    std::vector<float> q_;
    std::map<int64_t, State> states_;
    SpineTreeSizer sizer_;
    int64_t catch_up_ = 0;  // last_catch_up()
};

}  // namespace vela::spec
