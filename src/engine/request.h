#pragma once
// What a client asks the engine for, and what the engine streams back.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sampling/sampler.h"

namespace vela {

enum class FinishReason { None, Stop, Length, Abort };

const char* finish_reason_name(FinishReason r);

struct Request {
    std::vector<int32_t> prompt;     // token ids, non-empty
    SamplingParams sampling;
    int64_t max_tokens = 128;        // generated tokens at most
    std::vector<std::string> stop;   // stop strings (not included in the output text)
    bool ignore_eos = false;         // benchmarks generate exactly max_tokens
    // Keep this sequence's KV after it finishes so a later request (next chat turn) can reuse
    // the common prefix by naming it in reuse_kv_of.
    bool retain_kv = false;
    int64_t reuse_kv_of = -1;
};

// One streamed increment of one request.
struct StepOutput {
    int64_t request_id = 0;
    int32_t token = -1;              // the token sampled this step (-1 when none)
    std::string text;                // new complete UTF-8 text (stop strings held back)
    FinishReason finish = FinishReason::None;
};

}  // namespace vela
