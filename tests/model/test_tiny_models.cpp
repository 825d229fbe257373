// Vela's model code against a float64 numpy forward (scripts/golden/llama_numpy.py) on tiny
// random GGUFs covering what the default model does not: Qwen2 (NeoX rotary layout, QKV
// biases, untied LM head), MQA, F16 weights and linear RoPE scaling. Float weights take the
// float matmul path, so agreement is tight. Fixtures: scripts/golden/gen_tiny_models.py.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "engine/forward_driver.h"
#include "model/model.h"

namespace vela {
namespace {

const std::string kData = std::string(VELA_SOURCE_DIR) + "/tests/model/data/";

class TinyModel : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModel, LogitsMatchFloat64Reference) {
    std::ifstream in(kData + "tiny_models_expected.json");
    ASSERT_TRUE(in);
    const auto expected = nlohmann::json::parse(in)[GetParam()];
    Model model(kData + GetParam() + ".gguf");
    ThreadPool pool(2);
    CpuBackend backend(pool);
    const auto tokens = expected["tokens"].get<std::vector<int32_t>>();
    const size_t V = static_cast<size_t>(model.hparams().n_vocab);
    // Several prefill chunk sizes: chunked prefill over paged KV must not change the result.
    for (int64_t chunk : {int64_t{40}, int64_t{7}, int64_t{1}}) {
        ForwardDriver driver(model, backend, 64, chunk);
        const std::vector<float>& logits = driver.evaluate(tokens, /*all_logits=*/true);
        ASSERT_EQ(logits.size(), tokens.size() * V);
        double max_err = 0, max_abs = 0;
        for (size_t t = 0; t < tokens.size(); ++t) {
            const auto row = expected["logits"][t].get<std::vector<double>>();
            for (size_t i = 0; i < V; ++i) {
                max_err = std::max(max_err, std::fabs(logits[t * V + i] - row[i]));
                max_abs = std::max(max_abs, std::fabs(row[i]));
            }
        }
        std::printf("%s chunk %lld: max logit error %.2e\n", GetParam().c_str(),
                    static_cast<long long>(chunk), max_err);
        // float32 arithmetic and an F16 KV cache (relative rounding 5e-4) against float64.
        EXPECT_LT(max_err, 1e-3 * max_abs + 1e-3) << GetParam() << " chunk " << chunk;
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, TinyModel,
                         ::testing::Values("tiny_llama", "tiny_llama_mqa_f16_linear",
                                           "tiny_qwen2"));

}  // namespace
}  // namespace vela
