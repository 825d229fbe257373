// Per-token sampling cost at the vocabularies Vela serves (49152: SmolLM2, 152064: Qwen2), for
// the chains users actually set, beside the peer a naive sampler pays (a full sort of the vocab
// per token) and the floor (copying the logits row once, which every sample() call implies).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "sampling/sampler.h"

namespace {

// Logits spread like a real model's (a few nats between the leaders, long tail).
std::vector<float> bench_logits(size_t vocab) {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    std::vector<float> v(vocab);
    for (float& x : v) x = dist(rng);
    return v;
}

vela::SamplingParams chain(int64_t which) {
    vela::SamplingParams p;  // 0: llama.cpp defaults (top_k 40, top_p 0.95, min_p 0.05, T 0.8)
    p.seed = 1;
    if (which == 1) p.repetition_penalty = 1.1f;  // + penalties over the last 64 tokens
    if (which == 2) p.top_k = 0;                  // OpenAI-style: no top_k, top_p + min_p
    if (which == 3) p.top_k = 0, p.min_p = 0.0f;  // top_p alone
    if (which == 4) p.top_k = 0, p.min_p = 0.0f, p.top_p = 1.0f;  // temperature only
    if (which == 5) p.temperature = 0.0f;                         // greedy
    return p;
}

void BM_Sampler(benchmark::State& state) {
    const auto logits = bench_logits(static_cast<size_t>(state.range(0)));
    std::vector<int32_t> history(500);
    std::mt19937 rng(2);
    for (int32_t& t : history) t = static_cast<int32_t>(rng() % logits.size());
    vela::Sampler sampler(chain(state.range(1)));
    std::vector<float> row(logits.size());
    for (auto _ : state) {
        std::copy(logits.begin(), logits.end(), row.begin());
        benchmark::DoNotOptimize(sampler.sample(row, history));
    }
    const char* names[] = {"defaults", "defaults+penalties", "top_p+min_p",
                           "top_p",    "temperature",        "greedy"};
    state.SetLabel(names[state.range(1)]);
}
BENCHMARK(BM_Sampler)
    ->ArgsProduct({{49152, 152064}, {0, 1, 2, 3, 4, 5}})
    ->Unit(benchmark::kMicrosecond);

// Peer: sort the whole vocabulary every token, then truncate (top_k 40, top_p 0.95) and draw.
void BM_NaiveFullSortSampler(benchmark::State& state) {
    const auto logits = bench_logits(static_cast<size_t>(state.range(0)));
    std::vector<int32_t> ids(logits.size());
    std::mt19937_64 rng(1);
    for (auto _ : state) {
        std::iota(ids.begin(), ids.end(), 0);
        std::sort(ids.begin(), ids.end(),
                  [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
        const size_t k = 40;
        double z = 0.0, cum = 0.0;
        for (size_t i = 0; i < k; ++i) z += std::exp(logits[ids[i]] - logits[ids[0]]);
        size_t cut = k;
        for (size_t i = 0; i < k; ++i) {
            cum += std::exp(logits[ids[i]] - logits[ids[0]]) / z;
            if (cum >= 0.95) {
                cut = i + 1;
                break;
            }
        }
        benchmark::DoNotOptimize(ids[rng() % cut]);
    }
}
BENCHMARK(BM_NaiveFullSortSampler)->Arg(49152)->Arg(152064)->Unit(benchmark::kMicrosecond);

// Floor: the row copy included in every BM_Sampler iteration.
void BM_RowCopy(benchmark::State& state) {
    const auto logits = bench_logits(static_cast<size_t>(state.range(0)));
    std::vector<float> row(logits.size());
    for (auto _ : state) {
        std::copy(logits.begin(), logits.end(), row.begin());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(
        static_cast<int64_t>(state.iterations() * logits.size() * sizeof(float)));
}
BENCHMARK(BM_RowCopy)->Arg(49152)->Arg(152064)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
