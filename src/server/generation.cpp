#include "server/generation.h"

#include "server/api_error.h"

namespace vela::server {
namespace {

// Folds one event into its choice.
void apply(std::vector<ChoiceState>& choices, const ChannelEvent& e) {
    ChoiceState& c = choices[e.choice];
    // Each token's text starts where the previous token's bytes end.
    auto offset = static_cast<int64_t>(c.text.size());
    for (const std::vector<TokenChoice>& lp : e.output.logprobs) {
        c.logprobs.push_back(lp);
        c.text_offsets.push_back(offset);
        offset += static_cast<int64_t>(lp.front().bytes.size());
    }
    c.text += e.output.text;
    c.completion_tokens += static_cast<int64_t>(e.output.tokens.size());
    if (e.output.finish != FinishReason::None) c.finish = e.output.finish;
}

ApiError timeout_error() {
    return ApiError(408, "the request timed out", "timeout", "", "timeout");
}

// An abort the client did not ask for and that was not a timeout: the server is shutting down,
// or a failed engine step ended every request (`failure`: why no step can run any more).
ApiError aborted_error(const std::string& failure) {
    return ApiError(503,
                    failure.empty() ? "the request was aborted: the server is shutting down"
                                    : "the request was aborted: the engine stopped: " + failure,
                    "server_error", "", "aborted");
}

}  // namespace

HttpResponse json_response(int status, const nlohmann::json& body) {
    HttpResponse r;
    r.status = status;
    r.body = dump_json(body);
    return r;
}

HttpResponse error_response(const ApiError& e) {
    HttpResponse r = json_response(e.status, e.body());
    if (e.status == 429) r.headers.emplace_back("Retry-After", "1");
    return r;
}

GenerationReply::GenerationReply(EngineService& service, GenerationSpec spec, ResponseMeta meta,
                                 Clock::time_point deadline, ServerMetrics& metrics, Waker waker)
    : service_(service),
      spec_(std::move(spec)),
      meta_(std::move(meta)),
      deadline_(deadline),
      metrics_(metrics) {
    try {
        channel_ = service_.submit(expand_choices(spec_), std::move(waker));
    } catch (const QueueFull& e) {
        throw ApiError(429, e.what(), "rate_limit_error", "", "queue_full");
    } catch (const ShuttingDown& e) {
        throw ApiError(503, e.what(), "server_error", "", "shutting_down");
    }
    choices_.resize(channel_->n_choices());
    started_.assign(channel_->n_choices(), false);
}

GenerationReply::~GenerationReply() {
    if (!ended_) cancel();
}

void GenerationReply::end() {
    ended_ = true;
    int64_t completion = 0;
    for (const ChoiceState& c : choices_) completion += c.completion_tokens;
    metrics_.count_request_tokens(static_cast<int64_t>(spec_.base.prompt.size()), completion);
}

void GenerationReply::cancel() {
    if (ended_) return;
    service_.cancel(channel_);
    end();
}

void GenerationReply::poll(ReplySink& sink) {
    if (ended_) return;
    std::vector<ChannelEvent> events;
    bool done = false;
    const RequestChannel::State state = channel_->take(events, done);
    if (state == RequestChannel::State::Rejected) {
        end();
        sink.respond(error_response(ApiError(400, channel_->rejection(), "invalid_request_error",
                                             "", "invalid_value")));
        return;
    }
    if (!done && Clock::now() >= deadline_) {
        // Out of time: the engine aborts the rest at its next step; the client hears now.
        service_.cancel(channel_);
        timed_out_ = true;
    }
    if (spec_.stream && (stream_open_ || state == RequestChannel::State::Accepted)) {
        stream(sink, events, done);
    } else {
        collect(sink, events, done);
    }
}

void GenerationReply::collect(ReplySink& sink, const std::vector<ChannelEvent>& events,
                              bool done) {
    for (const ChannelEvent& e : events) apply(choices_, e);
    if (timed_out_) {
        end();
        sink.respond(error_response(timeout_error()));
        return;
    }
    if (!done) return;
    end();
    for (const ChoiceState& c : choices_) {
        if (c.finish == FinishReason::Abort) {
            sink.respond(error_response(aborted_error(service_.failure())));
            return;
        }
    }
    sink.respond(json_response(200, full_response(spec_, meta_, choices_)));
}

void GenerationReply::stream(ReplySink& sink, const std::vector<ChannelEvent>& events, bool done) {
    if (!stream_open_) {
        sink.start_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
        stream_open_ = true;
    }
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
    if (timed_out_) {
        // The status line is out: the timeout travels as an error event, as OpenAI's API
        // reports errors mid-stream, then the stream ends normally.
        out += sse_event(timeout_error().body());
        out += "data: [DONE]\n\n";
    } else if (done) {
        if (spec_.include_usage) out += sse_event(usage_chunk(spec_, meta_, choices_));
        out += "data: [DONE]\n\n";
    }
    sink.send(out);
    if (timed_out_ || done) {
        end();
        sink.end_stream();
    }
}

}  // namespace vela::server
