#pragma once
// Pieces every `vela` subcommand shares: the common flags, model loading, and the runtime
// objects a command drives (model, tokenizer, backend, engine).
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "model/model.h"
#include "sampling/sampler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace vela::cli {

struct CommonOptions {
    std::string model;  // empty: the default model
    int threads = 0;    // 0: all cores
    int64_t ctx_size = 4096;
    int64_t batch_size = 512;
    bool verbose = false;
};

struct SamplingOptions {
    SamplingParams params;
    int64_t max_tokens = 128;
    std::vector<std::string> stop;
    bool ignore_eos = false;
};

void add_common_options(CLI::App& app, CommonOptions& o);
void add_sampling_options(CLI::App& app, SamplingOptions& o);

// Path of the default model: $VELA_MODEL, else models/ next to the source tree of this binary,
// else ./models.
std::string default_model_path();

// Everything a command runs on. Loading prints progress for large files.
struct Runtime {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<ThreadPool> pool;
    std::unique_ptr<CpuBackend> backend;

    static Runtime load(const CommonOptions& o);
    EngineConfig engine_config(const CommonOptions& o) const;
};

// Runs a command body, turning vela::Error into a one-line message and exit code 1.
int run_guarded(const std::function<int()>& body);

}  // namespace vela::cli
