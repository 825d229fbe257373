#pragma once
// Builds the OpenAI response objects: whole responses, SSE chunks, usage.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/openai_request.h"

namespace vela::server {

// What one choice produced so far.
struct ChoiceState {
    std::string text;
    // Per generated token when logprobs were requested: the sampled token and its alternatives,
    // and where its text starts in `text`.
    std::vector<std::vector<TokenChoice>> logprobs;
    std::vector<int64_t> text_offsets;
    int64_t completion_tokens = 0;
    FinishReason finish = FinishReason::None;
};

// Identity shared by every chunk of one response.
struct ResponseMeta {
    std::string id;       // "cmpl-..." or "chatcmpl-..."
    int64_t created = 0;  // unix seconds
    std::string model;
};

// "stop", "length", or "abort" for a generation the server ended (shutdown): a truncated output
// must not pass for one that reached its token limit.
const char* openai_finish_reason(FinishReason r);

nlohmann::json usage_json(int64_t prompt_tokens, const std::vector<ChoiceState>& choices);

nlohmann::json full_response(const GenerationSpec& spec, const ResponseMeta& meta,
                             const std::vector<ChoiceState>& choices);

// One streamed increment of one choice; `first` adds the assistant role (chat) and the echoed
// prompt (completions).
nlohmann::json stream_chunk(const GenerationSpec& spec, const ResponseMeta& meta, size_t choice,
                            const std::string& text, FinishReason finish, bool first,
                            const ChoiceState& state, size_t first_logprob);
nlohmann::json usage_chunk(const GenerationSpec& spec, const ResponseMeta& meta,
                           const std::vector<ChoiceState>& choices);

// "data: <json>\n\n"; invalid UTF-8 is replaced rather than thrown on.
std::string sse_event(const nlohmann::json& j);
std::string dump_json(const nlohmann::json& j);

}  // namespace vela::server
