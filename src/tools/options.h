#pragma once
// What each `vela` subcommand's flags fill in: plain structs with the defaults the help shows.
// main.cpp declares the flags (the only file that sees CLI11); each cmd_*.cpp runs one struct.
#include <cstdint>
#include <string>
#include <vector>

#include "sampling/sampling_params.h"
#include "server/http_server.h"

namespace vela::cli {

struct CommonOptions {
    std::string model;  // empty: the default model
    int threads = 0;    // 0: all cores (shared by the ranks of --tensor-parallel)
    int tensor_parallel = 1;  // ranks, each a process (and a GPU) with 1 / N of every layer
    int64_t ctx_size = 4096;
    int64_t batch_size = 512;
    std::string device = "auto";    // cpu, cuda, auto
    std::string kv_type = "f16";    // f32, f16, bf16, q8, q4 (K per channel, KIVI): K and V
    std::string kv_type_k;          // empty: kv_type
    std::string kv_type_v;          // empty: kv_type
    int64_t kv_quant_group = 32;    // values per scale of q8 rows and q4 V rows: 32, 64, 128
    int64_t kv_block_size = 16;     // tokens per KV block (q4 K: per-channel scales per block)
    std::string kv_evict = "none";  // none, window, sinks, h2o, tova
    std::string kv_budget;          // tokens (>= 1) or a fraction in (0, 1); empty: none given
    int64_t kv_sinks = 4;
    bool swa_full = false;  // sliding-window layers keep every token's KV (llama.cpp's --swa-full)
    double gpu_memory_utilization = 0.9;  // share of the GPU's memory Vela may use
    bool enforce_eager = false;           // no CUDA graphs: every op launched one by one
    bool batch_invariant = false;         // GPU: row arithmetic independent of the batch
    bool verbose = false;
};

// Speculative decoding (generate, bench, serve).
struct SpecOptions {
    std::string method = "off";  // off, ngram, draft, self
    std::string draft_model;     // GGUF of the draft model (--spec draft)
    int32_t max_tokens = 5;      // draft tokens per sequence and step, at most
    int32_t branches = 1;        // n-gram continuations merged into a token tree (1: a chain),
                                 // or a draft model's tree width (candidates per depth)
    int32_t depth = 0;           // --spec draft trees: draft forwards per step (0: max_tokens)
    double node_gain = 0.2;      // --spec draft trees: a sibling's least expected gain, tokens
    int64_t self_sinks = 4;      // --spec self: the draft forwards' attention sinks
    int64_t self_window = 512;   // and recent window
    double self_max_cost = 0.5;  // draft only while a draft forward costs at most this share
    // No drafting in a step with more running sequences (vLLM's disable_by_batch_size);
    // -1: 8 for a drafter, none for --spec self (MagicDec's regime is a large batch).
    int64_t max_batch = -1;
};

struct SamplingOptions {
    SamplingParams params;
    int64_t max_tokens = 128;
    std::vector<std::string> stop;
    bool ignore_eos = false;
};

struct GenerateOptions {
    CommonOptions common;
    SamplingOptions sampling;
    SpecOptions spec;
    std::string prompt;
    std::string prompt_file;
    bool chat = false;
};

struct ChatOptions {
    ChatOptions() { sampling.max_tokens = 512; }

    CommonOptions common;
    SamplingOptions sampling;
    std::string system;
};

struct InfoOptions {
    std::string model;
    bool all_metadata = false;
};

struct PerplexityOptions {
    PerplexityOptions() { common.ctx_size = 512; }  // llama.cpp's perplexity default

    CommonOptions common;
    std::string file;
    int64_t max_chunks = -1;
    std::string kl_divergence_base;  // empty: not written
    std::string kl_divergence;       // a base file to compare with; empty: none
};

struct BenchOptions {
    CommonOptions common;
    SpecOptions spec;
    std::string prompt_file;  // the speculative test's prompt (default: n_prompt random tokens)
    int64_t n_prompt = 512;
    int64_t n_gen = 128;
    int64_t depth = 0;  // tokens in the cache before the tg test
    int64_t parallel = 1;  // the speculative test's concurrent requests
    int repetitions = 5;
    bool json = false;
};

struct ServeOptions {
    CommonOptions common;
    SpecOptions spec;
    server::HttpServerOptions http;  // --host, --port, --max-body, --max-connections
    std::string api_key;
    std::string api_key_file;
    std::string model_name = "vela";  // reported by /v1/models and in responses
    int64_t parallel = 16;
    int64_t kv_blocks = 0;
    uint64_t kv_cache_bytes = 0;  // --kv-cache-memory-bytes: KV pool size (0: --kv-blocks)
    int64_t max_queue = 256;
    int64_t timeout_s = 600;
    int64_t drain_s = 10;
    int max_n = 16;
    int64_t header_timeout_s = 10;
    int64_t idle_timeout_s = 30;
};

}  // namespace vela::cli
