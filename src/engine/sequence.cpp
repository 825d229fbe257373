#include "engine/sequence.h"

#include <algorithm>
#include <cmath>

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
    accept(token, out, raw_logits_);
    return out;
}

std::optional<StepOutput> Sequence::append_sampled_top(std::span<const sampling::Candidate> ranked,
                                                       double lse) {
    StepOutput out;
    out.request_id = id_;
    const int32_t token = sampler_.sample_top(ranked, lse);
    if (token < 0) return std::nullopt;
    if (request_.logprobs >= 0) out.logprobs.push_back(logprobs_of(token, ranked, lse));
    accept(token, out);
    return out;
}

StepOutput Sequence::append_verified(std::span<float> rows, spec::Verifier& verifier,
                                     int64_t& n_accepted, int64_t& n_valid_kv,
                                     std::vector<int32_t>& path) {
    StepOutput out;
    out.request_id = id_;
    const size_t vocab = rows.size() / static_cast<size_t>(draft_.size() + 1);
    // Logprobs describe the raw rows; the verifier applies penalties to the last one in place.
    if (request_.logprobs >= 0) raw_logits_.assign(rows.begin(), rows.end());
    spec::Verdict v = verifier.verify(sampler_, rows, tokens_, draft_);
    for (size_t i = 0; i < v.tokens.size() && finish_ == FinishReason::None; ++i) {
        // Token i was drawn from the row after the i-th accepted draft (row 0 first).
        const size_t row = i == 0 ? 0 : static_cast<size_t>(v.path[i - 1]) + 1;
        const std::span<const float> raw =
            raw_logits_.empty() ? std::span<const float>{}
                                : std::span<const float>(raw_logits_).subspan(row * vocab, vocab);
        accept(v.tokens[i], out, raw);
    }
    n_accepted = v.n_accepted;
    // The fed last token, then the accepted drafts that the sequence kept.
    n_valid_kv = 1 + std::min<int64_t>(v.n_accepted, static_cast<int64_t>(out.tokens.size()));
    path = std::move(v.path);
    path.resize(static_cast<size_t>(n_valid_kv - 1));
    draft_.clear();
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

void Sequence::accept(int32_t token, StepOutput& out, std::span<const float> raw_logits) {
    VELA_ASSERT(finish_ == FinishReason::None);
    tokens_.push_back(token);
    out.tokens.push_back(token);
    if (request_.logprobs >= 0 && !raw_logits.empty()) {
        out.logprobs.push_back(logprobs_of(token, raw_logits));
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

std::vector<TokenChoice> Sequence::logprobs_of(int32_t token,
                                               std::span<const float> raw_logits) const {
    std::vector<TokenChoice> out;
    const bool at_start = n_generated() == 1;
    out.push_back(
        {token, token_logprob(raw_logits, token), tokenizer_.token_bytes(token, at_start)});
    for (const TokenLogprob& t : top_logprobs(raw_logits, request_.logprobs)) {
        out.push_back({t.token, t.logprob, tokenizer_.token_bytes(t.token, at_start)});
    }
    return out;
}

std::vector<TokenChoice> Sequence::logprobs_of(int32_t token,
                                               std::span<const sampling::Candidate> ranked,
                                               double lse) const {
    const bool at_start = n_generated() == 0;  // `token` is not appended yet
    const auto drawn = std::find_if(ranked.begin(), ranked.end(),
                                    [&](const sampling::Candidate& c) { return c.token == token; });
    VELA_ASSERT(drawn != ranked.end() && "a token drawn from the list is in it");
    // As token_logprob and top_logprobs compute them: the float logit less the double lse.
    std::vector<TokenChoice> out;
    out.push_back(
        {token, static_cast<float>(drawn->logit - lse), tokenizer_.token_bytes(token, at_start)});
    for (const sampling::Candidate& c : ranked) {
        if (std::ssize(out) > request_.logprobs || c.token < 0 || !(c.logit > -INFINITY)) break;
        out.push_back({c.token, static_cast<float>(c.logit - lse),
                       tokenizer_.token_bytes(c.token, at_start)});
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
