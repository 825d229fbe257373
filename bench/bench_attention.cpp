// Paged attention for the default model's shape (SmolLM2-135M: 9 query heads, 3 KV heads,
// head_dim 64, F16 KV in blocks of 16): decode at context 512 / 4096 and a 512-token prefill,
// AVX2 beside the scalar path, plus a plain read of the same bytes as the bandwidth ceiling.
// One iteration is one layer's attention call.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "attention/paged_attention.h"
#include "kv/kv_cache.h"

namespace vela {
namespace {

constexpr int64_t kHeads = 9, kKvHeads = 3, kDim = 64, kBlock = 16;

struct Setup {
    KvCache kv;
    std::vector<float> q, out;
    std::vector<AttentionSeq> seqs;

    Setup(int64_t n_seqs, int64_t ctx, int64_t q_len)
        : kv({1, kKvHeads, kDim, kBlock, n_seqs * ((ctx + kBlock - 1) / kBlock), KvFormat::F16}) {
        std::mt19937 rng(1);
        std::normal_distribution<float> dist;
        std::vector<float> rows(static_cast<size_t>(ctx * kKvHeads * kDim));
        for (int64_t s = 0; s < n_seqs; ++s) {
            for (float& x : rows) x = dist(rng);
            kv.add_sequence(s);
            kv.write(0, kv.append(s, ctx), rows.data(), rows.data());
        }
        q.resize(static_cast<size_t>(n_seqs * q_len * kHeads * kDim));
        for (float& x : q) x = dist(rng);
        out.resize(q.size());
        for (int64_t s = 0; s < n_seqs; ++s) {
            seqs.push_back({s * q_len, q_len, ctx, kv.table(s).blocks.data()});
        }
    }

    PagedAttentionParams params(AttentionImpl impl) {
        PagedAttentionParams p;
        p.q = q.data();
        p.out = out.data();
        p.n_heads = kHeads;
        p.n_kv_heads = kKvHeads;
        p.head_dim = kDim;
        p.block_size = kBlock;
        p.scale = 0.125f;
        p.kv = kv.layer(0);
        p.seqs = seqs;
        p.impl = impl;
        return p;
    }
};

// Args: context, sequences in the batch, threads, impl (0 scalar, 1 AVX2).
void BM_Decode(benchmark::State& state) {
    const int64_t ctx = state.range(0), n_seqs = state.range(1);
    const auto impl = state.range(3) ? AttentionImpl::Avx2 : AttentionImpl::Scalar;
    if (impl == AttentionImpl::Avx2 && !attention_avx2_available()) {
        state.SkipWithError("no AVX2");
        return;
    }
    Setup s(n_seqs, ctx, 1);
    ThreadPool pool(static_cast<int>(state.range(2)));
    const PagedAttentionParams p = s.params(impl);
    for (auto _ : state) {
        paged_attention(p, pool);
        benchmark::DoNotOptimize(s.out.data());
    }
    const double kv_bytes = 2.0 * ctx * kKvHeads * kDim * sizeof(uint16_t) * n_seqs;
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(n_seqs),
                                                    benchmark::Counter::kIsIterationInvariantRate);
    state.counters["KV_GB/s"] =
        benchmark::Counter(kv_bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: prompt length, threads, impl.
void BM_Prefill(benchmark::State& state) {
    const int64_t len = state.range(0);
    const auto impl = state.range(2) ? AttentionImpl::Avx2 : AttentionImpl::Scalar;
    if (impl == AttentionImpl::Avx2 && !attention_avx2_available()) {
        state.SkipWithError("no AVX2");
        return;
    }
    Setup s(1, len, len);
    ThreadPool pool(static_cast<int>(state.range(1)));
    const PagedAttentionParams p = s.params(impl);
    for (auto _ : state) {
        paged_attention(p, pool);
        benchmark::DoNotOptimize(s.out.data());
    }
    // QK^T and PV over the causal triangle: 2 * 2 * head_dim flops per (query head, key) pair.
    const double flops = 4.0 * kDim * kHeads * (static_cast<double>(len) * (len + 1) / 2);
    state.counters["tokens/s"] =
        benchmark::Counter(static_cast<double>(len), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The ceiling for decode: one thread streaming the same number of KV bytes (integer sum, so the
// compiler vectorises it) from a buffer of that size.
void BM_ReadCeiling(benchmark::State& state) {
    const int64_t ctx = state.range(0);
    std::vector<uint64_t> buf(static_cast<size_t>(2 * ctx * kKvHeads * kDim * 2 / 8), 1);
    for (auto _ : state) {
        benchmark::DoNotOptimize(std::accumulate(buf.begin(), buf.end(), uint64_t{0}));
    }
    state.counters["KV_GB/s"] =
        benchmark::Counter(buf.size() * 8.0 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_Decode)
    ->ArgNames({"ctx", "seqs", "threads", "avx2"})
    ->ArgsProduct({{512, 4096}, {1, 8}, {1, 2}, {0, 1}})
    ->UseRealTime();
BENCHMARK(BM_Prefill)
    ->ArgNames({"len", "threads", "avx2"})
    ->ArgsProduct({{512}, {1, 2}, {0, 1}})
    ->UseRealTime();
BENCHMARK(BM_ReadCeiling)->ArgNames({"ctx"})->Arg(512)->Arg(4096)->Arg(4096 * 8);

}  // namespace
}  // namespace vela

BENCHMARK_MAIN();
