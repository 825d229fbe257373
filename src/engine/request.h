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
    std::vector<int32_t> prompt;  // token ids, non-empty
    SamplingParams sampling;
    int64_t max_tokens = 128;       // generated tokens at most
    std::vector<std::string> stop;  // stop strings (not included in the output text)
    bool ignore_eos = false;        // benchmarks generate exactly max_tokens
    // Keep this sequence's KV after it finishes so a later request (next chat turn) can reuse
    // the common prefix by naming it in reuse_kv_of.
    bool retain_kv = false;
    int64_t reuse_kv_of = -1;
    // Log-probabilities to report per generated token (OpenAI `logprobs`): -1 none, else the
    // sampled token's plus this many most likely alternatives. They describe the model's own
    // distribution (log-softmax of the raw logits), before any sampling processor.
    int32_t logprobs = -1;
    // Draft tokens per step at most for this request when the engine speculates (llama-server's
    // `speculative.n_max`): -1 the engine's setting, 0 no speculation; never above the engine's.
    int32_t spec_max_tokens = -1;
};

// One token with its log-probability and the bytes it contributes to the text.
struct TokenChoice {
    int32_t token = -1;
    float logprob = 0;
    std::string bytes;
};

// One streamed increment of one request: the tokens one step appended (several when a step
// accepts draft tokens), their new text, and how the request ended if it did.
struct StepOutput {
    int64_t request_id = 0;
    std::vector<int32_t> tokens;  // appended this step, in order (empty when none)
    std::string text;             // new complete UTF-8 text (stop strings held back)
    FinishReason finish = FinishReason::None;
    // When the request asked for logprobs, one entry per token: [0] is that token, then the
    // top alternatives.
    std::vector<std::vector<TokenChoice>> logprobs;
};

}  // namespace vela
