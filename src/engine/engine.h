#pragma once
// The engine's step loop: requests in, streamed token increments out. The CLI and the HTTP
// server are two clients of this class.
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "engine/model_runner.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kv/block_manager.h"
#include "kv/eviction.h"
#include "kv/kv_storage.h"
#include "model/model.h"
#include "spec/drafter.h"
#include "spec/speed_gate.h"
#include "spec/verifier.h"
#include "tokenizer/tokenizer.h"

namespace vela {

// Speculative decoding, when the engine has a Drafter.
struct SpeculationConfig {
    int32_t max_tokens = 5;  // draft tokens per sequence and step, at most
    // For a drafter that sizes its own token trees (spec::DraftRequest::max_nodes): the tree's
    // depth (draft forwards) at most, max_tokens being its node count (0: max_tokens).
    int32_t max_depth = 0;
    // No drafting in a step with more running sequences than this: a large batch already keeps
    // the matmuls busy, and a drafter's verification rows would slow it down. (The CLI lifts it
    // for self-drafting, whose regime is a large batch at long context: --spec-max-batch.)
    int64_t max_batch = 8;
    // Self-speculation (MagicDec-style): the model drafts for itself, each draft forward
    // attending only to the first self_sinks tokens and the last self_window of its own paged
    // KV; the verification forward attends to all of it. Instead of a Drafter.
    bool self_draft = false;
    int64_t self_sinks = 4;
    int64_t self_window = 512;
    // A sequence self-drafts only while a draft forward is estimated to cost at most this share
    // of a full one (bytes read: its share of the weights, which the step's drafting sequences
    // read once, + the KV it attends to), i.e. once its context is long enough that reading the
    // KV dominates a step; below, drafting would cost more than it saves.
    double self_max_cost = 0.5;
    // A Drafter's sequences draft only while measured speed agrees (spec::SpeedGate, as
    // self-drafting below self_max_cost 1): drafts that keep failing cost their verification
    // rows, and a draft model's forwards are launch-bound on a GPU at batch 1. Off: every step
    // drafts where the rules above allow (the CLI's --spec-max-cost 1). A draft model's
    // catch-up steps (Drafter::last_catch_up) are left out of the measurements.
    bool gate = false;
};

struct EngineConfig {
    int64_t n_ctx = 4096;  // max tokens of one sequence (prompt + generated)
    int64_t kv_block_size = 16;
    int64_t kv_blocks = 0;  // 0: enough for one full context
    KvFormats kv_formats = KvFormat::F16;
    // Reuse the KV of full blocks whose tokens (and all tokens before them) were computed
    // before, by this or an earlier request; see kv/prefix_cache.h.
    bool prefix_caching = true;
    // What happens to a sequence preempted for lack of KV blocks (overrides scheduler's).
    Preemption preemption = Preemption::Recompute;
    SchedulerConfig scheduler;
    SpeculationConfig speculation;
    // KV eviction policy and budget per sequence (kv/eviction.h).
    EvictionConfig eviction;
    // Models with sliding-window layers (Gemma 3): keep those layers' KV for every token, as
    // the others (llama.cpp's --swa-full). Off: they keep about their window per running
    // sequence, in a pool of their own (BlockManager's local group; no prefix caching, and
    // preemption recomputes).
    bool swa_full = false;
    // The sliding-window layers' pool in blocks (0: local_pool_blocks' size for max_running
    // sequences); at least one sequence's window and step (local_blocks_per_sequence).
    int64_t kv_local_blocks = 0;
};

// The local group's pool (BlockManager's, in blocks) the engine gives a model whose
// sliding-window layers see `window` keys, with a main pool of num_blocks: 0 (every token's KV
// in every layer) without a window, with swa_full, or when it would not be smaller.
int64_t local_kv_blocks(const EngineConfig& c, int64_t window, int64_t num_blocks);

// Counters (monotonic) and gauges (now) for logs and /metrics.
struct EngineStats {
    int64_t prompt_tokens = 0;  // tokens fed as prefill (recomputation included)
    int64_t generated_tokens = 0;
    int64_t preemptions = 0;  // Recompute and Swap
    int64_t swap_outs = 0;
    int64_t swap_ins = 0;
    int64_t steps = 0;
    int64_t prefix_query_tokens = 0;   // tokens looked up in the prefix cache at admission
    int64_t prefix_hit_tokens = 0;     // of those, found (not computed again)
    int64_t spec_verify_steps = 0;     // decode steps that verified a draft
    int64_t spec_draft_tokens = 0;     // draft tokens verified
    int64_t spec_accepted_tokens = 0;  // of those, accepted
    int64_t spec_draft_depth = 0;      // the drafts' depths (= sizes for chains), summed
    int64_t kv_evicted_tokens = 0;     // tokens dropped from sequences' KV by eviction

    int64_t running = 0;
    int64_t waiting = 0;
    int64_t kv_blocks_total = 0;
    int64_t kv_blocks_used = 0;     // referenced by a sequence (or retained for chat)
    int64_t kv_blocks_cached = 0;   // in the prefix cache, used or not
    int64_t kv_blocks_swapped = 0;  // copies in host memory
    int64_t kv_bytes_per_token = 0;  // K and V of one token over all layers, scales included
    // (with a local group, over the other layers: the local layers' pool is fixed)
    int64_t kv_local_blocks_total = 0;  // the sliding-window layers' pool (local group), or 0
    int64_t kv_local_blocks_used = 0;

    double prefix_hit_rate() const {
        return prefix_query_tokens > 0 ? static_cast<double>(prefix_hit_tokens) /
                                             static_cast<double>(prefix_query_tokens)
                                       : 0.0;
    }
    double spec_acceptance_rate() const {
        return spec_draft_tokens > 0 ? static_cast<double>(spec_accepted_tokens) /
                                           static_cast<double>(spec_draft_tokens)
                                     : 0.0;
    }
    // Tokens a verifying decode step emits on average (the accepted drafts + one).
    double spec_mean_accepted_length() const {
        return spec_verify_steps > 0 ? 1.0 + static_cast<double>(spec_accepted_tokens) /
                                                 static_cast<double>(spec_verify_steps)
                                     : 0.0;
    }
};

class Engine {
  public:
    // With a drafter, decode steps verify its draft tokens (speculative decoding): the output
    // follows the same distribution as without, and is the same under greedy sampling.
    Engine(Model& model, const Tokenizer& tokenizer, Backend& backend, EngineConfig config,
           std::unique_ptr<spec::Drafter> drafter = nullptr);
    ~Engine();

    // Validates and queues a request; returns its id. InvalidArgument for an empty prompt,
    // a prompt that does not fit the context, token ids outside the vocabulary, or bad sampling
    // parameters.
    int64_t add_request(Request request);
    // n samples of one request (OpenAI `n`): n sequences whose prompt KV is computed once and
    // shared through fork, copy-on-write. Sample i > 0 uses seed + i when a seed is given.
    // Returns the n request ids, the first one computing the prompt.
    std::vector<int64_t> add_request_group(Request request, int64_t n);
    // Ends a request at the next step boundary (its KV is freed); unknown ids are ignored.
    void abort(int64_t request_id);
    // Runs one scheduling step and returns the increments it produced. While has_work(), each
    // step computes tokens (and so, after boundedly many, finishes requests): callers may loop
    // on it without a progress check.
    std::vector<StepOutput> step();
    bool has_work() const { return scheduler_.has_work(); }

    // Drops KV kept for a finished sequence with retain_kv. The engine also drops it by itself
    // when live sequences are short of blocks (a step preempts or can schedule nothing);
    // reuse_kv_of naming a dropped sequence then recomputes the prefix (or finds it in the
    // prefix cache).
    void release_retained(int64_t request_id);

    // Counters so far and gauges as of now.
    EngineStats stats() const;
    // KV blocks referenced by live (or retained) sequences; 0 once every request has finished
    // (blocks that only the prefix cache holds count as free).
    int64_t num_used_kv_blocks() const { return kv_->num_used_blocks(); }
    const BlockManager& kv_blocks() const { return *kv_; }
    const KvStorage& kv_storage() const { return *storage_; }
    const EngineConfig& config() const { return config_; }

  private:
    void finish(Sequence& seq, std::vector<StepOutput>& out, FinishReason reason);
    void reuse_retained_kv(Sequence& seq, int64_t source_id);
    void start_followers(Sequence& leader, bool fork_kv);
    void release_all_retained();
    // Asks the drafter for this step's drafts of the running sequences in decode.
    void propose_drafts();
    // Verifies seq's draft against its rows, keeps the accepted KV, and drops the rest.
    StepOutput verify_draft(Sequence& seq, std::span<float> rows);
    // Cuts the sequence's KV to its eviction budget when it has outgrown it.
    void evict(Sequence& seq);
    // Self-speculation: fills the scheduled sequences' drafts (placeholders so far) by greedy
    // sparse-attention forwards of the model itself, writing their KV into the step's slots
    // (the verification forward writes them again with full attention).
    void self_draft(const std::vector<ScheduledSeq>& work);

    Model& model_;
    const Tokenizer& tokenizer_;
    EngineConfig config_;
    Backend& backend_;
    std::unique_ptr<BlockManager> kv_;         // bookkeeping
    std::unique_ptr<KvStorage> storage_;       // the bytes, in the backend's memory
    std::unique_ptr<KvEvictor> evictor_;       // when eviction is on
    Scheduler scheduler_;
    ModelRunner runner_;
    std::map<int64_t, std::unique_ptr<Sequence>> sequences_;  // live (not finished)
    std::map<int64_t, std::vector<int32_t>> retained_;        // finished, KV kept: the tokens in it
    std::vector<int64_t> aborted_;
    // Samples 2..n of a group wait here until their leader has computed the prompt.
    std::map<int64_t, std::vector<Sequence*>> followers_;
    int64_t next_id_ = 1;
    EngineStats stats_;
    std::unique_ptr<spec::Drafter> drafter_;
    spec::Verifier verifier_;
    std::vector<spec::DraftRequest> draft_requests_;
    std::vector<Sequence*> drafting_;
    std::vector<spec::Draft> drafts_;
    std::vector<int32_t> path_;  // verify_draft's scratch: accepted draft indices
    ForwardBatch draft_batch_;    // self_draft's forward
    double weight_bytes_ = 0;     // the model's weights, for self_draft's cost estimate
    spec::SpeedGate spec_gate_;  // does speculation pay here, measured (self, or `gate`)
    bool drafted_ = false;       // some sequence drafts this step
    std::vector<int32_t> draft_keep_;  // Model::kKeepArgmax each: the drafts are argmax rows
    Model::RowsOut draft_out_;
    std::vector<int64_t> tail_;  // and their KV rows
};

}  // namespace vela
