#pragma once
// The default model (SmolLM2-135M, fetched by scripts/fetch_model.sh) loaded once per test
// binary, with its tokenizer and a 2-thread CPU backend. Null when the model is not fetched:
// tests then GTEST_SKIP.
#include <filesystem>
#include <memory>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace vela::test {

struct DefaultModel {
    explicit DefaultModel(const std::string& path)
        : model(path), tokenizer(Tokenizer::from_gguf(model.file())), pool(2), backend(pool) {}

    Model model;
    Tokenizer tokenizer;
    ThreadPool pool;
    CpuBackend backend;
};

inline const std::string& default_model_path() {
    static const std::string path =
        std::string(VELA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    return path;
}

inline DefaultModel* default_model() {
    static const std::unique_ptr<DefaultModel> loaded =
        std::filesystem::exists(default_model_path())
            ? std::make_unique<DefaultModel>(default_model_path())
            : nullptr;
    return loaded.get();
}

}  // namespace vela::test
