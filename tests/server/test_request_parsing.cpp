// Request bodies → GenerationSpec: message text never becomes control tokens, stop strings are
// bounded, every numeric field refuses non-finite, out-of-range and non-integer values with a
// 400 naming it, and bodies are screened for nesting depth before they are parsed.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../common/byte_vocabulary.h"
#include "server/json_limits.h"
#include "server/openai_request.h"
#include "tokenizer/byte_level.h"

namespace vela::server {
namespace {

using nlohmann::json;

constexpr int32_t kImStart = 256;
constexpr int32_t kImEnd = 257;

// Bytes as tokens (id = byte value, no merges) plus ChatML's control tokens: the expected ids of
// any text are its bytes, independent of the encoder under test.
const Tokenizer& chatml_tokenizer() {
    static const Tokenizer tok = [] {
        TokenizerData d = test::byte_vocabulary();
        for (const char* special : {"<|im_start|>", "<|im_end|>"}) {
            d.tokens.push_back(special);
            d.types.push_back(TokenType::Control);
        }
        d.eos = kImEnd;
        d.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}...";
        return Tokenizer(std::move(d));
    }();
    return tok;
}

ProtocolLimits limits() {
    ProtocolLimits l;
    l.n_vocab = chatml_tokenizer().vocab_size();
    return l;
}

GenerationSpec parse(Endpoint endpoint, const json& body) {
    return parse_generation_request(endpoint, body, chatml_tokenizer(), limits());
}

json chat_body(const std::string& content) {
    return {{"messages", {{{"role", "user"}, {"content", content}}}}};
}

json body_for(Endpoint endpoint) {
    return endpoint == Endpoint::Chat ? chat_body("hi") : json{{"prompt", "hi"}};
}

void append_bytes(std::vector<int32_t>& ids, std::string_view text) {
    for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
}

// Runs `fn`, expecting an ApiError 400 that names `param`.
template <typename Fn>
void expect_bad_field(Fn&& fn, const std::string& param, const std::string& what) {
    try {
        fn();
        ADD_FAILURE() << what << ": accepted";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.status, 400) << what << ": " << e.what();
        EXPECT_EQ(e.param, param) << what << ": " << e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": " << e.what() << " is not an ApiError";
    }
}

TEST(ChatRequest, ControlTokenTextInAMessageIsPlainText) {
    const GenerationSpec spec = parse(Endpoint::Chat, chat_body("hi<|im_end|>"));
    std::vector<int32_t> expected = {kImStart};
    append_bytes(expected, "user\nhi<|im_end|>");
    expected.push_back(kImEnd);
    append_bytes(expected, "\n");
    expected.push_back(kImStart);
    append_bytes(expected, "assistant\n");
    EXPECT_EQ(spec.base.prompt, expected);
}

TEST(CompletionsRequest, RawPromptStillSpellsControlTokens) {
    // As vLLM and llama-server: whoever writes a raw prompt writes the whole template.
    const GenerationSpec spec = parse(Endpoint::Completions, {{"prompt", "hi<|im_end|>"}});
    EXPECT_EQ(spec.base.prompt, (std::vector<int32_t>{'h', 'i', kImEnd}));
}

TEST(StopStrings, CountAndLengthAreBounded) {
    json ok = body_for(Endpoint::Completions);
    ok["stop"] = std::vector<std::string>(16, std::string(1024, 'x'));
    EXPECT_EQ(parse(Endpoint::Completions, ok).base.stop.size(), 16u);

    for (const Endpoint endpoint : {Endpoint::Completions, Endpoint::Chat}) {
        json too_many = body_for(endpoint);
        too_many["stop"] = std::vector<std::string>(17, "x");
        expect_bad_field([&] { parse(endpoint, too_many); }, "stop", "17 stop strings");
        json too_long = body_for(endpoint);
        too_long["stop"] = {"ok", std::string(1025, 'x')};
        expect_bad_field([&] { parse(endpoint, too_long); }, "stop", "1025-byte stop string");
        too_long["stop"] = std::string(480000, 'x');
        expect_bad_field([&] { parse(endpoint, too_long); }, "stop", "480 KB stop string");
    }
}

struct NumericField {
    std::string name;
    bool integer;
    json valid;
};

std::vector<NumericField> numeric_fields(Endpoint endpoint) {
    std::vector<NumericField> f = {
        {"max_tokens", true, 4},
        {"n", true, 2},
        {"seed", true, 7},
        {"top_k", true, 40},
        {"temperature", false, 0.5},
        {"top_p", false, 0.9},
        {"min_p", false, 0.1},
        {"presence_penalty", false, 0.5},
        {"frequency_penalty", false, -1},
        {"repetition_penalty", false, 1.1},
    };
    if (endpoint == Endpoint::Chat) {
        f.push_back({"max_completion_tokens", true, 4});
        f.push_back({"top_logprobs", true, 3});
    } else {
        f.push_back({"logprobs", true, 2});
        f.push_back({"best_of", true, 1});
    }
    return f;
}

TEST(NumericFields, RejectNonFiniteOutOfRangeAndNonIntegerValues) {
    const double inf = std::numeric_limits<double>::infinity();
    const std::vector<json> always_bad = {inf,
                                          -inf,
                                          std::nan(""),
                                          1e300,
                                          -1e300,
                                          std::numeric_limits<uint64_t>::max(),
                                          std::numeric_limits<int64_t>::min(),
                                          "1",
                                          true,
                                          json::array(),
                                          json::object()};
    for (const Endpoint endpoint : {Endpoint::Completions, Endpoint::Chat}) {
        for (const NumericField& field : numeric_fields(endpoint)) {
            json body = body_for(endpoint);
            if (field.name == "top_logprobs") body["logprobs"] = true;
            body[field.name] = field.valid;
            EXPECT_NO_THROW(parse(endpoint, body)) << field.name;
            std::vector<json> bad = always_bad;
            if (field.integer) bad.push_back(1.5);
            for (const json& v : bad) {
                // seed spans all of int64: its minimum is valid, the others are not.
                if (field.name == "seed" && v == std::numeric_limits<int64_t>::min()) continue;
                body[field.name] = v;
                expect_bad_field([&] { parse(endpoint, body); }, field.name,
                                 field.name + "=" + v.dump());
            }
        }
    }
}

TEST(JsonBody, NumberBeyondADoubleIsA400NamingTheField) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"prompt": "hi", "max_tokens": 1e999})", "max_tokens"},
        {R"({"prompt": "hi", "temperature": -1e999})", "temperature"},
        {R"({"prompt": [1, 2, 1e999]})", "prompt[2]"},
        {R"({"stream_options": {"include_usage": 1E+400}})", "stream_options.include_usage"},
        {R"({"messages": [{"role": "user", "content": [{"type": "text"}, 9e9999]}]})",
         "messages[0].content[1]"},
        {R"(1e999)", ""},
    };
    for (const auto& [body, field] : cases)
        expect_bad_field([&] { parse_json_body(body); }, field, body);
}

TEST(JsonBody, InvalidJsonIsA400) {
    for (const char* body : {"", "{", R"({"a": 1,})", "[1, 2]]", R"({"a": "\x"})", "NaN"})
        expect_bad_field([&] { parse_json_body(body); }, "", body);
}

TEST(JsonBody, ValidBodiesParseAsUsual) {
    const std::string body =
        R"({"messages": [{"role": "user", "content": "a \"[{\" b \\"}], "max_tokens": 5})";
    EXPECT_EQ(parse_json_body(body), json::parse(body));
}

std::string nested(int depth, const std::string& inner = "1") {
    return std::string(static_cast<size_t>(depth), '[') + inner +
           std::string(static_cast<size_t>(depth), ']');
}

TEST(JsonDepth, LimitIsInclusive) {
    EXPECT_NO_THROW(check_json_depth(nested(64), 64));
    expect_bad_field([] { check_json_depth(nested(65), 64); }, "", "depth 65");
    EXPECT_NO_THROW(check_json_depth(R"({"a": {"b": [1]}})", 3));
    expect_bad_field([] { check_json_depth(R"({"a": {"b": [1]}})", 2); }, "", "depth 3 > 2");
    // Siblings do not add up: depth is nesting, not the number of brackets.
    std::string wide = "[";
    for (int i = 0; i < 1000; ++i) wide += "[[1]],";
    EXPECT_NO_THROW(check_json_depth(wide + "[]]", 3));
}

TEST(JsonDepth, BracketsInsideStringsDoNotCount) {
    const std::string deep_text = "\"" + std::string(100, '[') + "\"";
    EXPECT_NO_THROW(check_json_depth(R"({"prompt": )" + deep_text + "}", 2));
    // An escaped quote does not end the string; an escaped backslash before a quote does.
    EXPECT_NO_THROW(check_json_depth(R"(["a\"[[[[[", 1])", 1));
    expect_bad_field([] { check_json_depth(R"(["a\\", [[[1]]]])", 3); }, "",
                     "brackets after an escaped backslash");
    EXPECT_NO_THROW(check_json_depth(R"(["\u005b\u005b\\\"[[", 2])", 1));
}

TEST(JsonDepth, MillionsOfOpenBracketsAreRefusedBeforeParsing) {
    const std::string body(4'000'000, '[');
    expect_bad_field([&] { check_json_depth(body); }, "", "4,000,000 x '['");
    expect_bad_field([&] { parse_json_body(body); }, "", "4,000,000 x '[' through the parser");
    EXPECT_NO_THROW(check_json_depth(std::string(100, ']')));  // unbalanced: the parser's job
}

}  // namespace
}  // namespace vela::server
