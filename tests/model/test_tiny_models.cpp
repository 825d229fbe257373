// Vela's model code against a float64 numpy forward (scripts/golden/llama_numpy.py) on tiny
// random GGUFs covering what the default model does not: Qwen2 (NeoX rotary layout, QKV
// biases, untied LM head), MQA, F16 weights, every RoPE scaling hparams accepts (linear by
// either key, YaRN, Llama-3 rope_freqs with and without the "llama3" type, partial rotary) and
// Gemma 3 (scripts/golden/gemma3_numpy.py: sandwich norms, query/key norms, GeGLU, local layers
// with an 8-key window beside a global one). The reference's RoPE is written from the papers and
// llama.cpp's formulas, not from rope.cpp. Float weights take the float matmul path, so agreement
// is tight. Fixtures: scripts/golden/gen_tiny_models.py.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "engine/forward_driver.h"
#include "model/model.h"

namespace vela {
namespace {

const std::string kData = std::string(VELA_SOURCE_DIR) + "/tests/model/data/";

// The RoPE variants' and Gemma 3's logits live in their own files so that adding them left the
// original fixtures byte-identical.
nlohmann::json expected_logits(const std::string& variant) {
    for (const char* file :
         {"tiny_models_expected.json", "tiny_rope_expected.json", "tiny_gemma3_expected.json"}) {
        std::ifstream in(kData + file);
        if (!in) continue;
        auto all = nlohmann::json::parse(in);
        if (all.contains(variant)) return all[variant];
    }
    return nullptr;
}

class TinyModel : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModel, LogitsMatchFloat64Reference) {
    const auto expected = expected_logits(GetParam());
    ASSERT_FALSE(expected.is_null()) << "no expected logits for " << GetParam();
    Model model(kData + GetParam() + ".gguf");
    ThreadPool pool(2);
    CpuBackend backend(pool);
    const auto tokens = expected["tokens"].get<std::vector<int32_t>>();
    const size_t V = static_cast<size_t>(model.hparams().n_vocab);
    // Several prefill chunk sizes: chunked prefill over paged KV must not change the result.
    for (int64_t chunk : {int64_t{40}, int64_t{7}, int64_t{1}}) {
        ForwardDriver driver(model, backend, static_cast<int64_t>(tokens.size()), chunk);
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
        // float32 arithmetic and an F16 KV cache (relative rounding 5e-4) against float64.
        const double bound = 1e-3 * max_abs + 1e-3;
        std::printf("%s chunk %lld: max logit error %.2e (bound %.2e, max |logit| %.1f)\n",
                    GetParam().c_str(), static_cast<long long>(chunk), max_err, bound, max_abs);
        EXPECT_LT(max_err, bound) << GetParam() << " chunk " << chunk;
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, TinyModel,
                         ::testing::Values("tiny_llama", "tiny_llama_mqa_f16_linear",
                                           "tiny_qwen2"));
// 160 positions against a 64-token original context (YaRN, Llama-3), so scaled and unscaled
// pairs both turn far enough for a wrong angle to move the logits.
INSTANTIATE_TEST_SUITE_P(Rope, TinyModel,
                         ::testing::Values("tiny_llama_yarn", "tiny_qwen2_yarn_partial",
                                           "tiny_llama3_rope_freqs",
                                           "tiny_qwen2_rope_freqs_partial",
                                           "tiny_llama_partial_rotary", "tiny_llama3_scaling_type",
                                           "tiny_llama_linear_legacy_key"));
// Sliding window 8 over 40 positions, prefilled in chunks of 40, 7 and 1 over paged KV.
INSTANTIATE_TEST_SUITE_P(Gemma3, TinyModel, ::testing::Values("tiny_gemma3"));

// Model::key_offsets: the key bias on the channel pairs RoPE turns by less than pi/3 over the
// trained context (angle of pair i per position: theta^(-2i/dim) / its rope_freqs factor, NeoX
// pairs (i, i + dim/2)), and on every dim past rope.dim; 0 elsewhere. tiny_qwen2 (head_dim 16,
// theta 1e4, 256 positions) keeps pairs 5-7 of 8; the partial-rotary variant has unturned dims.
TEST(KeyOffsets, KeyBiasOnPairsRopeBarelyTurns) {
    for (const char* name : {"tiny_qwen2", "tiny_qwen2_rope_freqs_partial"}) {
        Model model(kData + name + ".gguf");
        const HParams& hp = model.hparams();
        ASSERT_EQ(hp.rope.scaling, RopeScaling::None) << name;
        const int64_t hd = hp.head_dim, half = hp.rope.dim / 2, nkv = hp.n_kv_heads;
        const std::vector<float>& got = model.key_offsets();
        ASSERT_EQ(got.size(), static_cast<size_t>(hp.n_layers * nkv * hd)) << name;
        EXPECT_EQ(model.kv_layout(16, 4).key_offsets, got);
        int64_t steady = 0;
        for (int64_t il = 0; il < hp.n_layers; ++il) {
            const float* bias = model.weights().layers[il].bk.f32();
            for (int64_t d = 0; d < hd; ++d) {
                bool keep = d >= hp.rope.dim;
                if (!keep) {
                    const int64_t i = d % half;  // NeoX: d and d + half share pair i
                    double angle = std::pow(static_cast<double>(hp.rope.theta), -2.0 * i / hp.rope.dim);
                    if (model.weights().rope_freq_factors != nullptr)
                        angle /= model.weights().rope_freq_factors[i];
                    keep = angle * static_cast<double>(hp.n_ctx_train) < std::numbers::pi / 3;
                }
                steady += keep && il == 0 ? 1 : 0;
                for (int64_t h = 0; h < nkv; ++h) {
                    const size_t at = static_cast<size_t>((il * nkv + h) * hd + d);
                    EXPECT_EQ(got[at], keep ? bias[h * hd + d] : 0.0f) << name << " " << at;
                }
            }
        }
        std::printf("%s: %lld of %lld key dims offset per head\n", name,
                    static_cast<long long>(steady), static_cast<long long>(hd));
        EXPECT_GT(steady, 0) << name;
        EXPECT_LT(steady, hd) << name;
    }
    EXPECT_TRUE(Model(kData + "tiny_llama.gguf").key_offsets().empty());  // no key bias
}

}  // namespace
}  // namespace vela
