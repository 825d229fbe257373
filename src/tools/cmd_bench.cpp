// `vela bench`: llama-bench style throughput. ppN: one N-token prompt through an empty cache;
// tgN: N single-token decode steps from an empty cache, or after a D-token context with
// --depth D (tgN@dD, untimed prefill first: decode at long context, where attention reads the
// whole KV cache every step). Mean and standard deviation over repetitions, after one warm-up
// run of each test. With --spec: tgN through the engine (greedy, the prompt of -f or n-prompt
// random tokens, decode time only), without and with speculation, with the acceptance counters;
// with --parallel N, N such requests at once, each its own prompt, timed while all N decode.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <random>
#include <set>

#include "engine/forward_driver.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace vela::cli {
namespace {

struct Result {
    std::string test;
    double mean = 0, stddev = 0;
};

Result summarize(const std::string& name, const std::vector<double>& rates) {
    double mean = 0, var = 0;
    for (double x : rates) mean += x / static_cast<double>(rates.size());
    for (double x : rates)
        var += (x - mean) * (x - mean) / static_cast<double>(std::max<size_t>(1, rates.size() - 1));
    return {name, mean, std::sqrt(var)};
}

// Times run_once (after an untimed setup) over `reps` repetitions.
template <class Setup, class F>
Result measure(const std::string& name, int64_t n_tokens, int reps, Setup&& setup, F&& run_once) {
    setup();
    run_once();  // warm-up: page faults, caches, thread wake-up
    std::vector<double> rates;
    for (int r = 0; r < reps; ++r) {
        setup();
        const auto t0 = std::chrono::steady_clock::now();
        run_once();
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rates.push_back(static_cast<double>(n_tokens) / s);
    }
    return summarize(name, rates);
}

// Decode tokens per second of greedy requests through `engine`, one per prompt, all submitted
// at once: the tokens generated from the step where every request has its first token (prefill
// excluded) to the step where the first one finishes, over that time. One request: its whole
// decode.
double engine_decode_rate(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                          int64_t n_gen) {
    for (const std::vector<int32_t>& prompt : prompts) {
        Request r;
        r.prompt = prompt;
        r.max_tokens = n_gen;
        r.ignore_eos = true;
        r.sampling.temperature = 0;
        engine.add_request(r);
    }
    using Clock = std::chrono::steady_clock;
    Clock::time_point t0{}, t1{};
    std::set<int64_t> started;
    int64_t n = 0;  // tokens since t0
    bool timing = false, done = false;
    while (engine.has_work()) {
        const std::vector<StepOutput> out = engine.step();
        if (done) continue;
        for (const StepOutput& o : out) {
            if (timing) n += static_cast<int64_t>(o.tokens.size());
            if (!o.tokens.empty()) started.insert(o.request_id);
            done = done || (timing && o.finish != FinishReason::None);
        }
        if (!timing && started.size() == prompts.size()) {
            timing = true;
            t0 = Clock::now();
        }
        if (done) t1 = Clock::now();
    }
    return static_cast<double>(n) / std::chrono::duration<double>(t1 - t0).count();
}

struct SpecResult {
    Result off, on;
    EngineStats stats;  // of the speculative runs
};


SpecResult bench_speculation(Runtime& rt, const BenchOptions& o,
                             const std::vector<std::vector<int32_t>>& prompts) {
    EngineConfig config = rt.engine_config(o.common);
    int64_t longest = 0;
    for (const auto& p : prompts) longest = std::max<int64_t>(longest, std::ssize(p));
    config.n_ctx = longest + o.n_gen + 16;
    const auto n = static_cast<int64_t>(prompts.size());
    if (n > 1) {  // a pool for every request, and all of them in one step
        config.kv_blocks = n * ((config.n_ctx + config.kv_block_size - 1) / config.kv_block_size);
        config.scheduler.max_running = std::max(config.scheduler.max_running, n);
    }
    EngineConfig spec_config = config;
    std::unique_ptr<spec::Drafter> drafter = rt.make_drafter(o.spec, spec_config);
    // Warm-up runs first (page faults, and the prompts enter each engine's prefix cache), then
    // the timed runs alternate between the engines. With several requests the engines run one
    // after the other, so that one KV pool at a time holds them.
    auto plain = std::make_unique<Engine>(*rt.model, *rt.tokenizer, *rt.backend, config);
    std::unique_ptr<Engine> spec;
    std::vector<double> off, on;
    auto run = [&](Engine& e, std::vector<double>* rates) {
        const double r = engine_decode_rate(e, prompts, o.n_gen);
        if (rates != nullptr) rates->push_back(r);
    };
    run(*plain, nullptr);
    if (n > 1) {
        for (int i = 0; i < o.repetitions; ++i) run(*plain, &off);
        plain.reset();
    }
    spec = std::make_unique<Engine>(*rt.model, *rt.tokenizer, *rt.backend, spec_config,
                                    std::move(drafter));
    run(*spec, nullptr);
    for (int i = 0; i < o.repetitions; ++i) {
        if (plain) run(*plain, &off);
        run(*spec, &on);
    }
    const std::string name = n > 1 ? fmt::format("tg{} x{} engine", o.n_gen, n)
                                   : fmt::format("tg{} engine", o.n_gen);
    SpecResult r;
    r.off = summarize(name, off);
    r.on = summarize(fmt::format("{} --spec {}", name, o.spec.method), on);
    r.stats = spec->stats();
    return r;
}

// The speculative test's prompts: the -f text (or `random` tokens) for one request; for
// --parallel N, N distinct prompts of n-prompt tokens: consecutive slices of the -f text, or
// random tokens.
std::vector<std::vector<int32_t>> spec_prompts(Runtime& rt, const BenchOptions& o,
                                               const std::vector<int32_t>& random,
                                               std::mt19937& rng) {
    std::vector<int32_t> text = random;
    if (!o.prompt_file.empty()) {  // slices of it do not start with a BOS
        const bool bos = o.parallel == 1 && rt.tokenizer->add_bos_default();
        text = rt.tokenizer->encode(read_text_file(o.prompt_file), bos, true);
    }
    if (o.parallel == 1) {
        if (text.empty()) text.push_back(1);
        return {text};
    }
    if (o.n_prompt < 1) fail<InvalidArgument>("--parallel needs -p, the tokens of each prompt");
    std::vector<std::vector<int32_t>> prompts;
    const auto n_vocab = static_cast<uint32_t>(rt.model->hparams().n_vocab);
    for (int64_t i = 0; i < o.parallel; ++i) {
        if (o.prompt_file.empty()) {
            std::vector<int32_t> p(static_cast<size_t>(o.n_prompt));
            for (auto& t : p) t = static_cast<int32_t>(rng() % n_vocab);
            prompts.push_back(std::move(p));
            continue;
        }
        const int64_t at = i * o.n_prompt;
        if (at + o.n_prompt > std::ssize(text)) {
            fail<InvalidArgument>(
                "--parallel {} x -p {}: the prompt file has {} tokens, fewer than {} prompts "
                "of {} need",
                o.parallel, o.n_prompt, text.size(), o.parallel, o.n_prompt);
        }
        prompts.emplace_back(text.begin() + at, text.begin() + at + o.n_prompt);
    }
    return prompts;
}

}  // namespace

int run_bench(const BenchOptions& o) {
    Runtime rt = Runtime::load(o.common);
    const int64_t n_vocab = rt.model->hparams().n_vocab;
    std::mt19937 rng(42);
    std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));
    std::vector<int32_t> context(static_cast<size_t>(o.depth));
    for (auto& t : context) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));
    // Checked before any test runs (a prompt file too short for --parallel).
    const bool speculate = o.spec.method != "off" && o.n_gen > 1;
    const std::vector<std::vector<int32_t>> prompts =
        speculate ? spec_prompts(rt, o, prompt, rng) : std::vector<std::vector<int32_t>>{};
    const int64_t ctx = std::max(o.n_prompt, o.depth + o.n_gen) + 16;
    vela::ForwardDriver driver(*rt.model, *rt.backend, ctx,
                               std::max<int64_t>(o.common.batch_size, o.n_prompt), rt.kv_formats,
                               rt.eviction, o.common.kv_block_size, o.common.swa_full);
    std::vector<Result> results;
    if (o.n_prompt > 0) {
        results.push_back(measure(
            fmt::format("pp{}", o.n_prompt), o.n_prompt, o.repetitions, [] {},
            [&] { driver.evaluate(prompt, false); }));
    }
    if (o.n_gen > 0) {
        const std::string name =
            o.depth > 0 ? fmt::format("tg{}@d{}", o.n_gen, o.depth) : fmt::format("tg{}", o.n_gen);
        auto setup = [&] {
            if (o.depth > 0) {
                driver.evaluate(context, false);
            } else {
                driver.reset();
            }
        };
        results.push_back(measure(name, o.n_gen, o.repetitions, setup, [&] {
            std::vector<int32_t> tok{prompt.empty() ? 1 : prompt[0]};
            for (int64_t i = 0; i < o.n_gen; ++i) driver.extend(tok);
        }));
    }
    std::optional<SpecResult> spec;
    if (speculate) {
        spec = bench_speculation(rt, o, prompts);
        results.push_back(spec->off);
        results.push_back(spec->on);
    }
    const int threads = rt.pool->size();
    if (o.json) {
        fmt::print("[");
        for (size_t i = 0; i < results.size(); ++i) {
            fmt::print(
                "{}{{\"test\": \"{}\", \"backend\": \"{}\", \"threads\": {}, "
                "\"tokens_per_second\": {:.3f}, \"stddev\": {:.3f}}}",
                i ? ", " : "", results[i].test, rt.backend->name(), threads, results[i].mean,
                results[i].stddev);
        }
        if (spec) {
            fmt::print(
                ", {{\"test\": \"speculation\", \"method\": \"{}\", \"drafted\": {}, "
                "\"accepted\": {}, \"acceptance_rate\": {:.4f}, \"mean_accepted_length\": "
                "{:.3f}, \"speedup\": {:.3f}}}",
                o.spec.method, spec->stats.spec_draft_tokens, spec->stats.spec_accepted_tokens,
                spec->stats.spec_acceptance_rate(), spec->stats.spec_mean_accepted_length(),
                spec->on.mean / spec->off.mean);
        }
        fmt::print("]\n");
        return 0;
    }
    const auto& hp = rt.model->hparams();
    // As llama-bench: the backend the model ran on, and the CPU threads beside it.
    fmt::print("| model | backend | threads | test | t/s |\n|---|---|---|---|---|\n");
    for (const Result& r : results) {
        fmt::print("| {} {}L/{} | {} | {} | {} | {:.2f} ± {:.2f} |\n", hp.arch, hp.n_layers,
                   hp.n_embd, rt.backend->name(), threads, r.test, r.mean, r.stddev);
    }
    if (spec) {
        const EngineStats& st = spec->stats;
        fmt::print(
            "\nspeculation ({}, at most {} draft tokens): {} drafted, {} accepted, acceptance "
            "rate {:.1f}%, mean accepted length {:.2f}, decode speed-up {:.2f}x\n",
            o.spec.method, o.spec.max_tokens, st.spec_draft_tokens, st.spec_accepted_tokens,
            100.0 * st.spec_acceptance_rate(), st.spec_mean_accepted_length(),
            spec->on.mean / spec->off.mean);
        if (st.spec_verify_steps > 0) {
            const auto steps = static_cast<double>(st.spec_verify_steps);
            fmt::print("per verifying step: {:.2f} draft tokens, {:.2f} deep\n",
                       static_cast<double>(st.spec_draft_tokens) / steps,
                       static_cast<double>(st.spec_draft_depth) / steps);
        }
    }
    return 0;
}

}  // namespace vela::cli
