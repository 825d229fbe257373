#pragma once
// Helpers shared by the tokenizer tests: fixture paths, JSON loading, the default model.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

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

}  // namespace vela::test
