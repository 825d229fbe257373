#include "server/generation.h"

#include "server/api_error.h"

namespace vela::server {
namespace {

// After a cancel, the engine reports the aborts at its next step boundary; this bounds the
// wait for that in case a step is slow.
constexpr auto kAbortGrace = std::chrono::seconds(30);

// Folds one event into its choice.
void apply(std::vector<ChoiceState>& choices, const ChannelEvent& e) {
    ChoiceState& c = choices[e.choice];
    if (!e.output.logprobs.empty()) {
        c.logprobs.push_back(e.output.logprobs);
        c.text_offsets.push_back(static_cast<int64_t>(c.text.size()));
    }
    c.text += e.output.text;
    if (e.output.token >= 0) ++c.completion_tokens;
    if (e.output.finish != FinishReason::None) c.finish = e.output.finish;
}

void count_usage(ServerMetrics& metrics, const GenerationSpec& spec,
                 const std::vector<ChoiceState>& choices) {
    int64_t completion = 0;
    for (const ChoiceState& c : choices) completion += c.completion_tokens;
    metrics.count_request_tokens(static_cast<int64_t>(spec.base.prompt.size()), completion);
}

}  // namespace

std::shared_ptr<RequestChannel> start_generation(EngineService& service, const GenerationSpec& spec,
                                                 Clock::time_point deadline) {
    std::shared_ptr<RequestChannel> channel;
    try {
        channel = service.submit(expand_choices(spec));
    } catch (const QueueFull& e) {
        throw ApiError(429, e.what(), "rate_limit_error", "", "queue_full");
    } catch (const ShuttingDown& e) {
        throw ApiError(503, e.what(), "server_error", "", "shutting_down");
    }
    if (!channel->wait_accepted(deadline)) {
        service.cancel(channel);
        throw ApiError(408, "the request timed out waiting for the engine", "timeout", "",
                       "timeout");
    }
    if (channel->rejected()) {
        throw ApiError(400, channel->rejection(), "invalid_request_error", "", "invalid_value");
    }
    return channel;
}

nlohmann::json run_to_completion(EngineService& service, const GenerationSpec& spec,
                                 const ResponseMeta& meta, Clock::time_point deadline,
                                 ServerMetrics& metrics) {
    auto channel = start_generation(service, spec, deadline);
    std::vector<ChoiceState> choices(channel->n_choices());
    std::vector<ChannelEvent> events;
    for (;;) {
        events.clear();
        const RequestChannel::Poll poll = channel->wait(events, deadline);
        for (const ChannelEvent& e : events) apply(choices, e);
        if (poll == RequestChannel::Poll::Done) break;
        if (poll == RequestChannel::Poll::Timeout) {
            service.cancel(channel);
            count_usage(metrics, spec, choices);
            throw ApiError(408, "the request timed out", "timeout", "", "timeout");
        }
    }
    count_usage(metrics, spec, choices);
    return full_response(spec, meta, choices);
}

SseStream::SseStream(EngineService& service, GenerationSpec spec, ResponseMeta meta,
                     std::shared_ptr<RequestChannel> channel, Clock::time_point deadline,
                     ServerMetrics& metrics)
    : service_(service),
      spec_(std::move(spec)),
      meta_(std::move(meta)),
      channel_(std::move(channel)),
      deadline_(deadline),
      metrics_(metrics),
      choices_(channel_->n_choices()),
      started_(channel_->n_choices(), false) {}

SseStream::~SseStream() {
    if (!finished_) {
        service_.cancel(channel_);
        count_usage(metrics_, spec_, choices_);
    }
}

std::string SseStream::next(bool& done) {
    done = false;
    std::vector<ChannelEvent> events;
    // Short slices so the HTTP layer regains control (and notices shutdown) regularly.
    const auto slice = std::min(deadline_, Clock::now() + std::chrono::milliseconds(200));
    const RequestChannel::Poll poll = channel_->wait(events, slice);
    std::string out;
    for (const ChannelEvent& e : events) {
        const size_t logprobs_before = choices_[e.choice].logprobs.size();
        apply(choices_, e);
        const bool first = !started_[e.choice];
        const bool new_logprobs = choices_[e.choice].logprobs.size() > logprobs_before;
        if (e.output.text.empty() && e.output.finish == FinishReason::None && !first &&
            !new_logprobs) {
            continue;
        }
        started_[e.choice] = true;
        out += sse_event(stream_chunk(spec_, meta_, e.choice, e.output.text, e.output.finish, first,
                                      choices_[e.choice], logprobs_before));
    }
    if (poll == RequestChannel::Poll::Timeout && Clock::now() >= deadline_) {
        // Out of time: abort and let the engine's Abort finishes end the stream as "length".
        service_.cancel(channel_);
        deadline_ = Clock::now() + kAbortGrace;
    }
    if (poll == RequestChannel::Poll::Done) {
        out += finish_events();
        done = true;
    }
    return out;
}

std::string SseStream::finish_events() {
    finished_ = true;
    count_usage(metrics_, spec_, choices_);
    std::string out;
    if (spec_.include_usage) out += sse_event(usage_chunk(spec_, meta_, choices_));
    out += "data: [DONE]\n\n";
    return out;
}

}  // namespace vela::server
