#pragma once
// Turns a step's schedule into a ForwardBatch (prepare), runs the model on it, and hands back
// the logits rows of the sequences that sample this step.
#include <span>
#include <vector>

#include "backend/backend.h"
#include "engine/scheduler.h"
#include "kv/block_manager.h"
#include "model/forward_batch.h"
#include "model/model.h"

namespace vela {

class ModelRunner {
  public:
    ModelRunner(Model& model, Backend& backend) : model_(model), backend_(backend) {}

    // The step's batch: each scheduled sequence's new tokens at their positions, their slots,
    // the sequence's block table, and a logits row for each sequence whose last token is fed
    // (the others are partial prefill chunks); a sequence verifying a draft feeds its last
    // token and the draft tokens, with a logits row each.
    const ForwardBatch& prepare(const std::vector<ScheduledSeq>& scheduled,
                                const BlockManager& blocks);
    // Runs the prepared batch. Afterwards, logits_for(i) holds the logits rows of scheduled[i]
    // (one, or draft size + 1 when it verifies a draft) when it samples this step, else empty.
    void run(KvStorage& kv);
    std::span<float> logits_for(size_t i);
    // The token scheduled[i] samples when it samples by argmax (Sequence::samples_argmax):
    // chosen on the device, its logits row never copied (logits_for(i) is then stale); -1
    // otherwise. Throws when every logit of that row is -inf or NaN, as the sampler does.
    int32_t argmax_token(size_t i) const;
    // What attention records for KV eviction in every batch (kv/eviction.h).
    void set_kv_scores(KvScoreMode mode) { kv_scores_ = mode; }

  private:
    // VELA_LOGITS_TO_HOST=1 copies every logits row to the host and samples greedy rows there
    // too, as before the device argmax: an A/B switch for benchmarks.
    static bool logits_to_host_env();

    Model& model_;
    Backend& backend_;
    ForwardBatch batch_;
    KvScoreMode kv_scores_ = KvScoreMode::None;
    std::vector<float> logits_;
    std::vector<int32_t> ids_;            // the argmax of every logits row
    std::vector<uint8_t> argmax_only_;    // per logits row: only its argmax comes back
    const bool host_argmax_ = logits_to_host_env();
    // Per scheduled sequence: its first logits row (-1 when it does not sample), and how many.
    std::vector<int64_t> logit_row_;
    std::vector<int64_t> logit_rows_;
    std::vector<int32_t> fed_;  // scratch: a verifying sequence's last token + draft
};

}  // namespace vela
