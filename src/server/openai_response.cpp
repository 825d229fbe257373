#include "server/openai_response.h"

namespace vela::server {

using nlohmann::json;

const char* openai_finish_reason(FinishReason r) {
    switch (r) {
        case FinishReason::Stop:
            return "stop";
        case FinishReason::Abort:
            return "abort";
        default:
            return "length";
    }
}

json usage_json(int64_t prompt_tokens, const std::vector<ChoiceState>& choices) {
    int64_t completion = 0;
    for (const ChoiceState& c : choices) completion += c.completion_tokens;
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion},
            {"total_tokens", prompt_tokens + completion}};
}

namespace {

json finish_json(FinishReason r) {
    return r == FinishReason::None ? json() : json(openai_finish_reason(r));
}

json envelope(const GenerationSpec& spec, const ResponseMeta& meta, bool chunk) {
    const bool chat = spec.endpoint == Endpoint::Chat;
    const char* object =
        chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    return {{"id", meta.id},
            {"object", object},
            {"created", meta.created},
            {"model", meta.model},
            {"system_fingerprint", "vela"}};
}

json bytes_json(const std::string& bytes) {
    json out = json::array();
    for (unsigned char b : bytes) out.push_back(b);
    return out;
}

// OpenAI's two shapes: chat {"content": [{token, logprob, bytes, top_logprobs}]}, completions
// {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}. Entries [from, end).
json logprobs_json(const GenerationSpec& spec, const ChoiceState& c, size_t from) {
    if (spec.base.logprobs < 0) return nullptr;
    const bool chat = spec.endpoint == Endpoint::Chat;
    const int64_t echo_offset = spec.echo ? static_cast<int64_t>(spec.echo_text.size()) : 0;
    json content = json::array(), tokens = json::array(), token_logprobs = json::array(),
         tops = json::array(), offsets = json::array();
    for (size_t i = from; i < c.logprobs.size(); ++i) {
        const std::vector<TokenChoice>& entry = c.logprobs[i];
        const TokenChoice& sampled = entry.front();
        if (chat) {
            json top = json::array();
            for (size_t j = 1; j < entry.size(); ++j) {
                top.push_back({{"token", entry[j].bytes},
                               {"logprob", entry[j].logprob},
                               {"bytes", bytes_json(entry[j].bytes)}});
            }
            content.push_back({{"token", sampled.bytes},
                               {"logprob", sampled.logprob},
                               {"bytes", bytes_json(sampled.bytes)},
                               {"top_logprobs", std::move(top)}});
        } else {
            tokens.push_back(sampled.bytes);
            token_logprobs.push_back(sampled.logprob);
            json top = json::object();
            for (size_t j = 1; j < entry.size(); ++j) top[entry[j].bytes] = entry[j].logprob;
            tops.push_back(std::move(top));
            offsets.push_back(echo_offset + c.text_offsets[i]);
        }
    }
    if (chat) return {{"content", std::move(content)}, {"refusal", nullptr}};
    return {{"tokens", std::move(tokens)},
            {"token_logprobs", std::move(token_logprobs)},
            {"top_logprobs", std::move(tops)},
            {"text_offset", std::move(offsets)}};
}

}  // namespace

json full_response(const GenerationSpec& spec, const ResponseMeta& meta,
                   const std::vector<ChoiceState>& choices) {
    json out = envelope(spec, meta, false);
    json list = json::array();
    for (size_t i = 0; i < choices.size(); ++i) {
        const ChoiceState& c = choices[i];
        if (spec.endpoint == Endpoint::Chat) {
            list.push_back({{"index", i},
                            {"message", {{"role", "assistant"}, {"content", c.text}}},
                            {"logprobs", logprobs_json(spec, c, 0)},
                            {"finish_reason", finish_json(c.finish)}});
        } else {
            list.push_back({{"index", i},
                            {"text", spec.echo ? spec.echo_text + c.text : c.text},
                            {"logprobs", logprobs_json(spec, c, 0)},
                            {"finish_reason", finish_json(c.finish)}});
        }
    }
    out["choices"] = std::move(list);
    out["usage"] = usage_json(static_cast<int64_t>(spec.base.prompt.size()), choices);
    return out;
}

json stream_chunk(const GenerationSpec& spec, const ResponseMeta& meta, size_t choice,
                  const std::string& text, FinishReason finish, bool first,
                  const ChoiceState& state, size_t first_logprob) {
    json out = envelope(spec, meta, true);
    json c = {{"index", choice},
              {"logprobs", logprobs_json(spec, state, first_logprob)},
              {"finish_reason", finish_json(finish)}};
    if (spec.endpoint == Endpoint::Chat) {
        json delta = json::object();
        if (first) delta["role"] = "assistant";
        if (!text.empty() || first) delta["content"] = text;
        c["delta"] = std::move(delta);
    } else {
        c["text"] = first && spec.echo ? spec.echo_text + text : text;
    }
    out["choices"] = json::array({std::move(c)});
    if (spec.include_usage) out["usage"] = nullptr;  // as OpenAI: null on all but the last chunk
    return out;
}

json usage_chunk(const GenerationSpec& spec, const ResponseMeta& meta,
                 const std::vector<ChoiceState>& choices) {
    json out = envelope(spec, meta, true);
    out["choices"] = json::array();
    out["usage"] = usage_json(static_cast<int64_t>(spec.base.prompt.size()), choices);
    return out;
}

std::string dump_json(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse_event(const json& j) {
    return "data: " + dump_json(j) + "\n\n";
}

}  // namespace vela::server
