#include "server/openai_request.h"

#include <fmt/format.h>

#include <limits>
#include <optional>
#include <set>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace vela::server {
namespace {

using nlohmann::json;

const std::set<std::string> kCommonFields = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logprobs",
    "stream",
    "stream_options",
    "user",
    "logit_bias",
    "ignore_eos",          // llama-server extension: benchmarks generate exactly max_tokens
    "speculative.n_max"};  // llama-server extension: draft tokens per step at most (0: off)
const std::set<std::string> kCompletionFields = {"prompt", "echo", "best_of", "suffix"};
const std::set<std::string> kChatFields = {"messages", "max_completion_tokens", "top_logprobs",
                                           "response_format"};

// Typed, range-checked access to optional fields; JSON null counts as absent.
class Fields {
  public:
    explicit Fields(const json& body) : body_(body) {}

    const json* get(const std::string& key) const {
        auto it = body_.find(key);
        return it == body_.end() || it->is_null() ? nullptr : &*it;
    }
    std::optional<double> number(const std::string& key, double lo, double hi) const {
        const json* v = get(key);
        if (v == nullptr) return std::nullopt;
        if (!v->is_number()) throw bad_field(key, fmt::format("'{}' must be a number", key));
        const double x = v->get<double>();
        if (!(x >= lo && x <= hi)) {
            throw bad_field(key,
                            fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x));
        }
        return x;
    }
    std::optional<int64_t> integer(const std::string& key, int64_t lo, int64_t hi) const {
        const json* v = get(key);
        if (v == nullptr) return std::nullopt;
        const bool too_big =
            v->is_number_unsigned() &&
            v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
        if (!v->is_number_integer() || too_big) {
            throw bad_field(key,
                            fmt::format("'{}' must be an integer between {} and {}", key, lo, hi));
        }
        const int64_t x = v->get<int64_t>();
        if (x < lo || x > hi) {
            throw bad_field(key,
                            fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x));
        }
        return x;
    }
    std::optional<bool> boolean(const std::string& key) const {
        const json* v = get(key);
        if (v == nullptr) return std::nullopt;
        if (!v->is_boolean()) throw bad_field(key, fmt::format("'{}' must be a boolean", key));
        return v->get<bool>();
    }
    std::optional<std::string> string(const std::string& key) const {
        const json* v = get(key);
        if (v == nullptr) return std::nullopt;
        if (!v->is_string()) throw bad_field(key, fmt::format("'{}' must be a string", key));
        return v->get<std::string>();
    }

  private:
    const json& body_;
};

void reject_unknown_fields(Endpoint endpoint, const json& body) {
    const auto& own = endpoint == Endpoint::Chat ? kChatFields : kCompletionFields;
    for (const auto& [key, value] : body.items()) {
        if (!kCommonFields.count(key) && !own.count(key)) {
            throw ApiError(400, fmt::format("Unrecognized request argument supplied: {}", key),
                           "invalid_request_error", key, "unknown_parameter");
        }
    }
}

// Fields this server knows but cannot honour: refused rather than silently ignored.
void reject_unsupported(Endpoint endpoint, const Fields& f) {
    auto unsupported = [](const std::string& key, const std::string& what) {
        return ApiError(400, what, "invalid_request_error", key, "unsupported_parameter");
    };
    if (endpoint == Endpoint::Chat) {
        if (const json* rf = f.get("response_format");
            rf != nullptr && !(rf->is_object() && rf->value("type", json()) == "text")) {
            throw unsupported("response_format",
                              "only response_format {\"type\": \"text\"} is supported");
        }
    } else {
        f.integer("best_of", 1, 1);  // only the default: one candidate per choice
        if (f.string("suffix").value_or("") != "")
            throw unsupported("suffix", "suffix is not supported");
    }
    if (const json* lb = f.get("logit_bias"); lb != nullptr && !(lb->is_object() && lb->empty())) {
        throw unsupported("logit_bias", "logit_bias is not supported by this server yet");
    }
}

std::string message_content(const json& content, size_t i) {
    const std::string param = fmt::format("messages[{}].content", i);
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array())
        throw bad_field(param, "message content must be a string or an array of text parts");
    std::string text;
    for (const json& part : content) {
        if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
            throw bad_field(param, "only text content parts are supported");
        }
        text += part["text"].get<std::string>();
    }
    return text;
}

std::vector<ChatMessage> parse_messages(const json* messages) {
    if (messages == nullptr) throw bad_field("messages", "'messages' is required");
    if (!messages->is_array() || messages->empty()) {
        throw bad_field("messages", "'messages' must be a non-empty array");
    }
    static const std::set<std::string> kRoles = {"system", "developer", "user", "assistant",
                                                 "tool"};
    std::vector<ChatMessage> out;
    for (size_t i = 0; i < messages->size(); ++i) {
        const json& m = (*messages)[i];
        const std::string param = fmt::format("messages[{}]", i);
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
            !kRoles.count(m["role"].get<std::string>())) {
            throw bad_field(
                param, "each message needs a 'role' of system, developer, user, assistant or tool");
        }
        if (!m.contains("content")) throw bad_field(param, "each message needs a 'content'");
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";  // the newer OpenAI name for the same turn
        out.push_back({role, message_content(m["content"], i)});
    }
    return out;
}

std::vector<int32_t> parse_prompt(const json* prompt, const Tokenizer& tok,
                                  const ProtocolLimits& limits, std::string& text) {
    if (prompt == nullptr) throw bad_field("prompt", "'prompt' is required");
    const json* p = prompt;
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    if (p->is_string()) {
        text = p->get<std::string>();
        return tok.encode(text, tok.add_bos_default(), true);
    }
    if (!p->is_array())
        throw bad_field("prompt", "'prompt' must be a string or an array of token ids");
    std::vector<int32_t> ids;
    for (const json& t : *p) {
        if (!t.is_number_integer()) {
            throw bad_field("prompt",
                            "'prompt' arrays must hold token ids (one prompt per request)");
        }
        const int64_t id = t.get<int64_t>();
        if (id < 0 || id >= limits.n_vocab) {
            throw bad_field("prompt", fmt::format("token id {} is outside the vocabulary (0..{})",
                                                  id, limits.n_vocab - 1));
        }
        ids.push_back(static_cast<int32_t>(id));
    }
    text = tok.decode(ids);
    return ids;
}

// Stop strings are matched on the engine thread against every sequence's new text, and a
// partial match holds streamed text back: both are bounded here. OpenAI allows 4 strings,
// SGLang 32; markers such as "</tool_call>" or "\nUser:" are a few bytes.
constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 1024;

std::vector<std::string> parse_stop(const Fields& f) {
    const json* v = f.get("stop");
    if (v == nullptr) return {};
    std::vector<std::string> stops;
    if (v->is_string()) {
        stops.push_back(v->get<std::string>());
    } else if (v->is_array() && v->size() <= kMaxStopStrings) {
        for (const json& s : *v) {
            if (!s.is_string()) throw bad_field("stop", "'stop' entries must be strings");
            stops.push_back(s.get<std::string>());
        }
    } else {
        throw bad_field("stop", fmt::format("'stop' must be a string or an array of at most {} "
                                            "strings",
                                            kMaxStopStrings));
    }
    for (const std::string& s : stops) {
        if (s.empty()) throw bad_field("stop", "stop strings must not be empty");
        if (s.size() > kMaxStopBytes) {
            throw bad_field("stop", fmt::format("stop strings must be at most {} bytes, got {}",
                                                kMaxStopBytes, s.size()));
        }
    }
    return stops;
}

// Chat: `logprobs: true` plus `top_logprobs` 0..20; completions: `logprobs` 0..5 alternatives.
void parse_logprobs(Endpoint endpoint, const Fields& f, GenerationSpec& spec) {
    if (endpoint == Endpoint::Chat) {
        const bool wanted = f.boolean("logprobs").value_or(false);
        const auto top = f.integer("top_logprobs", 0, 20);
        if (top && !wanted)
            throw bad_field("top_logprobs", "'top_logprobs' requires 'logprobs': true");
        if (wanted) spec.base.logprobs = static_cast<int32_t>(top.value_or(0));
    } else if (auto n = f.integer("logprobs", 0, 5)) {
        spec.base.logprobs = static_cast<int32_t>(*n);
    }
}

void parse_sampling(const Fields& f, GenerationSpec& spec) {
    SamplingParams& s = spec.base.sampling;
    if (auto t = f.number("temperature", 0, 2)) s.temperature = static_cast<float>(*t);
    if (auto p = f.number("top_p", 0, 1)) {
        if (*p == 0)
            s.temperature = 0;  // an empty nucleus keeps only the most likely token
        else
            s.top_p = static_cast<float>(*p);
    }
    if (auto k = f.integer("top_k", -1, std::numeric_limits<int32_t>::max()))
        s.top_k = static_cast<int32_t>(*k);
    if (auto m = f.number("min_p", 0, 1)) s.min_p = static_cast<float>(*m);
    if (auto p = f.number("presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*p);
    if (auto p = f.number("frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*p);
    if (auto p = f.number("repetition_penalty", 0.01, 10))
        s.repetition_penalty = static_cast<float>(*p);
    if (auto seed = f.integer("seed", std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max())) {
        s.seed = static_cast<uint64_t>(*seed);
        spec.seeded = s.seed != SamplingParams::kRandomSeed;
    }
    try {
        s.validate();
    } catch (const Error& e) {
        throw ApiError(400, e.what(), "invalid_request_error", "", "invalid_value");
    }
}

}  // namespace

GenerationSpec parse_generation_request(Endpoint endpoint, const json& body, const Tokenizer& tok,
                                        const ProtocolLimits& limits) {
    if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
    reject_unknown_fields(endpoint, body);
    const Fields f(body);
    reject_unsupported(endpoint, f);
    GenerationSpec spec;
    spec.endpoint = endpoint;
    spec.model = f.string("model").value_or("");
    f.string("user");  // accepted for compatibility, type-checked only
    const char* prompt_field = endpoint == Endpoint::Chat ? "messages" : "prompt";
    if (endpoint == Endpoint::Chat) {
        // Message text is never parsed for control tokens: only the template's markup is.
        spec.base.prompt = encode_chat(tok, parse_messages(f.get("messages")), true);
    } else {
        spec.base.prompt = parse_prompt(f.get("prompt"), tok, limits, spec.echo_text);
        spec.echo = f.boolean("echo").value_or(false);
    }
    const auto n_prompt = static_cast<int64_t>(spec.base.prompt.size());
    if (n_prompt == 0) throw bad_field(prompt_field, "the prompt is empty");
    if (n_prompt > limits.max_prompt_tokens || n_prompt >= limits.n_ctx) {
        throw ApiError(
            400,
            fmt::format("This model's maximum context length is {} tokens; the prompt has {} "
                        "tokens (at most {} allowed, leaving room to generate)",
                        limits.n_ctx, n_prompt,
                        std::min(limits.max_prompt_tokens, limits.n_ctx - 1)),
            "invalid_request_error", prompt_field, "context_length_exceeded");
    }
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    auto max_tokens = f.integer("max_tokens", 1, kMax);
    if (endpoint == Endpoint::Chat) {
        if (auto m = f.integer("max_completion_tokens", 1, kMax)) max_tokens = m;
    }
    const int64_t room = limits.n_ctx - n_prompt;
    spec.base.max_tokens =
        std::min(max_tokens.value_or(endpoint == Endpoint::Chat ? room : 16), room);
    spec.base.stop = parse_stop(f);
    spec.n = static_cast<int>(f.integer("n", 1, limits.max_n).value_or(1));
    parse_sampling(f, spec);
    parse_logprobs(endpoint, f, spec);
    spec.base.ignore_eos = f.boolean("ignore_eos").value_or(false);
    spec.base.spec_max_tokens =
        static_cast<int32_t>(f.integer("speculative.n_max", 0, 64).value_or(-1));
    spec.stream = f.boolean("stream").value_or(false);
    if (const json* so = f.get("stream_options")) {
        if (!so->is_object())
            throw bad_field("stream_options", "'stream_options' must be an object");
        spec.include_usage = Fields(*so).boolean("include_usage").value_or(false);
    }
    return spec;
}

std::vector<Request> expand_choices(const GenerationSpec& spec) {
    std::vector<Request> out(static_cast<size_t>(spec.n), spec.base);
    for (size_t i = 0; i < out.size(); ++i) {
        // Choice 0 keeps the request seed, so n = 1 and the first of n agree.
        if (spec.seeded) out[i].sampling.seed = spec.base.sampling.seed + i;
    }
    return out;
}

}  // namespace vela::server
