// KV eviction in the engine, on the default model: a budget never reached changes nothing;
// with eviction every policy gives the same greedy output alone and batched (prompts shorter
// than the budget, so every eviction happens in decode steps, at the same token counts); no
// sequence holds more than budget + one block after a step; swap preemption and forked
// samples keep outputs; nothing leaks; bad configurations are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "../common/default_model.h"
#include "core/error.h"
#include "engine/engine.h"
#include "spec/ngram_drafter.h"

namespace vela {
namespace {

using Tokens = std::vector<int32_t>;
constexpr int64_t kGen = 40;
constexpr int64_t kBudget = 24;
constexpr int64_t kBlock = 4;

class EngineEviction : public ::testing::Test {
  protected:
    void SetUp() override {
        m_ = test::default_model();
        if (m_ == nullptr) GTEST_SKIP() << "default model not fetched";
        std::mt19937 rng(20261205);
        std::uniform_int_distribution<int32_t> tok(200, 40000);
        std::uniform_int_distribution<int> len(3, 20);
        for (int i = 0; i < 8; ++i) {
            Tokens p(static_cast<size_t>(len(rng)));
            for (auto& t : p) t = tok(rng);
            prompts_.push_back(std::move(p));
        }
    }

    static EngineConfig config(EvictionPolicy policy, int64_t budget = kBudget) {
        EngineConfig c;
        c.n_ctx = 256;
        c.kv_block_size = kBlock;
        c.eviction.policy = policy;
        c.eviction.budget_tokens = policy == EvictionPolicy::None ? 0 : budget;
        c.eviction.sinks = 2;
        return c;
    }

    // Greedy outputs of the prompts submitted together; checks after every step that no
    // sequence holds more KV than its budget + one block (+ the step's new tokens).
    std::vector<Tokens> run(Engine& e, const std::vector<Tokens>& prompts, int64_t n = 1) {
        std::vector<int64_t> ids;
        for (const Tokens& p : prompts) {
            Request r;
            r.prompt = p;
            r.max_tokens = kGen;
            r.ignore_eos = true;
            r.sampling.temperature = 0;
            for (int64_t id : e.add_request_group(r, n)) ids.push_back(id);
        }
        std::map<int64_t, size_t> slot;
        for (size_t i = 0; i < ids.size(); ++i) slot[ids[i]] = i;
        std::vector<Tokens> out(ids.size());
        while (e.has_work()) {
            for (const StepOutput& o : e.step()) {
                auto& got = out[slot.at(o.request_id)];
                got.insert(got.end(), o.tokens.begin(), o.tokens.end());
            }
            if (!e.config().eviction.enabled()) continue;
            const int64_t most = e.config().eviction.budget_tokens + kBlock;
            for (const auto& [id, i] : slot) {
                if (!e.kv_blocks().has_sequence(id)) continue;
                EXPECT_LE(e.kv_blocks().n_tokens(id), most)
                    << "request " << id << " after step " << e.stats().steps;
            }
        }
        return out;
    }

    std::vector<Tokens> alone(const EngineConfig& c) {
        std::vector<Tokens> out;
        for (const Tokens& p : prompts_) {
            EngineConfig one = c;
            one.prefix_caching = false;
            Engine e(m_->model, m_->tokenizer, m_->backend, one);
            out.push_back(run(e, {p})[0]);
        }
        return out;
    }

    static void expect_no_leak(const Engine& e) {
        EXPECT_EQ(e.num_used_kv_blocks(), 0);
        EXPECT_EQ(e.kv_blocks().num_sequences(), 0);
        EXPECT_EQ(e.stats().kv_blocks_swapped, 0);
    }

    test::DefaultModel* m_ = nullptr;
    std::vector<Tokens> prompts_;
};

TEST_F(EngineEviction, BudgetNeverReachedChangesNothing) {
    const std::vector<Tokens> want = alone(config(EvictionPolicy::None));
    for (EvictionPolicy p : {EvictionPolicy::Window, EvictionPolicy::H2O}) {
        Engine e(m_->model, m_->tokenizer, m_->backend, config(p, 1000));
        EXPECT_EQ(run(e, prompts_), want) << eviction_policy_name(p);
        EXPECT_EQ(e.stats().kv_evicted_tokens, 0);
        expect_no_leak(e);
    }
}

TEST_F(EngineEviction, BatchedEqualsAloneForEveryPolicy) {
    const std::vector<Tokens> full = alone(config(EvictionPolicy::None));
    for (EvictionPolicy p : {EvictionPolicy::Window, EvictionPolicy::Sinks, EvictionPolicy::H2O,
                             EvictionPolicy::Tova}) {
        const std::string what(eviction_policy_name(p));
        EngineConfig c = config(p);
        const std::vector<Tokens> want = alone(c);
        c.scheduler.max_batched_tokens = 32;  // prompts chunked and mixed with decode
        Engine e(m_->model, m_->tokenizer, m_->backend, c);
        EXPECT_EQ(run(e, prompts_), want) << what;
        const EngineStats s = e.stats();
        // Every sequence reaches prompt + 40 tokens and keeps 24: at least 16 evicted each.
        EXPECT_GE(s.kv_evicted_tokens, 8 * 16) << what;
        EXPECT_NE(want, full) << what << ": eviction changed no output at all";
        expect_no_leak(e);
    }
}

// Q4 keys: sinks and window cut whole blocks, which the table drops without moving a row; the
// outputs batched (prompts chunked, mixed with decode) are those of each request alone.
TEST_F(EngineEviction, Q4KeysCutWholeBlocksBatchedAsAlone) {
    prompts_.resize(4);
    EngineConfig c = config(EvictionPolicy::Sinks);
    c.kv_formats = KvFormats(KvFormat::Q4, KvFormat::F16);
    const std::vector<Tokens> want = alone(c);
    c.scheduler.max_batched_tokens = 32;
    Engine e(m_->model, m_->tokenizer, m_->backend, c);
    EXPECT_EQ(run(e, prompts_), want);
    EXPECT_GE(e.stats().kv_evicted_tokens, 4 * 16);
    expect_no_leak(e);
}

TEST_F(EngineEviction, SwapPreemptionAndForkedSamplesKeepOutputs) {
    const EngineConfig c = config(EvictionPolicy::Sinks);
    const std::vector<Tokens> want = alone(c);
    EngineConfig tight = c;
    tight.preemption = Preemption::Swap;
    tight.kv_blocks = 16;  // 64 tokens: two sequences at a time
    Engine swapping(m_->model, m_->tokenizer, m_->backend, tight);
    EXPECT_EQ(run(swapping, prompts_), want);
    EXPECT_GT(swapping.stats().swap_outs, 0);
    expect_no_leak(swapping);

    EngineConfig recompute = tight;
    recompute.preemption = Preemption::Recompute;
    Engine recomputing(m_->model, m_->tokenizer, m_->backend, recompute);
    // Recomputing re-feeds the tokens in prefill chunks, so evictions fall elsewhere: the
    // outputs may differ, but every request ends and the pool drains.
    const std::vector<Tokens> got = run(recomputing, prompts_);
    for (const Tokens& t : got) EXPECT_EQ(static_cast<int64_t>(t.size()), kGen);
    expect_no_leak(recomputing);

    Engine forking(m_->model, m_->tokenizer, m_->backend, c);
    const std::vector<Tokens> samples = run(forking, {prompts_[3]}, 3);
    ASSERT_EQ(samples.size(), 3u);
    for (const Tokens& t : samples) EXPECT_EQ(t, want[3]);
    expect_no_leak(forking);
}

TEST_F(EngineEviction, SpeculationWithEvictionEndsCleanly) {
    // Several tokens per step move the points where eviction falls, so outputs are not compared
    // with speculation off; requests end, KV stays within budget, nothing leaks.
    EngineConfig c = config(EvictionPolicy::Tova);
    c.speculation.max_tokens = 4;
    Engine e(m_->model, m_->tokenizer, m_->backend, c, std::make_unique<spec::NgramDrafter>());
    for (const Tokens& t : run(e, prompts_)) EXPECT_EQ(static_cast<int64_t>(t.size()), kGen);
    expect_no_leak(e);
}

TEST_F(EngineEviction, BadConfigurationsAreRefused) {
    EngineConfig c = config(EvictionPolicy::H2O);
    c.eviction.budget_tokens = 0;  // no budget
    EXPECT_THROW(Engine(m_->model, m_->tokenizer, m_->backend, c), InvalidArgument);
    c.eviction.budget_fraction = 1.5;
    EXPECT_THROW(Engine(m_->model, m_->tokenizer, m_->backend, c), InvalidArgument);
    const std::string gemma = std::string(VELA_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf";
    if (!std::filesystem::exists(gemma)) GTEST_SKIP() << "gemma 3 not fetched";
    Model local(gemma);
    const Tokenizer tok = Tokenizer::from_gguf(local.file());
    try {
        Engine e(local, tok, m_->backend, config(EvictionPolicy::Window));
        ADD_FAILURE() << "eviction accepted for a model with its own sliding window";
    } catch (const InvalidArgument& err) {
        EXPECT_NE(std::string(err.what()).find("sliding window"), std::string::npos) << err.what();
    }
}

}  // namespace
}  // namespace vela
