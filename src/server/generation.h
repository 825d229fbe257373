#pragma once
// One generation request (/v1/completions, /v1/chat/completions) as a Reply the HTTP loop
// polls: submitted to the EngineService on construction, then either collected into one JSON
// response or streamed as SSE events while the engine produces them. Nothing here blocks.
#include <memory>
#include <string>
#include <vector>

#include "server/engine_service.h"
#include "server/http_server.h"
#include "server/openai_response.h"

namespace vela::server {

// The OpenAI-style JSON error response for an ApiError.
HttpResponse error_response(const ApiError& e);
HttpResponse json_response(int status, const nlohmann::json& body);

class GenerationReply : public Reply {
  public:
    // Submits the spec's n choices; ApiError 429 (queue full) or 503 (shutting down) when the
    // service refuses them. `waker` is called whenever the engine has news for this reply.
    GenerationReply(EngineService& service, GenerationSpec spec, ResponseMeta meta,
                    Clock::time_point deadline, ServerMetrics& metrics, Waker waker);
    ~GenerationReply() override;  // cancels the generation unless it ended

    void poll(ReplySink& sink) override;
    void cancel() override;  // the client is gone

  private:
    void collect(ReplySink& sink, const std::vector<ChannelEvent>& events, bool done);
    void stream(ReplySink& sink, const std::vector<ChannelEvent>& events, bool done);
    void end();

    EngineService& service_;
    GenerationSpec spec_;
    ResponseMeta meta_;
    Clock::time_point deadline_;
    ServerMetrics& metrics_;
    std::shared_ptr<RequestChannel> channel_;
    std::vector<ChoiceState> choices_;
    std::vector<bool> started_;  // per choice: its first chunk was sent
    bool stream_open_ = false;
    bool timed_out_ = false;
    bool ended_ = false;
};

}  // namespace vela::server
