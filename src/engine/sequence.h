#pragma once
// One request's state as it moves through the engine: waiting -> running -> finished, and back
// to waiting when preempted (its KV is dropped and recomputed later).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "sampling/sampler.h"
#include "sampling/stop_checker.h"
#include "spec/adaptive_length.h"
#include "spec/drafter.h"
#include "spec/verifier.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace vela {

class Sequence {
  public:
    enum class Status { Waiting, Running, Finished };

    Sequence(int64_t id, Request request, const Tokenizer& tokenizer);

    int64_t id() const { return id_; }
    Status status() const { return status_; }
    void set_status(Status s) { status_ = s; }
    const Request& request() const { return request_; }
    const std::vector<int32_t>& tokens() const { return tokens_; }
    int64_t n_prompt() const { return n_prompt_; }
    int64_t n_generated() const { return static_cast<int64_t>(tokens_.size()) - n_prompt_; }

    // Tokens whose keys/values are in the cache; the rest still have to be fed to the model.
    int64_t n_computed() const { return n_computed_; }
    int64_t n_uncomputed() const { return static_cast<int64_t>(tokens_.size()) - n_computed_; }
    void mark_computed(int64_t n) { n_computed_ += n; }
    // Preemption (0), KV reuse (a prefix) or a fork (`evicted` as its source's).
    void reset_computed(int64_t n, int64_t evicted = 0) {
        n_computed_ = n;
        n_evicted_ = evicted;
    }
    // KV eviction: of the computed tokens, how many are no longer in the KV; the KV holds
    // n_kv() = n_computed() - n_evicted() of them, and new tokens keep their positions.
    int64_t n_evicted() const { return n_evicted_; }
    int64_t n_kv() const { return n_computed_ - n_evicted_; }
    void mark_evicted(int64_t n) { n_evicted_ += n; }

    // Samples the next token from this sequence's logits row, appends it, and returns the
    // output increment (text and finish reason).
    StepOutput append_sampled(std::span<float> logits);
    // The same from the row's best tokens alone, taken after the row's penalties
    // (Sampler::sample_top), when Sampler::samples_top(request().sampling, n_vocab). With
    // logprobs (a row without penalties, at least request().logprobs entries): they come from
    // the list and `lse`, the row's log-sum-exp (log_sum_exp), as from the whole row.
    // Top-p / min-p sampling needs `lse` too; nothing (no token, the sequence unchanged) when
    // the list falls short of its survivors: append_sampled() on the whole row then.
    std::optional<StepOutput> append_sampled_top(std::span<const sampling::Candidate> ranked,
                                                 double lse);
    // True when sampling is the plain argmax of the raw logits (temperature 0, no penalties,
    // no logprobs): the device's argmax_rows then samples and the row stays on the device.
    bool samples_argmax() const {
        return request_.logprobs < 0 && request_.sampling.temperature == 0.0f &&
               !request_.sampling.penalties_enabled();
    }
    // Appends tokens chosen elsewhere (accepted draft tokens), stopping at the first that ends
    // the sequence (end of generation, a stop string, max_tokens).
    StepOutput append_tokens(std::span<const int32_t> tokens);
    // Verifies this step's draft against the target's rows (draft().size() + 1 of them) and
    // appends what the verifier emits, stopping like append_tokens. n_valid_kv receives how
    // many of the step's fed tokens hold KV of tokens the sequence now has: the last one, then
    // the kept drafts, whose indices in the draft `path` receives (ascending; for a chain
    // 0, 1, ...): the engine moves their KV behind the last token and truncates the rest.
    StepOutput append_verified(std::span<float> rows, spec::Verifier& verifier, int64_t& n_accepted,
                               int64_t& n_valid_kv, std::vector<int32_t>& path);
    // Draft tokens to verify with the next decode token (empty: a plain decode step).
    spec::Draft& draft() { return draft_; }
    const spec::Draft& draft() const { return draft_; }
    spec::AdaptiveLength& draft_length() { return draft_length_; }

    // Ends the sequence from outside (abort, context full).
    StepOutput finish_now(FinishReason reason);
    FinishReason finish_reason() const { return finish_; }

  private:
    // raw_logits: the row the token came from, for logprobs (empty: none).
    void accept(int32_t token, StepOutput& out, std::span<const float> raw_logits = {});
    std::vector<TokenChoice> logprobs_of(int32_t token, std::span<const float> raw_logits) const;
    // The same from a row's ranked best tokens and its log-sum-exp, before `token` is accepted.
    std::vector<TokenChoice> logprobs_of(int32_t token, std::span<const sampling::Candidate> ranked,
                                         double lse) const;

    int64_t id_;
    Request request_;
    const Tokenizer& tokenizer_;
    Status status_ = Status::Waiting;
    std::vector<int32_t> tokens_;
    int64_t n_prompt_;
    int64_t n_computed_ = 0;
    int64_t n_evicted_ = 0;
    Sampler sampler_;
    StreamDecoder decoder_;
    StopChecker stop_;
    FinishReason finish_ = FinishReason::None;
    std::vector<float> raw_logits_;  // rows before sampling, only when logprobs are requested
    spec::Draft draft_;
    spec::AdaptiveLength draft_length_;
};

}  // namespace vela
