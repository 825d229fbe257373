// Serving invariants on the default model: a request's greedy output does not depend on what
// else the engine is doing — alone, among 32 concurrent requests, with the prefix cache warm,
// under preemption (Recompute and Swap) — and no KV block leaks once everything has finished.
// On every backend the build has: the CPU, and the GPU when there is one (VELA_REQUIRE_GPU=1
// turns its skip into a failure).
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "../common/default_model.h"
#include "engine/engine.h"
#include "engine/sequence.h"
#include "model/model.h"
#include "serving_backends.h"
#include "tokenizer/tokenizer.h"

namespace vela {
namespace {

constexpr int64_t kGen = 6;  // generated tokens per request: short keeps the suite fast

using test::gpu_required;
using test::serving_backend;
using test::serving_backends;
using test::ServingBackend;
using test::Tokens;

class EngineServing : public ::testing::TestWithParam<std::string> {
  protected:
    static void SetUpTestSuite() {
        if (prompts_.empty()) build_prompts();
    }
    void SetUp() override {
        ctx_ = serving_backend(GetParam());
        if (ctx_ != nullptr) return;
        if (test::default_model() == nullptr) GTEST_SKIP() << "default model not fetched";
        if (gpu_required()) FAIL() << "VELA_REQUIRE_GPU=1 but no GPU";
        GTEST_SKIP() << "no CUDA device";
    }
    Model& model() { return *ctx_->model; }
    const Tokenizer& tokenizer() { return *ctx_->tokenizer; }
    Backend& backend() { return *ctx_->backend; }
    bool on_gpu() const { return GetParam() != "cpu"; }
    // Whether a row's arithmetic is independent of the batch: the CPU's always is, the GPU's
    // with --batch-invariant (its default mode picks matvec or GEMM, and the decode split, by
    // batch size, so outputs alone and batched may part at a near tie).
    bool batch_invariant() const { return GetParam() != "cuda"; }
#define SKIP_UNLESS_BATCH_INVARIANT()                                                      \
    do {                                                                                   \
        if (!batch_invariant()) GTEST_SKIP() << "the default CUDA mode is not batch-invariant"; \
    } while (0)

    // 32 prompts of mixed lengths (1..~100 tokens); half start with one shared 40-token prefix,
    // as requests with a common system prompt do.
    static void build_prompts() {
        std::mt19937 rng(20261127);
        std::uniform_int_distribution<int32_t> tok(200, 40000);
        Tokens shared(40);
        for (auto& t : shared) t = tok(rng);
        std::uniform_int_distribution<int> len(1, 60);
        for (int i = 0; i < 32; ++i) {
            Tokens p = i % 2 == 0 ? shared : Tokens{};
            const int n = i == 1 ? 1 : len(rng);
            for (int k = 0; k < n; ++k) p.push_back(tok(rng));
            prompts_.push_back(std::move(p));
        }
    }

    // Greedy outputs of `prompts`, submitted together to `engine`, run to completion. With
    // `logprobs`, every third request (i % 3 == 0) also asks for logprobs, each token's going
    // there, and every third (i % 3 == 1) samples instead (sampled(i)), half of those with
    // logprobs too (i % 6 == 1).
    static std::vector<Tokens> run(Engine& engine, const std::vector<Tokens>& prompts,
                                   std::vector<std::vector<float>>* logprobs = nullptr) {
        std::map<int64_t, size_t> index;
        for (size_t i = 0; i < prompts.size(); ++i) {
            Request r;
            r.prompt = prompts[i];
            r.max_tokens = kGen;
            r.ignore_eos = true;
            r.sampling.temperature = 0;
            if (logprobs != nullptr && i % 3 == 0) r.logprobs = 2;
            if (logprobs != nullptr && i % 3 == 1) r.sampling = sampled(i);
            if (logprobs != nullptr && i % 6 == 1) r.logprobs = 5;
            index[engine.add_request(r)] = i;
        }
        std::vector<Tokens> out(prompts.size());
        if (logprobs != nullptr) logprobs->assign(prompts.size(), {});
        while (engine.has_work()) {
            for (const StepOutput& o : engine.step()) {
                const size_t i = index.at(o.request_id);
                out[i].insert(out[i].end(), o.tokens.begin(), o.tokens.end());
                for (const auto& choices : o.logprobs) (*logprobs)[i].push_back(choices[0].logprob);
            }
            EXPECT_LE(engine.stats().running, engine.config().scheduler.max_running);
        }
        return out;
    }

    // Each prompt alone in a fresh engine without prefix cache: the reference (per KV format).
    // Block size matters only to K in Q4 (its quantisation groups are blocks).
    const std::vector<Tokens>& alone(KvFormats format = KvFormat::F16,
                                     int64_t block_size = EngineConfig{}.kv_block_size) {
        std::vector<Tokens>& out =
            ctx_->alone[kv_formats_name(format) + " block " + std::to_string(block_size)];
        if (out.empty()) {
            EngineConfig c;
            c.prefix_caching = false;
            c.n_ctx = 256;  // a small pool: creating the engine zeroes it
            c.kv_formats = format;
            c.kv_block_size = block_size;
            for (const Tokens& p : prompts_) {
                Engine e(model(), tokenizer(), backend(), c);
                out.push_back(run(e, {p})[0]);
            }
        }
        return out;
    }

    // Seeded sampling of request i: temperature with top-k lists of several lengths (drawn from
    // the device's top-k), penalties (applied on the device before its top-k: repetition;
    // frequency and presence over the whole history; greedy with penalties, a list of one),
    // top-p / min-p without top-k (a list of 1024 and the row's log-sum-exp, the whole row when
    // the list falls short: top-p 0.999 on these flat rows), one with logprobs, and one that
    // needs its whole row: top-k off with penalties.
    static SamplingParams sampled(size_t i) {
        SamplingParams p;
        p.seed = 1000 + i;
        p.temperature = i % 2 == 0 ? 0.8f : 1.3f;
        p.top_k = std::array{40, 1, 1024, 7}[i / 3 % 4];
        p.min_p = i % 2 == 0 ? 0.05f : 0.0f;
        if (i == 4 || i == 7 || i == 10 || i == 16 || i == 25) p.top_k = 0;
        if (i == 4) p.top_p = 0.999f;
        if (i == 16) p.top_p = 1.0f;  // min-p alone
        if (i == 13 || i == 25) p.repetition_penalty = 1.3f;
        if (i == 19) {
            p.frequency_penalty = 0.4f;
            p.presence_penalty = 0.2f;
            p.repetition_penalty = 0.9f;
            p.penalty_last_n = -1;
        }
        if (i == 22) {
            p.temperature = 0.0f;
            p.frequency_penalty = 1.5f;
        }
        return p;
    }

    static void expect_no_leak(const Engine& e) {
        const EngineStats s = e.stats();
        EXPECT_EQ(e.num_used_kv_blocks(), 0);
        EXPECT_EQ(s.kv_blocks_used, 0);
        EXPECT_EQ(s.kv_blocks_swapped, 0);
        EXPECT_EQ(s.running + s.waiting, 0);
        EXPECT_EQ(e.kv_blocks().num_sequences(), 0);
    }

    ServingBackend* ctx_ = nullptr;
    static inline std::vector<Tokens> prompts_;
};

TEST_P(EngineServing, ConcurrentRequestsMatchAlone) {
    SKIP_UNLESS_BATCH_INVARIANT();
    // The references ran one by one without prefix cache; here the shared prefix is found by
    // the later requests, prefill is chunked and mixed with decode, and some requests wait.
    EngineConfig c;
    c.n_ctx = 1024;
    c.kv_block_size = 16;
    c.scheduler.max_batched_tokens = 96;
    c.scheduler.max_running = 20;
    Engine e(model(), tokenizer(), backend(), c);
    EXPECT_EQ(run(e, prompts_), alone());
    expect_no_leak(e);
    EXPECT_GT(e.stats().prefix_hit_tokens, 0);
    EXPECT_EQ(e.stats().preemptions, 0);
}

// Greedy rows are sampled by the backend's argmax_rows and only their ids come back; rows that
// sample with temperature and top-k, or greedily with penalties, bring back only their top-k
// list (apply_penalties, then top_k_rows); rows with logprobs bring back a list as long as they
// ask for and the row's log-sum-exp (logsumexp_rows), unless penalties change the row first;
// rows that need their logits on the host (top-k off, logprobs with penalties) are copied
// around them. Requests mix all of these. The outputs and logprobs must equal a run that
// copies every row and samples on the host (VELA_LOGITS_TO_HOST=1), and the greedy ones the
// requests alone.
TEST_P(EngineServing, DeviceSamplingMatchesHostSampling) {
    auto run_mixed = [&](bool all_to_host) {
        if (all_to_host) setenv("VELA_LOGITS_TO_HOST", "1", 1);
        EngineConfig c;
        c.n_ctx = 1024;
        c.scheduler.max_batched_tokens = 96;
        Engine e(model(), tokenizer(), backend(), c);
        unsetenv("VELA_LOGITS_TO_HOST");
        std::vector<std::vector<float>> logprobs;
        std::vector<Tokens> out = run(e, prompts_, &logprobs);
        expect_no_leak(e);
        return std::pair(out, logprobs);
    };
    const auto device = run_mixed(false), host = run_mixed(true);
    EXPECT_EQ(device.first, host.first);
    EXPECT_EQ(device.second, host.second);
    int differs = 0;
    for (size_t i = 0; i < prompts_.size(); ++i) {
        EXPECT_EQ(std::ssize(device.second[i]), i % 3 == 0 || i % 6 == 1 ? kGen : 0)
            << "request " << i;
        if (!batch_invariant()) continue;
        if (i % 3 != 1) {
            EXPECT_EQ(device.first[i], alone()[i]) << "request " << i;
        } else {
            differs += device.first[i] != alone()[i];
        }
    }
    if (batch_invariant()) {
        EXPECT_GT(differs, 0);  // the sampled requests did sample
    }
}

TEST_P(EngineServing, WarmPrefixCacheGivesSameOutputWithFewerPrefillTokens) {
    SKIP_UNLESS_BATCH_INVARIANT();
    EngineConfig c;
    c.n_ctx = 512;
    c.kv_block_size = 8;
    Engine e(model(), tokenizer(), backend(), c);
    const std::vector<Tokens> one{prompts_[4]};
    const std::vector<Tokens> cold = run(e, one);
    const EngineStats after_cold = e.stats();
    EXPECT_EQ(after_cold.prefix_hit_tokens, 0);
    EXPECT_EQ(cold[0], alone()[4]);
    const std::vector<Tokens> other{prompts_[6]};  // same 40-token prefix, other suffix
    EXPECT_EQ(run(e, other)[0], alone()[6]);
    EXPECT_EQ(run(e, one), cold);
    const EngineStats s = e.stats();
    // 40 shared tokens = 5 blocks of 8; the repeat finds its whole prompt but the last token.
    const int64_t n4 = static_cast<int64_t>(prompts_[4].size());
    EXPECT_EQ(s.prefix_hit_tokens, 40 + (n4 - 1) / 8 * 8);
    EXPECT_EQ(s.prefix_query_tokens, 2 * n4 + static_cast<int64_t>(prompts_[6].size()));
    EXPECT_GT(s.prefix_hit_rate(), 0.0);
    EXPECT_LT(s.prompt_tokens - after_cold.prompt_tokens,
              n4 + static_cast<int64_t>(prompts_[6].size()));
    expect_no_leak(e);
    EXPECT_GT(s.kv_blocks_cached, 0);  // kept for the next request, but counted free
}

TEST_P(EngineServing, PreemptionUnderMemoryPressureKeepsOutputs) {
    SKIP_UNLESS_BATCH_INVARIANT();
    // Only the first 8 prompts, so the memory-starved runs stay short.
    const std::vector<Tokens> prompts(prompts_.begin(), prompts_.begin() + 8);
    const std::vector<Tokens> want(alone().begin(), alone().begin() + 8);
    for (Preemption mode : {Preemption::Recompute, Preemption::Swap}) {
        for (bool prefix : {true, false}) {
            EngineConfig c;
            c.preemption = mode;
            c.prefix_caching = prefix;
            c.kv_block_size = 4;
            c.kv_blocks = 36;  // 144 tokens: two or three sequences at a time
            c.scheduler.max_batched_tokens = 64;
            Engine e(model(), tokenizer(), backend(), c);
            const std::string what = std::string(mode == Preemption::Swap ? "swap" : "recompute") +
                                     (prefix ? " + prefix" : "");
            EXPECT_EQ(run(e, prompts), want) << what;
            const EngineStats s = e.stats();
            EXPECT_GT(s.preemptions, 0) << what;
            if (mode == Preemption::Swap) {
                EXPECT_EQ(s.swap_outs, s.preemptions) << what;
                EXPECT_EQ(s.swap_ins, s.swap_outs) << what;
            } else {
                EXPECT_EQ(s.swap_outs, 0) << what;
            }
            expect_no_leak(e);
        }
    }
}

// A quantised KV row depends only on its own token, so every invariant above holds bit for bit
// with a quantised cache too: batched with chunked prefill and a warm prefix cache, under swap
// preemption (quantised blocks and their scales go to host memory and back), and for a group
// of samples forked from one prompt (copy-on-write of a partly filled quantised block). K in
// Q4 (KIVI) is per block, not per row, but what a query reads depends only on positions
// (kv/kivi_keys.h), and the open block's fp16 keys follow the same swaps and copies. The GPU
// stores Q4 in blocks of multiples of 16 only, so there the tight pool and the fork use 16.
TEST_P(EngineServing, QuantisedKvKeepsOutputsIdenticalToAlone) {
    SKIP_UNLESS_BATCH_INVARIANT();
    const std::vector<KvFormats> formats =
        on_gpu() ? std::vector<KvFormats>{KvFormat::Q8, KvFormat::FP8, KvFormat::Q4,
                                          KvFormats(KvFormat::Q4, KvFormat::Q4, 64)}
                 : std::vector<KvFormats>{KvFormat::Q8, KvFormats(KvFormat::Q8, KvFormat::Q4),
                                          KvFormat::Q4, KvFormats(KvFormat::Q4, KvFormat::Q4, 64)};
    for (KvFormats format : formats) {
        const std::string what = kv_formats_name(format);
        const bool gpu_q4 = on_gpu() && format.k == KvFormat::Q4;
        const std::vector<Tokens>& want = alone(format);
        EngineConfig c;
        c.kv_formats = format;
        c.n_ctx = 1024;
        c.scheduler.max_batched_tokens = 96;
        c.scheduler.max_running = 20;
        Engine batched(model(), tokenizer(), backend(), c);
        EXPECT_EQ(run(batched, prompts_), want) << what;
        EXPECT_GT(batched.stats().prefix_hit_tokens, 0) << what;
        expect_no_leak(batched);

        EngineConfig tight = c;
        tight.preemption = Preemption::Swap;
        tight.kv_block_size = gpu_q4 ? 16 : 4;
        tight.kv_blocks = gpu_q4 ? 9 : 36;
        tight.scheduler.max_batched_tokens = 64;
        Engine swapping(model(), tokenizer(), backend(), tight);
        const std::vector<Tokens> prompts(prompts_.begin(), prompts_.begin() + 8);
        const std::vector<Tokens>& want_tight =
            format.k == KvFormat::Q4 ? alone(format, tight.kv_block_size) : want;
        EXPECT_EQ(run(swapping, prompts),
                  std::vector<Tokens>(want_tight.begin(), want_tight.begin() + 8))
            << what;
        EXPECT_GT(swapping.stats().swap_outs, 0) << what;
        expect_no_leak(swapping);

        EngineConfig forking = c;
        forking.kv_block_size = gpu_q4 ? 16 : 8;
        Engine e(model(), tokenizer(), backend(), forking);
        Request r;
        r.prompt = prompts_[4];
        r.max_tokens = kGen;
        r.ignore_eos = true;
        r.sampling.temperature = 0;
        const std::vector<int64_t> ids = e.add_request_group(r, 3);
        std::map<int64_t, Tokens> out;
        while (e.has_work()) {
            for (const StepOutput& o : e.step()) {
                out[o.request_id].insert(out[o.request_id].end(), o.tokens.begin(), o.tokens.end());
            }
        }
        const std::vector<Tokens>& want_forking =
            format.k == KvFormat::Q4 ? alone(format, forking.kv_block_size) : want;
        for (int64_t id : ids) EXPECT_EQ(out[id], want_forking[4]) << what;
        expect_no_leak(e);
    }
}

TEST_P(EngineServing, GroupOfSamplesSharesPromptKv) {
    SKIP_UNLESS_BATCH_INVARIANT();
    for (bool prefix : {false, true}) {
        EngineConfig c;
        c.n_ctx = 512;
        c.kv_block_size = 8;
        c.prefix_caching = prefix;
        Engine e(model(), tokenizer(), backend(), c);
        Request r;
        r.prompt = prompts_[4];
        r.max_tokens = kGen;
        r.ignore_eos = true;
        r.sampling.temperature = 0;
        const std::vector<int64_t> ids = e.add_request_group(r, 3);
        ASSERT_EQ(ids.size(), 3u);
        std::map<int64_t, Tokens> out;
        while (e.has_work()) {
            for (const StepOutput& o : e.step()) {
                auto& got = out[o.request_id];
                got.insert(got.end(), o.tokens.begin(), o.tokens.end());
            }
        }
        for (int64_t id : ids) EXPECT_EQ(out[id], alone()[4]) << "prefix " << prefix;
        // The prompt is computed once; each other sample feeds only its last prompt token.
        EXPECT_EQ(e.stats().prompt_tokens, static_cast<int64_t>(prompts_[4].size()) + 2);
        expect_no_leak(e);
    }
}

TEST_P(EngineServing, KvPressureNeverStallsTheQueue) {
    SKIP_UNLESS_BATCH_INVARIANT();
    // Issue 19 at half scale (3 distinct ~180-token prompts, max_tokens 96, 32 blocks of 16):
    // 3 distinct ~90-token prompts, max_tokens 48, 32 blocks of 8, so about two sequences fit.
    // A sequence preempted by recompute comes back to find its own prompt blocks in the prefix
    // cache; admission must not let a waiting sequence sit on those blocks, or the queue head
    // can never fit and nothing runs again.
    std::mt19937 rng(19);
    std::uniform_int_distribution<int32_t> tok(200, 40000);
    std::vector<Tokens> prompts(3);
    for (size_t i = 0; i < prompts.size(); ++i) {
        prompts[i].resize(88 + 5 * i);
        for (auto& t : prompts[i]) t = tok(rng);
    }
    auto run_bounded = [&](EngineConfig c, int64_t max_steps) {
        Engine e(model(), tokenizer(), backend(), c);
        std::map<int64_t, size_t> index;
        for (size_t i = 0; i < prompts.size(); ++i) {
            Request r;
            r.prompt = prompts[i];
            r.max_tokens = 48;
            r.ignore_eos = true;
            r.sampling.temperature = 0;
            index[e.add_request(r)] = i;
        }
        std::vector<Tokens> out(prompts.size());
        int64_t steps = 0;
        for (; e.has_work() && steps < max_steps; ++steps) {
            for (const StepOutput& o : e.step()) {
                auto& got = out[index.at(o.request_id)];
                got.insert(got.end(), o.tokens.begin(), o.tokens.end());
            }
        }
        EXPECT_FALSE(e.has_work())
            << "no progress after " << steps << " steps: running " << e.stats().running
            << ", waiting " << e.stats().waiting << ", KV blocks used " << e.num_used_kv_blocks()
            << "/" << e.stats().kv_blocks_total << " by " << e.kv_blocks().num_sequences()
            << " KV tables, preemptions " << e.stats().preemptions << ", generated "
            << e.stats().generated_tokens;
        if (!e.has_work()) expect_no_leak(e);
        return std::make_pair(out, e.stats());
    };
    EngineConfig ample;
    ample.n_ctx = 256;
    ample.kv_block_size = 8;
    ample.kv_blocks = 64;
    const std::vector<Tokens> want = run_bounded(ample, 1000).first;
    for (Preemption mode : {Preemption::Recompute, Preemption::Swap}) {
        EngineConfig c = ample;
        c.kv_blocks = 32;
        c.preemption = mode;
        // Every step computes at least one token, and prompts and outputs are recomputed a few
        // times at most: 1000 steps is generous.
        const auto [out, stats] = run_bounded(c, 1000);
        EXPECT_EQ(out, want);
        EXPECT_GT(stats.preemptions, 0);
    }
}

TEST_P(EngineServing, AbortReleasesBlocks) {
    EngineConfig c;
    c.kv_block_size = 4;
    c.kv_blocks = 40;
    c.preemption = Preemption::Swap;
    Engine e(model(), tokenizer(), backend(), c);
    std::vector<int64_t> ids;
    for (int i = 0; i < 6; ++i) {
        Request r;
        r.prompt = prompts_[static_cast<size_t>(i)];
        r.max_tokens = 50;
        r.ignore_eos = true;
        ids.push_back(e.add_request(r));
    }
    for (int i = 0; i < 6; ++i) e.step();
    EXPECT_GT(e.num_used_kv_blocks(), 0);
    for (int64_t id : ids) e.abort(id);
    e.step();
    EXPECT_FALSE(e.has_work());
    expect_no_leak(e);
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineServing, ::testing::ValuesIn(serving_backends()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                             return info.param;
                         });

}  // namespace
}  // namespace vela

namespace vela {
namespace {

// Several tokens in one increment (accepted draft tokens): appended in order, and nothing after
// the one that ends the sequence.
TEST(SequenceAppend, SeveralTokensStopAtTheEnd) {
    test::DefaultModel* m = test::default_model();
    if (m == nullptr) GTEST_SKIP() << "default model not fetched";
    const Tokenizer& tok = m->tokenizer;
    const Tokens prompt = tok.encode("Hello", true, false);
    const Tokens words = tok.encode(" one two three four", false, false);
    ASSERT_GE(words.size(), 4u);

    Request r;
    r.prompt = prompt;
    r.max_tokens = 10;
    Sequence eos_seq(1, r, tok);
    const StepOutput a = eos_seq.append_tokens(Tokens{words[0], words[1], tok.eos(), words[2]});
    EXPECT_EQ(a.tokens, (Tokens{words[0], words[1], tok.eos()}));
    EXPECT_EQ(a.finish, FinishReason::Stop);
    EXPECT_EQ(a.text, tok.decode(Tokens{words[0], words[1]}));

    r.max_tokens = 3;
    Sequence len_seq(2, r, tok);
    const StepOutput b = len_seq.append_tokens(words);
    EXPECT_EQ(b.tokens, Tokens(words.begin(), words.begin() + 3));
    EXPECT_EQ(b.finish, FinishReason::Length);
    EXPECT_EQ(len_seq.n_generated(), 3);
}

}  // namespace
}  // namespace vela
