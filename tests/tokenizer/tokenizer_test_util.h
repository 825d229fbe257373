#pragma once
// Helpers shared by the tokenizer tests: fixture paths, JSON loading, the default model.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace vela::test {

inline std::filesystem::path source_dir() {
    const char* env = std::getenv("VELA_SOURCE_DIR");
    return env ? std::filesystem::path(env) : std::filesystem::path(VELA_SOURCE_DIR);
}

inline nlohmann::json load_json(const std::string& name) {
    std::ifstream in(source_dir() / "tests" / "tokenizer" / "data" / name);
    if (!in) throw std::runtime_error("missing fixture " + name);
    return nlohmann::json::parse(in);
}

inline std::filesystem::path default_model_path() {
    return source_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

// The default model's tokenizer, loaded once per test binary; null when the model is absent.
inline const Tokenizer* smollm2_tokenizer() {
    static const std::unique_ptr<Tokenizer> tok = []() -> std::unique_ptr<Tokenizer> {
        if (!std::filesystem::exists(default_model_path())) return nullptr;
        const gguf::File f = gguf::File::open(default_model_path().string());
        return std::make_unique<Tokenizer>(Tokenizer::from_gguf(f));
    }();
    return tok.get();
}

inline std::vector<int32_t> ids_of(const nlohmann::json& j) {
    return j.get<std::vector<int32_t>>();
}

// Every golden case: encode with and without special-token parsing gives the reference ids,
// decode gives the reference text, and plain-text ids decode back to the input.
inline void expect_matches_golden(const Tokenizer& tok, const nlohmann::json& golden) {
    ASSERT_GE(golden["cases"].size(), 1000u);
    int failures = 0;
    for (const auto& c : golden["cases"]) {
        const std::string text = c["text"];
        const auto special = tok.encode(text, false, true);
        const auto plain = tok.encode(text, false, false);
        EXPECT_EQ(special, ids_of(c["ids_special"])) << "parse_special, text: " << text;
        EXPECT_EQ(plain, ids_of(c["ids_plain"])) << "plain, text: " << text;
        EXPECT_EQ(tok.decode(special), c["decoded"].get<std::string>()) << text;
        EXPECT_EQ(tok.decode(plain), text);  // nothing is skipped when specials are plain text
        failures += special != ids_of(c["ids_special"]) || plain != ids_of(c["ids_plain"]);
        if (failures > 20) FAIL() << "too many mismatches";
    }
}

// Pushing each case's ids one at a time yields valid UTF-8 chunks that concatenate to
// decode(ids). Returns how many tokens were not valid UTF-8 on their own (the hard case).
inline int expect_stream_matches_decode(const Tokenizer& tok, const nlohmann::json& golden) {
    int split_chars = 0;
    for (const auto& c : golden["cases"]) {
        for (const char* key : {"ids_special", "ids_plain"}) {
            const auto ids = ids_of(c[key]);
            StreamDecoder dec(tok);
            std::string joined;
            for (const int32_t id : ids) {
                const std::string chunk = dec.push(id);
                EXPECT_TRUE(utf8::is_valid(chunk)) << c["text"];
                if (!utf8::is_valid(tok.token_bytes(id, false))) ++split_chars;
                joined += chunk;
            }
            const std::string rest = dec.flush();
            EXPECT_TRUE(rest.empty()) << "complete text leaves nothing behind";
            EXPECT_EQ(joined + rest, tok.decode(ids)) << c["text"];
        }
    }
    return split_chars;
}

}  // namespace vela::test
