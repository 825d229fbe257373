#pragma once
// Pieces every `vela` subcommand shares: model loading, and the runtime objects a command drives
// (model, tokenizer, backend, engine).
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/tp_workers.h"
#include "model/model.h"
#include "sampling/sampler.h"
#include "spec/drafter.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tools/options.h"

namespace vela::cli {

// Path of the default model: $VELA_MODEL, else models/ next to the source tree of this binary,
// else ./models.
std::string default_model_path();

// Everything a command runs on. Loading prints progress for large files. The one place that
// picks the backend.
struct Runtime {
    // --tensor-parallel N: the other ranks' processes (forked, or started by mpirun) and the
    // group's collectives (first: they outlive everything that uses them).
    std::unique_ptr<ShmGroup> tp_shm;
    std::unique_ptr<TpWorkers> tp_workers;
    std::unique_ptr<Communicator> tp_comm;  // NCCL (GPU backends), or sockets under mpirun
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<ThreadPool> pool;
    std::unique_ptr<Backend> backend;
    KvFormats kv_formats = KvFormat::F16;
    EvictionConfig eviction;  // --kv-evict, --kv-budget, --kv-sinks

    // The draft model of --spec draft, loaded by make_drafter.
    std::unique_ptr<Model> draft_model;
    std::unique_ptr<Tokenizer> draft_tokenizer;

    static Runtime load(const CommonOptions& o);
    // On a GPU, the memory is planned here (engine/memory_plan.h): a model whose weights,
    // workspace and KV for one context do not fit is refused before anything is allocated, and
    // with fill_kv (serve without --kv-blocks) the KV pool takes the rest of the budget.
    // max_running > 0: the engine's running sequences at most (the local group's pool of a
    // model with sliding-window layers is sized for them).
    EngineConfig engine_config(const CommonOptions& o, bool fill_kv = false,
                               int64_t max_running = 0) const;
    // KV bytes per token of the model (all layers, K and V, scales included) in the formats
    // and block size of `config`.
    size_t kv_bytes_per_token(const EngineConfig& config) const;
    // The main KV pool's blocks that `bytes` of KV memory hold, with the local group's pool
    // (sliding-window layers, engine.h's local_kv_blocks) taken out first where the engine
    // will make one.
    int64_t kv_blocks_for(size_t bytes, const EngineConfig& config) const;
    // The drafter --spec asks for (null when off), loading the draft model; sets the
    // speculation part of `config`. InvalidArgument for inconsistent flags or a draft model
    // whose vocabulary is not the model's.
    std::unique_ptr<spec::Drafter> make_drafter(const SpecOptions& o, EngineConfig& config);
};

// Whole file as a string; vela::Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace vela::cli
