#include "engine/sequence.h"

#include "core/error.h"
#include "sampling/logprobs.h"

namespace vela {

Sequence::Sequence(int64_t id, Request request, const Tokenizer& tokenizer)
    : id_(id),
      request_(std::move(request)),
      tokenizer_(tokenizer),
      tokens_(request_.prompt),
      n_prompt_(static_cast<int64_t>(tokens_.size())),
      sampler_(request_.sampling),
      decoder_(tokenizer),
      stop_(request_.stop) {}

StepOutput Sequence::append_sampled(std::span<float> logits) {
    StepOutput out;
    out.request_id = id_;
    if (request_.logprobs >= 0) raw_logits_.assign(logits.begin(), logits.end());
    const int32_t token = sampler_.sample(logits, tokens_);
    accept(token, out);
    return out;
}

StepOutput Sequence::append_tokens(std::span<const int32_t> tokens) {
    StepOutput out;
    out.request_id = id_;
    for (int32_t t : tokens) {
        if (finish_ != FinishReason::None) break;  // what follows an end is not generated
        accept(t, out);
    }
    return out;
}

void Sequence::accept(int32_t token, StepOutput& out) {
    VELA_ASSERT(finish_ == FinishReason::None);
    tokens_.push_back(token);
    out.tokens.push_back(token);
    if (request_.logprobs >= 0 && !raw_logits_.empty()) {
        out.logprobs.push_back(logprobs_of(token));
        raw_logits_.clear();
    }
    if (!request_.ignore_eos && tokenizer_.is_eog(token)) {
        // The end-of-generation token itself is not text; release what was held back.
        const StopChecker::Update tail = stop_.push(decoder_.flush());
        out.text += tail.text + (tail.stopped ? "" : stop_.flush());
        finish_ = out.finish = FinishReason::Stop;
        return;
    }
    StopChecker::Update r = stop_.push(decoder_.push(token));
    if (!r.stopped && n_generated() >= request_.max_tokens) {
        const StopChecker::Update tail = stop_.push(decoder_.flush());
        r.text += tail.text;
        r.stopped = tail.stopped;
        if (!r.stopped) r.text += stop_.flush();
        finish_ = out.finish = r.stopped ? FinishReason::Stop : FinishReason::Length;
    } else if (r.stopped) {
        finish_ = out.finish = FinishReason::Stop;
    }
    out.text += r.text;
}

std::vector<TokenChoice> Sequence::logprobs_of(int32_t token) const {
    std::vector<TokenChoice> out;
    const bool at_start = n_generated() == 1;
    out.push_back(
        {token, token_logprob(raw_logits_, token), tokenizer_.token_bytes(token, at_start)});
    for (const TokenLogprob& t : top_logprobs(raw_logits_, request_.logprobs)) {
        out.push_back({t.token, t.logprob, tokenizer_.token_bytes(t.token, at_start)});
    }
    return out;
}

StepOutput Sequence::finish_now(FinishReason reason) {
    StepOutput out;
    out.request_id = id_;
    if (finish_ == FinishReason::None) {
        out.text = stop_.flush();
        finish_ = reason;
    }
    out.finish = finish_;
    return out;
}

}  // namespace vela
