#pragma once
// Maps the JSON body of /v1/completions and /v1/chat/completions to engine Requests. Every
// field is type- and range-checked here; a violation is an ApiError(400) naming the field, so
// the engine only ever sees valid input.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/api_error.h"
#include "tokenizer/tokenizer.h"

namespace vela::server {

enum class Endpoint { Completions, Chat };

struct ProtocolLimits {
    int64_t n_ctx = 4096;  // prompt + generated tokens of one sequence
    int64_t max_prompt_tokens = 4095;
    int max_n = 16;       // choices per request
    int32_t n_vocab = 0;  // token ids in a prompt array must be below this
};

struct GenerationSpec {
    Endpoint endpoint = Endpoint::Completions;
    std::string model;
    Request base;  // prompt, sampling, max_tokens, stop
    int n = 1;
    bool stream = false;
    bool include_usage = false;
    bool echo = false;
    std::string echo_text;  // the prompt as text, prepended to each choice when echo
    bool seeded = false;    // the client chose a seed: choice i uses seed + i
};

GenerationSpec parse_generation_request(Endpoint endpoint, const nlohmann::json& body,
                                        const Tokenizer& tokenizer, const ProtocolLimits& limits);

// The n engine requests of a spec: same prompt, seeds derived from the request seed.
std::vector<Request> expand_choices(const GenerationSpec& spec);

}  // namespace vela::server
