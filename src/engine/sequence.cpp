#include "engine/sequence.h"

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
    const int32_t token = sampler_.sample(logits, tokens_);
    tokens_.push_back(token);
    out.token = token;

    if (!request_.ignore_eos && tokenizer_.is_eog(token)) {
        out.text = stop_.flush();
        finish_ = out.finish = FinishReason::Stop;
        return out;
    }
    const StopChecker::Update r = stop_.push(decoder_.push(token));
    out.text = r.text;
    if (r.stopped) {
        finish_ = out.finish = FinishReason::Stop;
    } else if (n_generated() >= request_.max_tokens) {
        out.text += stop_.push(decoder_.flush()).text + stop_.flush();
        finish_ = out.finish = FinishReason::Length;
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
