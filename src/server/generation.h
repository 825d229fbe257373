#pragma once
// Runs one parsed generation request against the EngineService: either to completion (one JSON
// response) or as an SSE stream pulled by the HTTP layer chunk by chunk.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/engine_service.h"
#include "server/openai_response.h"

namespace vela::server {

// Submits the spec's n choices and waits for the engine to accept them. ApiError 429/503/400
// when the service refuses or the engine rejects the request.
std::shared_ptr<RequestChannel> start_generation(EngineService& service, const GenerationSpec& spec,
                                                 Clock::time_point deadline);

// Collects every choice; ApiError 408 (after cancelling) when the deadline passes first.
nlohmann::json run_to_completion(EngineService& service, const GenerationSpec& spec,
                                 const ResponseMeta& meta, Clock::time_point deadline,
                                 ServerMetrics& metrics);

// Produces the SSE events of one streamed response. Not thread-safe: one HTTP thread pulls.
class SseStream {
  public:
    SseStream(EngineService& service, GenerationSpec spec, ResponseMeta meta,
              std::shared_ptr<RequestChannel> channel, Clock::time_point deadline,
              ServerMetrics& metrics);
    ~SseStream();  // cancels the generation unless it finished (client gone, write failed)

    // Waits for the next increments and returns their events ("" when none arrived yet);
    // sets `done` with the final events (usage, [DONE]).
    std::string next(bool& done);

  private:
    std::string finish_events();

    EngineService& service_;
    GenerationSpec spec_;
    ResponseMeta meta_;
    std::shared_ptr<RequestChannel> channel_;
    Clock::time_point deadline_;
    ServerMetrics& metrics_;
    std::vector<ChoiceState> choices_;
    std::vector<bool> started_;
    bool finished_ = false;
};

}  // namespace vela::server
