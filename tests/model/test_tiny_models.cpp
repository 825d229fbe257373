// Vela's model code against a float64 numpy forward (scripts/golden/llama_numpy.py) on tiny
// random GGUFs covering what the default model does not: Qwen2 (NeoX rotary layout, QKV
// biases, untied LM head), MQA, F16 weights, every RoPE scaling hparams accepts (linear by
// either key, YaRN, Llama-3 rope_freqs with and without the "llama3" type, partial rotary) and
// Gemma 3 (scripts/golden/gemma3_numpy.py: sandwich norms, query/key norms, GeGLU, local layers
// with an 8-key window beside a global one). The reference's RoPE is written from the papers and
// llama.cpp's formulas, not from rope.cpp. Float weights take the float matmul path, so agreement
// is tight. Fixtures: scripts/golden/gen_tiny_models.py.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>

#include "backend/cpu/cpu_backend.h"
#include "engine/forward_driver.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "tiny_expected.h"

namespace vela {
namespace {

const std::string kData = std::string(VELA_SOURCE_DIR) + "/tests/model/data/";

using test::expected_logits;

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

// The key dims Model::key_offsets should cover, by the rule computed here: past rope.dim, or on a
// NeoX pair (i, i + dim/2) that RoPE turns by less than pi/3 over the trained context (angle per
// position theta^(-2i/dim) / its rope_freqs factor).
std::vector<bool> steady_key_dims(const Model& model) {
    const HParams& hp = model.hparams();
    const int64_t half = hp.rope.dim / 2;
    std::vector<bool> steady(static_cast<size_t>(hp.head_dim));
    for (int64_t d = 0; d < hp.head_dim; ++d) {
        bool keep = d >= hp.rope.dim;
        if (!keep) {
            const int64_t i = d % half;
            double angle = std::pow(static_cast<double>(hp.rope.theta), -2.0 * i / hp.rope.dim);
            if (model.weights().rope_freq_factors != nullptr)
                angle /= model.weights().rope_freq_factors[i];
            keep = angle * static_cast<double>(hp.n_ctx_train) < std::numbers::pi / 3;
        }
        steady[static_cast<size_t>(d)] = keep;
    }
    return steady;
}

// Model::key_offsets: the key bias on those dims, 0 elsewhere. tiny_qwen2 (head_dim 16, theta
// 1e4, 256 positions) keeps pairs 5-7 of 8; the partial-rotary variant has unturned dims.
TEST(KeyOffsets, KeyBiasOnPairsRopeBarelyTurns) {
    for (const char* name : {"tiny_qwen2", "tiny_qwen2_rope_freqs_partial"}) {
        Model model(kData + name + ".gguf");
        const HParams& hp = model.hparams();
        ASSERT_EQ(hp.rope.scaling, RopeScaling::None) << name;
        const int64_t hd = hp.head_dim, nkv = hp.n_kv_heads;
        const std::vector<float>& got = model.key_offsets();
        ASSERT_EQ(got.size(), static_cast<size_t>(hp.n_layers * nkv * hd)) << name;
        EXPECT_EQ(model.kv_layout(16, 4).key_offsets, got);
        const std::vector<bool> steady = steady_key_dims(model);
        for (int64_t il = 0; il < hp.n_layers; ++il) {
            const float* bias = model.weights().layers[il].bk.f32();
            for (int64_t h = 0; h < nkv; ++h) {
                for (int64_t d = 0; d < hd; ++d) {
                    const size_t at = static_cast<size_t>((il * nkv + h) * hd + d);
                    EXPECT_EQ(got[at], steady[d] ? bias[h * hd + d] : 0.0f) << name << " " << at;
                }
            }
        }
        const auto n = std::count(steady.begin(), steady.end(), true);
        std::printf("%s: %lld of %lld key dims offset per head\n", name, static_cast<long long>(n),
                    static_cast<long long>(hd));
        EXPECT_GT(n, 0) << name;
        EXPECT_LT(n, hd) << name;
    }
    EXPECT_TRUE(Model(kData + "tiny_llama.gguf").key_offsets().empty());  // no key bias
}

// Qwen2's biases made large, as real Qwen2.5 keys and values carry them (the 0.5B's key bias
// reaches 185 where the rest are units): tiny_qwen2 with every V bias and the key-bias dims that
// Model::key_offsets covers set to +-300. Stored as they come, such a constant would set every
// 8-bit row's scale and leave the rest a level or two; with the key offsets taken out and V's
// bias added after attention, a Q8 cache stays close to the F32 cache: largest logit error
// 6.9e-5 of the largest logit, against 1.4e-3 with the key offsets undone and 2.5e-3 with V's bias
// stored in the codes (the plain model, whose logits react more to attention: 7.9e-3).
TEST(QuantisedKv, LargeQwenBiasesStayOutOfTheCodes) {
    const std::string src = kData + "tiny_qwen2.gguf";
    std::ifstream in(src, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    const auto file = gguf::File::parse(bytes.data(), bytes.size());
    const Model plain(src);
    const HParams& hp = plain.hparams();
    const int64_t kv_dim = hp.kv_dim();
    const std::vector<bool> steady = steady_key_dims(plain);
    for (int64_t il = 0; il < hp.n_layers; ++il) {
        auto patch = [&](const std::string& name, auto covered) {
            const gguf::TensorInfo& t = file.tensor(fmt::format("blk.{}.{}", il, name));
            for (int64_t i = 0; i < kv_dim; ++i) {
                if (!covered(i)) continue;
                const float big = i % 3 == 0 ? -300.0f : 300.0f;
                std::memcpy(bytes.data() + (t.data - bytes.data()) + 4 * i, &big, 4);
            }
        };
        patch("attn_v.bias", [](int64_t) { return true; });
        patch("attn_k.bias",
              [&](int64_t i) { return steady[static_cast<size_t>(i % hp.head_dim)]; });
    }
    const std::string big_path =
        (std::filesystem::temp_directory_path() / "vela_tiny_qwen2_big_biases.gguf").string();
    std::ofstream(big_path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));

    const auto tokens = expected_logits("tiny_qwen2")["tokens"].get<std::vector<int32_t>>();
    ThreadPool pool(2);
    CpuBackend backend(pool);
    auto q8_error = [&](const std::string& path) {  // largest |logit difference| / largest |logit|
        Model model(path);
        const auto n = static_cast<int64_t>(tokens.size());
        ForwardDriver exact(model, backend, n, 7, KvFormat::F32),
            quantised(model, backend, n, 7, KvFormat::Q8);
        const std::vector<float>& ref = exact.evaluate(tokens, true);
        const std::vector<float>& q8 = quantised.evaluate(tokens, true);
        double err = 0.0, top = 0.0;
        for (size_t i = 0; i < ref.size(); ++i) {
            err = std::max(err, static_cast<double>(std::fabs(q8[i] - ref[i])));
            top = std::max(top, static_cast<double>(std::fabs(ref[i])));
        }
        return err / top;
    };
    const double base = q8_error(src), big = q8_error(big_path);
    std::filesystem::remove(big_path);
    std::printf("q8 vs f32 KV, max logit error / max |logit|: plain %.2e, biases +-300 %.2e\n",
                base, big);
    EXPECT_LT(big, 5e-4);
}

}  // namespace
}  // namespace vela
