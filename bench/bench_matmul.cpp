// CPU matmul at the default model's shapes (SmolLM2-135M: hidden 576, ffn 1536, vocab 49152;
// weights Q4_1, tied embedding/output Q8_0), decode (m = 1) and prefill (m = 512), 2 threads.
// Reports GFLOP/s (2 m n k per call) and weight GB/s; BM_ReadBandwidth gives the machine's
// read bandwidth over a buffer of the same size, the ceiling for decode.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/fp16.h"

namespace {

using vela::DType;

// 2 threads (the target machine's cores) unless VELA_BENCH_THREADS says otherwise.
int bench_threads() {
    const char* env = std::getenv("VELA_BENCH_THREADS");
    return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 2;
}

// Random codes with small, finite scales: speed does not depend on the values.
std::vector<uint8_t> random_blocks(DType t, int64_t n, int64_t k) {
    std::vector<uint8_t> w(vela::row_bytes(t, k) * static_cast<size_t>(n));
    std::mt19937 rng(42);
    for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
    const size_t bs = vela::dtype_info(t).type_size;
    const uint16_t scale = vela::fp32_to_fp16(0.01f);
    for (size_t off = 0; off < w.size(); off += bs) {
        std::memcpy(&w[off], &scale, 2);
        if (t == DType::Q4_1) std::memcpy(&w[off + 2], &scale, 2);
    }
    return w;
}

void BM_Matmul(benchmark::State& state, DType type, vela::cpu::Isa isa) {
    const int64_t n = state.range(0), k = state.range(1), m = state.range(2);
    const std::vector<uint8_t> w = random_blocks(type, n, k);
    std::vector<float> x(static_cast<size_t>(m * k)), y(static_cast<size_t>(m * n));
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    vela::cpu::Workspace ws(isa);
    vela::ThreadPool pool(bench_threads());
    const vela::cpu::MatmulParams p{w.data(), type, n, k, x.data(), k, m, y.data(), n};
    for (auto _ : state) {
        vela::cpu::matmul(p, ws, pool);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    const double calls = static_cast<double>(state.iterations());
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * m * n * k * calls, benchmark::Counter::kIsRate);
    state.counters["weightGB/s"] =
        benchmark::Counter(static_cast<double>(w.size()) * calls, benchmark::Counter::kIsRate);
    state.SetLabel(std::string(vela::cpu::isa_name(ws.isa())));
}

// Sums a buffer of the given bytes with the benchmark's threads: the read-bandwidth ceiling.
void BM_ReadBandwidth(benchmark::State& state) {
    const size_t bytes = static_cast<size_t>(state.range(0));
    std::vector<uint64_t> buf(bytes / 8, 1);
    vela::ThreadPool pool(bench_threads());
    std::atomic<uint64_t> total{0};
    for (auto _ : state) {
        pool.parallel_for(static_cast<int64_t>(buf.size()), [&](int64_t b, int64_t e) {
            uint64_t s = 0;
            for (int64_t i = b; i < e; ++i) s += buf[i];
            total.fetch_add(s, std::memory_order_relaxed);
        });
    }
    benchmark::DoNotOptimize(total.load());
    state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * state.iterations(),
                                                benchmark::Counter::kIsRate);
}

// {n, k, m}: attention q/o (576x576), ffn gate/up (1536x576), ffn down (576x1536), vocab head.
void model_shapes(benchmark::internal::Benchmark* b, bool vocab) {
    for (int64_t m : {1, 512}) {
        if (vocab) {
            b->Args({49152, 576, m});
        } else {
            b->Args({576, 576, m})->Args({1536, 576, m})->Args({576, 1536, m});
        }
    }
    b->ArgNames({"n", "k", "m"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

void register_all() {
    using vela::cpu::Isa;
    const Isa best = vela::cpu::default_isa();
    for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
        if (static_cast<int>(isa) > static_cast<int>(best)) continue;
        const std::string tag = std::string(vela::cpu::isa_name(isa));
        model_shapes(
            benchmark::RegisterBenchmark(("Q4_1/" + tag).c_str(), BM_Matmul, DType::Q4_1, isa),
            false);
        model_shapes(
            benchmark::RegisterBenchmark(("Q8_0/" + tag).c_str(), BM_Matmul, DType::Q8_0, isa),
            true);
    }
    // Qwen2.5-Coder-1.5B's K-quant shapes (hidden 1536, ffn 8960): attention q/o, ffn
    // gate/up, ffn down.
    for (DType t : {DType::Q4_K, DType::Q6_K}) {
        auto* b = benchmark::RegisterBenchmark(
            (std::string(vela::dtype_name(t)) + "/" + std::string(vela::cpu::isa_name(best)))
                .c_str(),
            BM_Matmul, t, best);
        for (int64_t m : {1, 512})
            b->Args({1536, 1536, m})->Args({8960, 1536, m})->Args({1536, 8960, m});
        b->ArgNames({"n", "k", "m"})->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    // Q4_1 576x1536 (553 KB, cache-resident) and the Q8_0 vocab head (30 MB, from DRAM).
    benchmark::RegisterBenchmark("ReadBandwidth", BM_ReadBandwidth)
        ->Arg(552960)
        ->Arg(31850496)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
