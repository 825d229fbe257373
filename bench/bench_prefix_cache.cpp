// Prefix-cache gain end to end: 16 requests sharing a 400-token system prompt (plus a short
// question each), run through one engine with the prefix cache off and then on, in the same
// process. Prints prefill tokens computed and wall time for both, and checks that the greedy
// outputs are identical.
//
//   bench_prefix_cache [model.gguf] [threads]
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace {

using vela::Engine;
using Tokens = std::vector<int32_t>;

struct RunResult {
    std::vector<Tokens> outputs;
    vela::EngineStats stats;
    double seconds = 0;
};

RunResult run(vela::Model& model, const vela::Tokenizer& tok, vela::Backend& backend,
              const std::vector<Tokens>& prompts, bool prefix_caching) {
    vela::EngineConfig c;
    c.n_ctx = 1024;
    c.kv_blocks = 16 * 32;  // room for all 16 requests at once: no preemption in either run
    c.prefix_caching = prefix_caching;
    Engine engine(model, tok, backend, c);
    RunResult r;
    r.outputs.resize(prompts.size());
    std::map<int64_t, size_t> index;
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < prompts.size(); ++i) {
        vela::Request q;
        q.prompt = prompts[i];
        q.max_tokens = 8;
        q.ignore_eos = true;
        q.sampling.temperature = 0;
        index[engine.add_request(q)] = i;
    }
    while (engine.has_work()) {
        for (const vela::StepOutput& o : engine.step()) {
            auto& got = r.outputs[index.at(o.request_id)];
            got.insert(got.end(), o.tokens.begin(), o.tokens.end());
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.stats = engine.stats();
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string path =
        argc > 1 ? argv[1]
                 : std::string(VELA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
    vela::Model model(path);
    const vela::Tokenizer tok = vela::Tokenizer::from_gguf(model.file());
    vela::ThreadPool pool(threads);
    vela::CpuBackend backend(pool);

    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> id(200, 40000);
    Tokens system(400);
    for (auto& t : system) t = id(rng);
    std::vector<Tokens> prompts;
    for (int i = 0; i < 16; ++i) {
        Tokens p = system;
        for (int k = 0; k < 24; ++k) p.push_back(id(rng));
        prompts.push_back(std::move(p));
    }

    fmt::print("16 requests: 400-token shared prefix + 24 own tokens, 8 generated; {} threads\n",
               threads);
    fmt::print("{:<14} {:>16} {:>10} {:>10} {:>9}\n", "prefix cache", "prefill tokens", "hit rate",
               "wall s", "speedup");
    const RunResult off = run(model, tok, backend, prompts, false);
    const RunResult on = run(model, tok, backend, prompts, true);
    for (const auto* r : {&off, &on}) {
        fmt::print("{:<14} {:>16} {:>9.1f}% {:>10.2f} {:>8.2f}x\n", r == &off ? "off" : "on",
                   r->stats.prompt_tokens, 100.0 * r->stats.prefix_hit_rate(), r->seconds,
                   off.seconds / r->seconds);
    }
    const bool same = off.outputs == on.outputs;
    fmt::print("greedy outputs identical: {}\n", same ? "yes" : "NO");
    return same ? 0 : 1;
}
