// `vela bench`: llama-bench style throughput. ppN: one N-token prompt through an empty cache;
// tgN: N single-token decode steps from an empty cache, or after a D-token context with
// --depth D (tgN@dD, untimed prefill first: decode at long context, where attention reads the
// whole KV cache every step). Mean and standard deviation over repetitions, after one warm-up
// run of each test. With --spec: tgN through the engine (greedy, the prompt of -f or n-prompt
// random tokens, decode time only), without and with speculation, with the acceptance counters.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <optional>
#include <random>

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

// Decode tokens per second of one greedy request through `engine` (prefill excluded).
double engine_decode_rate(Engine& engine, const std::vector<int32_t>& prompt, int64_t n_gen) {
    Request r;
    r.prompt = prompt;
    r.max_tokens = n_gen;
    r.ignore_eos = true;
    r.sampling.temperature = 0;
    engine.add_request(r);
    using Clock = std::chrono::steady_clock;
    Clock::time_point t_first{};
    int64_t n = 0;
    while (engine.has_work()) {
        for (const StepOutput& o : engine.step()) {
            if (n == 0 && !o.tokens.empty()) t_first = Clock::now();
            n += static_cast<int64_t>(o.tokens.size());
        }
    }
    const double s = std::chrono::duration<double>(Clock::now() - t_first).count();
    return static_cast<double>(n - 1) / s;
}

struct SpecResult {
    Result off, on;
    EngineStats stats;  // of the speculative runs
};

SpecResult bench_speculation(Runtime& rt, const BenchOptions& o,
                             const std::vector<int32_t>& prompt) {
    EngineConfig config = rt.engine_config(o.common);
    config.n_ctx = static_cast<int64_t>(prompt.size()) + o.n_gen + 16;
    EngineConfig spec_config = config;
    std::unique_ptr<spec::Drafter> drafter = rt.make_drafter(o.spec, spec_config);
    Engine plain(*rt.model, *rt.tokenizer, *rt.backend, config);
    Engine spec(*rt.model, *rt.tokenizer, *rt.backend, spec_config, std::move(drafter));
    // Warm-up runs first (page faults, and the prompt enters each engine's prefix cache).
    engine_decode_rate(plain, prompt, o.n_gen);
    engine_decode_rate(spec, prompt, o.n_gen);
    std::vector<double> off, on;
    for (int i = 0; i < o.repetitions; ++i) {
        off.push_back(engine_decode_rate(plain, prompt, o.n_gen));
        on.push_back(engine_decode_rate(spec, prompt, o.n_gen));
    }
    SpecResult r;
    r.off = summarize(fmt::format("tg{} engine", o.n_gen), off);
    r.on = summarize(fmt::format("tg{} engine --spec {}", o.n_gen, o.spec.method), on);
    r.stats = spec.stats();
    return r;
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
    const int64_t ctx = std::max(o.n_prompt, o.depth + o.n_gen) + 16;
    vela::ForwardDriver driver(*rt.model, *rt.backend, ctx,
                               std::max<int64_t>(o.common.batch_size, o.n_prompt), rt.kv_formats,
                               rt.eviction, o.common.kv_block_size);
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
    if (o.spec.method != "off" && o.n_gen > 1) {
        std::vector<int32_t> spec_prompt = prompt;
        if (!o.prompt_file.empty()) {
            spec_prompt = rt.tokenizer->encode(read_text_file(o.prompt_file),
                                               rt.tokenizer->add_bos_default(), true);
        }
        if (spec_prompt.empty()) spec_prompt.push_back(1);
        spec = bench_speculation(rt, o, spec_prompt);
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
