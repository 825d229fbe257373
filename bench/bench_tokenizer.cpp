// Tokenizer throughput on 1 MB of English-like prose with the default model's byte-level BPE
// (the speed goal of the tokenizer: well under a second per megabyte).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string prose() {
    std::string text;
    for (int rep = 0; text.size() < (1u << 20); ++rep) {
        text += "The quick brown fox jumps over the lazy dog while the tokenizer counts " +
                std::to_string(rep) + " words, isn't it? Attention is all you need.\n";
    }
    return text;
}

void BM_EncodeSmolLM2(benchmark::State& state) {
    const std::string path =
        std::string(VELA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path)) {
        state.SkipWithError("default model not fetched");
        return;
    }
    const auto file = vela::gguf::File::open(path);
    const auto tok = vela::Tokenizer::from_gguf(file);
    const std::string text = prose();
    for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text, false, false));
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeSmolLM2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
