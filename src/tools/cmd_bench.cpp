// `vela bench`: llama-bench style throughput. ppN: one N-token prompt through an empty cache;
// tgN: N single-token decode steps from an empty cache, or after a D-token context with
// --depth D (tgN@dD, untimed prefill first: decode at long context, where attention reads the
// whole KV cache every step). Mean and standard deviation over repetitions, after one warm-up
// run of each test.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
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
    double mean = 0, var = 0;
    for (double x : rates) mean += x / static_cast<double>(rates.size());
    for (double x : rates)
        var += (x - mean) * (x - mean) / static_cast<double>(std::max<size_t>(1, rates.size() - 1));
    return {name, mean, std::sqrt(var)};
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
                               std::max<int64_t>(o.common.batch_size, o.n_prompt), rt.kv_formats);
    std::vector<Result> results;
    if (o.n_prompt > 0) {
        results.push_back(measure(fmt::format("pp{}", o.n_prompt), o.n_prompt, o.repetitions,
                                  [] {}, [&] { driver.evaluate(prompt, false); }));
    }
    if (o.n_gen > 0) {
        const std::string name = o.depth > 0 ? fmt::format("tg{}@d{}", o.n_gen, o.depth)
                                             : fmt::format("tg{}", o.n_gen);
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
    const int threads = rt.pool->size();
    if (o.json) {
        fmt::print("[");
        for (size_t i = 0; i < results.size(); ++i) {
            fmt::print(
                "{}{{\"test\": \"{}\", \"threads\": {}, \"tokens_per_second\": {:.3f}, \"stddev\": "
                "{:.3f}}}",
                i ? ", " : "", results[i].test, threads, results[i].mean, results[i].stddev);
        }
        fmt::print("]\n");
        return 0;
    }
    const auto& hp = rt.model->hparams();
    fmt::print("| model | threads | test | t/s |\n|---|---|---|---|\n");
    for (const Result& r : results) {
        fmt::print("| {} {}L/{} | {} | {} | {:.2f} ± {:.2f} |\n", hp.arch, hp.n_layers, hp.n_embd,
                   threads, r.test, r.mean, r.stddev);
    }
    return 0;
}

}  // namespace vela::cli
