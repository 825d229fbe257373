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
#include "sampling/logits_processors.h"

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
    // Whether scheduled[i] samples from its row's best tokens (top_for), chosen on the device
    // after its penalties: temperature sampling with top-k, greedy with penalties, or top-p /
    // min-p (Sampler::samples_top). Its row is then not copied either.
    bool samples_top(size_t i) const;
    // Those best tokens, ranked: at least the sequence's top_k of them (Sampler::sample_top),
    // and at least its logprobs alternatives.
    std::span<const sampling::Candidate> top_for(size_t i);
    // The log-sum-exp of that row before penalties, when its sequence asks for logprobs or
    // samples by top-p / min-p (Sampler::nucleus); else NaN.
    double lse_for(size_t i) const;
    // The whole row of a sequence that samples_top(i) after all (the list fell short of its
    // nucleus: Sampler::sample_top), copied now from the device.
    std::span<float> fetch_row(size_t i);
    // What attention records for KV eviction in every batch (kv/eviction.h).
    void set_kv_scores(KvScoreMode mode) { kv_scores_ = mode; }

  private:
    // VELA_LOGITS_TO_HOST=1 copies every logits row to the host and samples every row there,
    // as before the device argmax and top-k: an A/B switch for benchmarks and tests.
    static bool logits_to_host_env();
    // What the row of a sequence that samples one token sends back (Model::forward's keep).
    int32_t keep_for(const Sequence& seq) const;
    // The penalties of logits row `row` for seq's sampling params and history, as
    // sampling::apply_penalties would apply them (one entry per distinct token of the window).
    void add_penalties(const Sequence& seq, int32_t row);

    Model& model_;
    Backend& backend_;
    ForwardBatch batch_;
    KvScoreMode kv_scores_ = KvScoreMode::None;
    Model::RowsOut out_;
    std::vector<int32_t> keep_;  // per logits row: what comes back (Model::kKeep*, or top k)
    std::vector<LogitPenalty> penalties_;  // of the rows kept as top-k lists
    // Some row kept as a top-k list asks for logprobs or samples by top-p / min-p: the lse of
    // the lists' rows comes back.
    bool lse_ = false;
    std::vector<int32_t> counts_;  // add_penalties' occurrence table, zero between uses
    const bool host_sampling_ = logits_to_host_env();
    std::vector<sampling::Candidate> top_;  // top_for's list
    // Per scheduled sequence: its first logits row (-1 when it does not sample), and how many.
    std::vector<int64_t> logit_row_;
    std::vector<int64_t> logit_rows_;
    std::vector<int32_t> fed_;  // scratch: a verifying sequence's last token + draft
};

}  // namespace vela
