// The default model against llama.cpp on the same GGUF: teacher-forced logits and greedy
// continuations. Expected values come from scripts/golden/gen_llama_cpp_golden.py, which runs
// llama.cpp; nothing here is computed by Vela's own reference code.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../common/default_model.h"
#include "backend/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "engine/forward_driver.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace vela {
namespace {

const std::string kDir = VELA_SOURCE_DIR;

class LlamaCppParity : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        test::DefaultModel* m = test::default_model();
        if (m == nullptr) return;
        model_ = &m->model;
        tokenizer_ = &m->tokenizer;
        backend_ = &m->backend;
        std::ifstream in(kDir + "/tests/model/data/llama_cpp_golden.json");
        golden_ = new nlohmann::json(nlohmann::json::parse(in));
    }
    static void TearDownTestSuite() { delete golden_; }
    void SetUp() override {
        if (model_ == nullptr) GTEST_SKIP() << "default model not fetched";
    }

    // Greedy generation of n tokens for each prompt, all submitted to one engine at once.
    static std::vector<std::vector<int32_t>> generate(
        const std::vector<std::vector<int32_t>>& prompts, int64_t n, EngineConfig config = {}) {
        Engine engine(*model_, *tokenizer_, *backend_, config);
        std::map<int64_t, size_t> index;
        for (size_t i = 0; i < prompts.size(); ++i) {
            Request r;
            r.prompt = prompts[i];
            r.max_tokens = n;
            r.ignore_eos = true;
            r.sampling.temperature = 0;
            index[engine.add_request(r)] = i;
        }
        std::vector<std::vector<int32_t>> out(prompts.size());
        while (engine.has_work()) {
            for (const StepOutput& o : engine.step()) {
                auto& got = out[index.at(o.request_id)];
                got.insert(got.end(), o.tokens.begin(), o.tokens.end());
            }
        }
        return out;
    }

    static inline Model* model_ = nullptr;
    static inline const Tokenizer* tokenizer_ = nullptr;
    static inline CpuBackend* backend_ = nullptr;
    static inline nlohmann::json* golden_ = nullptr;
};

// 8-bit activation quantisation makes logits sensitive to the last bit of every op: llama.cpp
// itself, with only its attention arithmetic changed (flash attention off), moves its logits by
// ~0.2 and its top-1 token at ~5% of positions. That self-distance is the yardstick: Vela must be
// at least as close to llama.cpp as llama.cpp is to itself.
TEST_F(LlamaCppParity, TeacherForcedLogits) {
    const auto probe_ids = (*golden_)["probe_ids"].get<std::vector<int32_t>>();
    const size_t V = static_cast<size_t>(model_->hparams().n_vocab);
    ForwardDriver driver(*model_, *backend_, 1024, 512);
    int64_t agree = 0, agree_self = 0, positions = 0, n_top = 0, n_err = 0;
    double max_err = 0, sum_err = 0, sum_top_err = 0, sum_self_err = 0, max_self_err = 0;
    for (const auto& [name, tf] : (*golden_)["teacher_forced"].items()) {
        const auto tokens = tf["tokens"].get<std::vector<int32_t>>();
        ASSERT_GE(tokens.size(), 256u);
        const std::vector<float>& logits = driver.evaluate(tokens, /*all_logits=*/true);
        ASSERT_EQ(logits.size(), tokens.size() * V);
        for (size_t p = 0; p < tokens.size(); ++p) {
            const float* row = &logits[p * V];
            const auto top_ids = tf["top_ids"][p].get<std::vector<int32_t>>();
            const auto top_logits = tf["top_logits"][p].get<std::vector<float>>();
            const auto self_logits = tf["no_fa_top_logits"][p].get<std::vector<float>>();
            const auto probe = tf["probe_logits"][p].get<std::vector<float>>();
            const int32_t ours = static_cast<int32_t>(std::max_element(row, row + V) - row);
            agree += ours == top_ids[0];
            agree_self += tf["no_fa_top1"][p].get<int32_t>() == top_ids[0];
            ++positions;
            auto compare = [&](int32_t id, float expected) {
                const double err = std::fabs(static_cast<double>(row[id]) - expected);
                max_err = std::max(max_err, err);
                sum_err += err;
                ++n_err;
            };
            for (size_t i = 0; i < top_ids.size(); ++i) {
                compare(top_ids[i], top_logits[i]);
                sum_top_err += std::fabs(static_cast<double>(row[top_ids[i]]) - top_logits[i]);
                const double self = std::fabs(static_cast<double>(self_logits[i]) - top_logits[i]);
                sum_self_err += self;
                max_self_err = std::max(max_self_err, self);
                ++n_top;
            }
            for (size_t i = 0; i < probe_ids.size(); ++i) compare(probe_ids[i], probe[i]);
        }
    }
    const double agreement = static_cast<double>(agree) / static_cast<double>(positions);
    const double self_agreement = static_cast<double>(agree_self) / static_cast<double>(positions);
    const double top_err = sum_top_err / static_cast<double>(n_top);
    const double self_err = sum_self_err / static_cast<double>(n_top);
    std::printf(
        "vela vs llama.cpp: top-1 agreement %.4f over %lld positions; logit error max %.4f "
        "mean %.4f (all stored logits), mean %.4f (top-20)\n"
        "llama.cpp fa-off vs fa-on: top-1 agreement %.4f; top-20 logit error max %.4f "
        "mean %.4f\n",
        agreement, static_cast<long long>(positions), max_err, sum_err / n_err, top_err,
        self_agreement, max_self_err, self_err);
    // Top-1 agreement over 900 positions moves by about a point between runs of llama.cpp itself.
    EXPECT_GE(agreement, self_agreement - 0.02);
    // Vela's top-20 logit error against llama.cpp within llama.cpp's own flash-attention on/off
    // noise, with 2% slack: the two sit at the same level and trade places with the instruction
    // set (AVX2-only AMD EPYC: 0.16997 vs 0.16981).
    EXPECT_LE(top_err, self_err * 1.02);
    EXPECT_LT(max_err, 3.0);
}

// Greedy decoding follows llama.cpp token for token until the first step where llama.cpp's two
// best logits are closer than the quantisation noise (a near tie, see above); after such a step
// either choice is equally right and the texts may part.
TEST_F(LlamaCppParity, GreedyContinuationsMatch) {
    constexpr double kNearTie = 0.5;
    for (const auto& [name, g] : (*golden_)["greedy"].items()) {
        const auto prompt = g["tokens"].get<std::vector<int32_t>>();
        const auto expected = g["generated"].get<std::vector<int32_t>>();
        const auto margins = g["margins"].get<std::vector<double>>();
        const auto got = generate({prompt}, static_cast<int64_t>(expected.size()))[0];
        ASSERT_EQ(got.size(), expected.size());
        size_t first_tie = 0;
        while (first_tie < margins.size() && margins[first_tie] >= kNearTie) ++first_tie;
        size_t same = 0;
        while (same < got.size() && got[same] == expected[same]) ++same;
        std::printf("%s: identical for %zu of %zu tokens; llama.cpp's first near tie at step %zu\n",
                    name.c_str(), same, got.size(), first_tie);
        EXPECT_GE(same, first_tie) << name << ": ours \"" << tokenizer_->decode(got)
                                   << "\" vs llama.cpp \"" << tokenizer_->decode(expected) << "\"";
    }
}

// llama.cpp along the paths a single prefill does not take (scripts/golden/gen_llama_cpp_paths.py):
// its decode path (one token per call, each greedy prompt followed by llama.cpp's own greedy
// tokens) and its prefill in chunks of 7. Vela is fed the same tokens the same way. Margins:
// both engines sit ~0.17-0.24 from the exact logits (Float64Parity), so two correct engines are
// at most about the sum of that apart; a wrong path lands far beyond (see Float64Parity).
constexpr double kPeerMeanMargin = 0.30;
constexpr double kPeerAgreementMargin = 0.97;

struct PeerErrors {
    double sum = 0;
    int64_t n = 0, agree = 0, decisive = 0;
    void add(const float* row, const nlohmann::json& top_ids_j,
             const nlohmann::json& top_logits_j) {
        const auto ids = top_ids_j.get<std::vector<int32_t>>();
        const auto logits = top_logits_j.get<std::vector<double>>();
        int32_t best = ids[0];
        for (size_t i = 0; i < ids.size(); ++i) {
            sum += std::fabs(row[ids[i]] - logits[i]);
            ++n;
            if (row[ids[i]] > row[best]) best = ids[i];
        }
        if (logits[0] - logits[1] >= 0.5) {  // not a near tie for llama.cpp
            ++decisive;
            agree += best == ids[0];
        }
    }
    void check(const char* path) const {
        const double mean = sum / static_cast<double>(n);
        const double agreement = static_cast<double>(agree) / static_cast<double>(decisive);
        std::printf(
            "vela vs llama.cpp, %s: mean |dlogit| over llama.cpp's top-20 %.4f (margin "
            "%.2f), top-1 agreement %.4f over %lld decisive steps (margin %.2f)\n",
            path, mean, kPeerMeanMargin, agreement, static_cast<long long>(decisive),
            kPeerAgreementMargin);
        EXPECT_LE(mean, kPeerMeanMargin) << path;
        EXPECT_GE(agreement, kPeerAgreementMargin) << path;
    }
};

nlohmann::json load_paths() {
    std::ifstream in(kDir + "/tests/model/data/llama_cpp_paths.json");
    if (!in) throw std::runtime_error("missing fixture llama_cpp_paths.json");
    return nlohmann::json::parse(in);
}

TEST_F(LlamaCppParity, DecodePathLogits) {
    const nlohmann::json paths = load_paths();
    ForwardDriver driver(*model_, *backend_, 1024, 512);
    PeerErrors e;
    for (const auto& [name, d] : paths["decode"].items()) {
        const auto prompt = d["tokens"].get<std::vector<int32_t>>();
        const auto generated = d["generated"].get<std::vector<int32_t>>();
        std::vector<float> row = driver.evaluate(prompt, /*all_logits=*/false);
        for (size_t step = 0; step < generated.size(); ++step) {
            e.add(row.data(), d["steps"][step]["top_ids"], d["steps"][step]["top_logits"]);
            row = driver.extend({generated[step]});
        }
    }
    e.check("decode path, one token per call");
}

TEST_F(LlamaCppParity, ChunkedPrefillLogits) {
    const nlohmann::json paths = load_paths();
    const size_t V = static_cast<size_t>(model_->hparams().n_vocab);
    ForwardDriver driver(*model_, *backend_, 1024, 7);
    PeerErrors e;
    for (const auto& [name, c] : paths["chunked"].items()) {
        const auto tokens = c["tokens"].get<std::vector<int32_t>>();
        const std::vector<float>& logits = driver.evaluate(tokens, /*all_logits=*/true);
        for (size_t p = 0; p < tokens.size(); ++p) {
            e.add(&logits[p * V], c["top_ids"][p], c["top_logits"][p]);
        }
    }
    e.check("prefill in chunks of 7");
}

TEST_F(LlamaCppParity, PromptTokensMatchOurTokenizer) {
    for (const auto& [name, g] : (*golden_)["greedy"].items()) {
        const bool special = name == "chat";
        EXPECT_EQ(tokenizer_->encode(g["prompt"].get<std::string>(), false, special),
                  g["tokens"].get<std::vector<int32_t>>())
            << name;
    }
}

// A prompt's greedy output is the same alone and inside a batch of ragged sequences, with
// prefill chunks split across steps (small token budget) and several block sizes.
TEST_F(LlamaCppParity, BatchInvariance) {
    std::vector<std::vector<int32_t>> prompts;
    for (const auto& [name, g] : (*golden_)["greedy"].items()) {
        prompts.push_back(g["tokens"].get<std::vector<int32_t>>());
    }
    const auto tf = (*golden_)["teacher_forced"]["gpl3"]["tokens"].get<std::vector<int32_t>>();
    prompts.emplace_back(tf.begin(), tf.begin() + 97);
    prompts.emplace_back(tf.begin() + 5, tf.begin() + 6);
    std::vector<std::vector<int32_t>> alone;
    for (const auto& p : prompts) alone.push_back(generate({p}, 24)[0]);
    EngineConfig config;
    config.scheduler.max_batched_tokens = 40;  // forces chunked prefill mixed with decode
    config.kv_blocks = 256;
    for (int64_t block : {16, 1, 7}) {
        config.kv_block_size = block;
        EXPECT_EQ(generate(prompts, 24, config), alone) << "block size " << block;
    }
}

}  // namespace
}  // namespace vela
