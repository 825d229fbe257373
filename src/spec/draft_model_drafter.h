#pragma once
// Drafting with a smaller model that shares the target's vocabulary (Qwen2.5-Coder 0.5B for
// 1.5B). It keeps its own paged KV per sequence, in step with the target: after each
// verification it holds exactly the sequence's accepted tokens (accepted() rolls back the
// drafts beyond them); propose() first feeds the tokens it has not seen (the prompt, the
// corrected or bonus token), then drafts k tokens one batched forward at a time. With sampling,
// each draft token is drawn from the draft model's distribution under the sequence's own
// sampling parameters, and that distribution is handed to the verifier as q.
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
#include "tokenizer/tokenizer.h"

namespace vela::spec {

class DraftModelDrafter final : public Drafter {
  public:
    // InvalidArgument naming the first difference when the draft model's vocabulary (token
    // texts, logits width) is not the target's. kv_tokens: capacity of the draft KV pool.
    DraftModelDrafter(Model& draft, const Tokenizer& draft_tokenizer, Backend& backend,
                      const Model& target, const Tokenizer& target_tokenizer, int64_t kv_tokens,
                      KvFormats kv_formats);
    ~DraftModelDrafter() override;

    const char* name() const override { return "draft"; }
    void propose(std::span<const DraftRequest> requests, std::vector<Draft>& drafts) override;
    void accepted(int64_t seq_id, std::span<const int32_t> tokens) override;
    void release(int64_t seq_id) override;

    // Tokens whose draft KV is held for a sequence (tests).
    int64_t n_held(int64_t seq_id) const;

  private:
    struct State {
        std::vector<int32_t> held;  // tokens whose KV is in the draft cache, in order
        std::unique_ptr<Sampler> sampler;
    };
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
};

}  // namespace vela::spec
