// The `vela` command line: generate, chat, info, perplexity, bench, serve. This is the only file
// that includes CLI11 (header-only and slow to compile): it declares every subcommand's flags on
// that command's options struct (tools/options.h), then calls its run function (cmd_<name>.cpp).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "tools/commands.h"

namespace vela::cli {
namespace {

void add_common_options(CLI::App& app, CommonOptions& o) {
    app.add_option("-m,--model", o.model, "GGUF model file (default: the bundled SmolLM2-135M)");
    app.add_option("-t,--threads", o.threads, "CPU threads (default: all cores)")
        ->check(CLI::Range(0, 1024));
    app.add_option("-c,--ctx-size", o.ctx_size, "context size in tokens")
        ->check(CLI::Range(int64_t{16}, int64_t{1} << 22))
        ->capture_default_str();
    app.add_option("-b,--batch-size", o.batch_size, "max tokens per forward step (prefill chunk)")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 16))
        ->capture_default_str();
    app.add_option("--device", o.device,
                   "where the model runs: cpu, cuda, or auto (cuda when "
                   "built in and a GPU is present)")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->capture_default_str();
    app.add_option("--tensor-parallel,--tp", o.tensor_parallel,
                   "split every layer across N ranks, each a process of its own (GPU r on "
                   "CUDA, over NCCL; CPU ranks share the threads), Megatron-style")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    app.add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                   "share of the GPU's memory for weights, workspace and KV (serve fills the "
                   "rest with KV blocks unless --kv-blocks is given)")
        ->check(CLI::Range(0.01, 1.0))
        ->capture_default_str();
    app.add_flag("--enforce-eager", o.enforce_eager,
                 "GPU: launch every op one by one instead of replaying decode steps recorded as "
                 "CUDA graphs");
    app.add_flag("--batch-invariant", o.batch_invariant,
                 "GPU: the same arithmetic for every row whatever else is batched with it, so "
                 "greedy output does not depend on the load (slower: matvec kernels only, "
                 "decode rows through the prefill attention kernel); the CPU always is");
    const auto kv_types = CLI::IsMember({"f32", "f16", "bf16", "q8", "q4", "fp8"});
    app.add_option("--kv-type", o.kv_type,
                   "KV cache format of K and V: f32, f16, bf16, q8 (int8), q4 (4-bit; K "
                   "per channel of each block as KIVI, the newest block in fp16; CPU), fp8 "
                   "(e4m3 with a scale per head row; GPU)")
        ->check(kv_types)
        ->capture_default_str();
    app.add_option("--kv-type-k", o.kv_type_k, "KV cache format of K (default: --kv-type)")
        ->check(kv_types);
    app.add_option("--kv-type-v", o.kv_type_v, "KV cache format of V (default: --kv-type)")
        ->check(kv_types);
    app.add_option("--kv-quant-group", o.kv_quant_group,
                   "values per scale of a q8 row and of a q4 V row (KIVI's group size): 32, 64 "
                   "or 128 (CPU; the GPU keeps one scale per head row)")
        ->check(CLI::IsMember({int64_t{32}, int64_t{64}, int64_t{128}}))
        ->capture_default_str();
    app.add_option("--kv-block-size", o.kv_block_size,
                   "tokens per KV cache block (vLLM's --block-size; q4 K shares its per-channel "
                   "scales over a block)")
        ->check(CLI::Range(int64_t{1}, int64_t{1024}))
        ->capture_default_str();
    app.add_option("--kv-evict", o.kv_evict,
                   "KV eviction policy: none, window (recent tokens), sinks (StreamingLLM: "
                   "first --kv-sinks + recent), h2o (accumulated attention), tova "
                   "(attention of the newest query)")
        ->check(CLI::IsMember({"none", "window", "sinks", "h2o", "tova"}))
        ->capture_default_str();
    app.add_option("--kv-budget", o.kv_budget,
                   "KV tokens kept per sequence with --kv-evict: a number of tokens, or a "
                   "fraction in (0, 1) of the tokens seen");
    app.add_option("--kv-sinks", o.kv_sinks, "first tokens always kept by --kv-evict sinks")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
        ->capture_default_str();
    app.add_flag("--swa-full", o.swa_full,
                 "models with sliding-window layers (Gemma 3): keep those layers' KV for every "
                 "token (prefix caching, swap), not only about their window per sequence");
    app.add_flag("-v,--verbose", o.verbose, "log more");
}

void add_sampling_options(CLI::App& app, SamplingOptions& o) {
    SamplingParams& p = o.params;
    app.add_option("-n,--max-tokens,--n-predict", o.max_tokens, "tokens to generate")
        ->capture_default_str();
    app.add_option("--temperature,--temp", p.temperature, "sampling temperature (0 = greedy)")
        ->capture_default_str();
    app.add_option("--top-k", p.top_k, "top-k (<= 0 disables)")->capture_default_str();
    app.add_option("--top-p", p.top_p, "top-p / nucleus (1 disables)")->capture_default_str();
    app.add_option("--min-p", p.min_p, "min-p (0 disables)")->capture_default_str();
    app.add_option("--repeat-penalty", p.repetition_penalty, "repetition penalty (1 disables)")
        ->capture_default_str();
    app.add_option("--frequency-penalty", p.frequency_penalty, "frequency penalty")
        ->capture_default_str();
    app.add_option("--presence-penalty", p.presence_penalty, "presence penalty")
        ->capture_default_str();
    app.add_option("--repeat-last-n", p.penalty_last_n, "penalty window (-1 = whole context)")
        ->capture_default_str();
    app.add_option("-s,--seed", p.seed, "RNG seed (default: random)");
    app.add_option("--stop", o.stop, "stop string (repeatable)");
    app.add_flag("--ignore-eos", o.ignore_eos, "keep generating past end-of-generation tokens");
}

void add_spec_options(CLI::App& app, SpecOptions& o) {
    app.add_option("--spec", o.method,
                   "speculative decoding: off, ngram (prompt lookup), draft (--draft-model) or "
                   "self (the model drafts over --spec-sinks + --spec-window of its KV)")
        ->check(CLI::IsMember({"off", "ngram", "draft", "self"}))
        ->capture_default_str();
    app.add_option("--draft-model", o.draft_model,
                   "GGUF draft model for --spec draft (same vocabulary as the model)");
    app.add_option("--spec-max-tokens,--draft-max", o.max_tokens,
                   "draft tokens per sequence and step, at most")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    app.add_option("--spec-window", o.self_window,
                   "--spec self: recent KV tokens each draft forward attends to")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
        ->capture_default_str();
    app.add_option("--spec-sinks", o.self_sinks,
                   "--spec self: first KV tokens each draft forward attends to")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
        ->capture_default_str();
    app.add_option("--spec-max-cost", o.self_max_cost,
                   "--spec self: draft only while a draft forward is estimated to read at most "
                   "this share of a full one's bytes (long contexts); below 1, every method "
                   "drafts only while measured decode speed says it pays (1: always draft)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app.add_option("--spec-max-batch", o.max_batch,
                   "no drafting in a step with more running sequences than this (default: 8 for "
                   "ngram and draft; no limit for self, whose cost rules decide)")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
    app.add_option("--spec-branches", o.branches,
                   "--spec ngram: merge up to this many earlier continuations into a token tree; "
                   "--spec draft: up to this many candidates per depth, the draft's next-best "
                   "tokens beside its chain, sized by acceptance (1: a chain)")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    app.add_option("--spec-depth", o.depth,
                   "--spec draft trees: draft forwards (tree depth) per step at most, the rest of "
                   "--spec-max-tokens going to siblings (0: --spec-max-tokens)")
        ->check(CLI::Range(0, 64))
        ->capture_default_str();
    app.add_option("--spec-node-gain", o.node_gain,
                   "--spec draft trees: draft a sibling only when it adds at least this many "
                   "expected accepted tokens (its verification row's price; 0: fill the budget)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
}

// A subcommand whose callback (run once CLI11 has parsed and checked its flags) makes `chosen`
// run `run` on its options. The options live in the caller's frame for the whole parse.
template <class Options>
CLI::App* add_command(CLI::App& app, const char* name, const char* help, Options& o,
                      int (*run)(const Options&), std::function<int()>& chosen) {
    CLI::App* cmd = app.add_subcommand(name, help);
    cmd->callback([&o, run, &chosen] { chosen = [&o, run] { return run(o); }; });
    return cmd;
}

void add_generate(CLI::App& app, GenerateOptions& o, std::function<int()>& chosen) {
    CLI::App* cmd = add_command(app, "generate", "generate text from a prompt, streaming it", o,
                                &run_generate, chosen);
    add_common_options(*cmd, o.common);
    add_sampling_options(*cmd, o.sampling);
    add_spec_options(*cmd, o.spec);
    cmd->add_option("-p,--prompt", o.prompt, "prompt text");
    cmd->add_option("-f,--file", o.prompt_file, "read the prompt from a file");
    cmd->add_flag("--chat", o.chat,
                  "wrap the prompt as a user message in the model's chat template");
}

void add_chat(CLI::App& app, ChatOptions& o, std::function<int()>& chosen) {
    CLI::App* cmd = add_command(app, "chat", "multi-turn chat on stdin/stdout (/exit to quit)", o,
                                &run_chat, chosen);
    add_common_options(*cmd, o.common);
    add_sampling_options(*cmd, o.sampling);
    cmd->add_option("--system", o.system, "system message");
}

void add_info(CLI::App& app, InfoOptions& o, std::function<int()>& chosen) {
    CLI::App* cmd =
        add_command(app, "info", "show a model's architecture, sizes, tensor types and tokenizer",
                    o, &run_info, chosen);
    cmd->add_option("-m,--model", o.model, "GGUF model file (default: the bundled SmolLM2-135M)");
    cmd->add_flag("--metadata", o.all_metadata, "also list every metadata key");
}

void add_perplexity(CLI::App& app, PerplexityOptions& o, std::function<int()>& chosen) {
    CLI::App* cmd =
        add_command(app, "perplexity", "chunked perplexity of a text file (llama.cpp method)", o,
                    &run_perplexity, chosen);
    add_common_options(*cmd, o.common);
    cmd->add_option("file", o.file, "text file")->required();
    cmd->add_option("--chunks", o.max_chunks, "evaluate at most this many chunks");
    cmd->add_option(
        "--kl-divergence-base", o.kl_divergence_base,
        "also write every scored token's log-probabilities to this file, in the format "
        "of llama-perplexity's --kl-divergence-base (compare with its --kl-divergence)");
    cmd->add_option("--kl-divergence", o.kl_divergence,
                    "compare every scored token's distribution with a base file (written by "
                    "--kl-divergence-base here or by llama-perplexity) and print the KL "
                    "divergence and top-token agreement");
}

void add_bench(CLI::App& app, BenchOptions& o, std::function<int()>& chosen) {
    CLI::App* cmd =
        add_command(app, "bench", "prefill and decode throughput (llama-bench style pp/tg)", o,
                    &run_bench, chosen);
    add_common_options(*cmd, o.common);
    cmd->add_option("-p,--n-prompt", o.n_prompt, "prompt tokens for the pp test (0 skips)")
        ->capture_default_str();
    cmd->add_option("-n,--n-gen", o.n_gen, "generated tokens for the tg test (0 skips)")
        ->capture_default_str();
    cmd->add_option("-d,--depth", o.depth, "tokens already in the cache when the tg test starts")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 22))
        ->capture_default_str();
    cmd->add_option("-r,--repetitions", o.repetitions, "repetitions")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    cmd->add_flag("--json", o.json, "print results as JSON");
    add_spec_options(*cmd, o.spec);
    cmd->add_option("-f,--file", o.prompt_file,
                    "prompt text of the speculative test (default: n-prompt random tokens)");
    cmd->add_option("--parallel", o.parallel,
                    "--spec: that many greedy requests at once, each its own prompt (with -f, "
                    "consecutive n-prompt-token slices of the file); decode rate while all of "
                    "them decode")
        ->check(CLI::Range(int64_t{1}, int64_t{1024}))
        ->capture_default_str();
}

// Flags follow llama-server where they overlap (--host, --port, -m, -t, -c, -np/--parallel,
// --api-key, --timeout).
void add_serve(CLI::App& app, ServeOptions& o, std::function<int()>& chosen) {
    CLI::App* cmd = add_command(app, "serve",
                                "OpenAI-compatible HTTP server (/v1/completions, "
                                "/v1/chat/completions, /v1/models, /health, /metrics)",
                                o, &run_serve, chosen);
    add_common_options(*cmd, o.common);
    add_spec_options(*cmd, o.spec);
    cmd->add_option("--host", o.http.host, "address to listen on")->capture_default_str();
    cmd->add_option("--port", o.http.port, "port (0: any free port)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    cmd->add_option("--parallel", o.parallel, "max sequences decoded together (also -np)")
        ->check(CLI::Range(int64_t{1}, int64_t{4096}))
        ->capture_default_str();
    cmd->add_option("--api-key", o.api_key,
                    "require Authorization: Bearer <key> (also --api-key-file, $VELA_API_KEY)");
    cmd->add_option("--api-key-file", o.api_key_file,
                    "read the API key from the file's first line");
    auto* blocks = cmd->add_option("--kv-blocks", o.kv_blocks,
                                   "KV cache blocks of --kv-block-size tokens (0: one full "
                                   "context, or the GPU's memory left)")
                       ->check(CLI::Range(int64_t{0}, int64_t{1} << 24))
                       ->capture_default_str();
    cmd->add_option("--kv-cache-memory-bytes", o.kv_cache_bytes,
                    "KV cache pool size in bytes, as many blocks as fit in the chosen formats "
                    "(suffixes as 512MiB or 2GB; vLLM's flag)")
        ->transform(CLI::AsSizeValue(false))
        ->excludes(blocks);
    cmd->add_option("--max-queue", o.max_queue, "requests waiting beyond --parallel before 429")
        ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
        ->capture_default_str();
    cmd->add_option("--timeout", o.timeout_s, "request timeout in seconds")
        ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
        ->capture_default_str();
    cmd->add_option("--drain-timeout", o.drain_s,
                    "seconds in-flight requests may finish after SIGTERM")
        ->check(CLI::Range(int64_t{0}, int64_t{3600}))
        ->capture_default_str();
    cmd->add_option("--max-body", o.http.limits.max_body, "largest accepted request body in bytes")
        ->check(CLI::Range(size_t{1}, size_t{1} << 32))
        ->capture_default_str();
    cmd->add_option("--header-timeout", o.header_timeout_s,
                    "seconds a client may take to send a request's head")
        ->check(CLI::Range(int64_t{1}, int64_t{3600}))
        ->capture_default_str();
    cmd->add_option("--idle-timeout", o.idle_timeout_s,
                    "seconds an idle keep-alive connection stays open")
        ->check(CLI::Range(int64_t{1}, int64_t{3600}))
        ->capture_default_str();
    cmd->add_option("--max-connections", o.http.max_connections,
                    "open connections; at the limit the oldest idle one is closed")
        ->check(CLI::Range(16, 1 << 20))
        ->capture_default_str();
    cmd->add_option("--max-n", o.max_n, "largest n (choices per request)")
        ->check(CLI::Range(1, 128))
        ->capture_default_str();
    cmd->add_option("-a,--alias", o.model_name, "model name reported by the API")
        ->capture_default_str();
}

// llama-server spellings CLI11 cannot declare (multi-letter single-dash flags such as -np).
void rewrite_llama_server_flags(std::vector<std::string>& args) {
    for (std::string& a : args) {
        if (a == "-np") a = "--parallel";
    }
}

}  // namespace
}  // namespace vela::cli

int main(int argc, char** argv) {
    using namespace vela::cli;
    CLI::App app{"vela: LLM inference engine (GGUF models, paged KV cache, CPU FlashAttention)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "vela 0.1.0");
    GenerateOptions generate;
    ChatOptions chat;
    InfoOptions info;
    PerplexityOptions perplexity;
    BenchOptions bench;
    ServeOptions serve;
    std::function<int()> chosen;
    add_generate(app, generate, chosen);
    add_chat(app, chat, chosen);
    add_info(app, info, chosen);
    add_perplexity(app, perplexity, chosen);
    add_bench(app, bench, chosen);
    add_serve(app, serve, chosen);
    try {
        // CLI11 wants the arguments after the program name, last first.
        std::vector<std::string> args(argv + 1, argv + argc);
        rewrite_llama_server_flags(args);
        std::reverse(args.begin(), args.end());
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return run_guarded(chosen);
}
