// Gemma 3's sliding-window layers keeping only their window (the BlockManager's local group)
// in the engine: greedy output is the same as with every token's KV kept (--swa-full), batched
// with chunked prefill, with forked samples and with speculation (whose rejected drafts
// truncate the local tables); each running sequence holds at most its window's local blocks;
// nothing leaks; what needs every token's KV is refused. On the CPU, and on the GPU when there
// is one (VELA_REQUIRE_GPU=1 makes its absence a failure).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>

#include "backend/cpu/cpu_backend.h"
#ifdef VELA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "core/error.h"
#include "engine/engine.h"
#include "../common/run_requests.h"
#include "serving_backends.h"
#include "spec/drafter.h"

namespace vela {
namespace {

using Tokens = std::vector<int32_t>;
constexpr int64_t kGen = 24;
constexpr int64_t kStep = 96;  // tokens a step: prompts of 530-600 tokens come in chunks

const std::string& gemma_path() {
    static const std::string p = std::string(VELA_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf";
    return p;
}

struct Loaded {
    std::unique_ptr<ThreadPool> pool;
    std::unique_ptr<Backend> backend;  // outlives the model (declared first, destroyed last)
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
};

// Gemma 3 on `name` ("cpu" or "cuda"); null when not fetched or without a device.
Loaded* gemma_on(const std::string& name) {
    static std::map<std::string, std::unique_ptr<Loaded>> made;
    auto& l = made[name];
    if (l) return l.get();
    if (!std::filesystem::exists(gemma_path())) return nullptr;
    l = std::make_unique<Loaded>();
    if (name == "cpu") {
        l->pool = std::make_unique<ThreadPool>(2);
        l->backend = std::make_unique<CpuBackend>(*l->pool);
    }
#ifdef VELA_HAS_CUDA
    if (name == "cuda" && cuda_device_available()) l->backend = std::make_unique<CudaBackend>();
#endif
    if (!l->backend) {
        l.reset();
        return nullptr;
    }
    l->model = std::make_unique<Model>(gemma_path());
    l->tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(l->model->file()));
    return l.get();
}

class EngineLocalKv : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        g_ = gemma_on(GetParam());
        if (g_ == nullptr) {
            if (GetParam() != "cpu" && test::gpu_required()) FAIL() << "no CUDA device";
            GTEST_SKIP() << "gemma 3 not fetched, or no " << GetParam() << " device";
        }
        window_ = g_->model->hparams().sliding_window;
        ASSERT_GT(window_, 0);
        std::mt19937 rng(20261207);
        std::uniform_int_distribution<int32_t> tok(1000, 200000);
        // Longer than the window, so the local layers release blocks while prefilling; the
        // last one repeats a phrase.
        for (int64_t len : {530, 600}) {
            Tokens p(static_cast<size_t>(len));
            for (auto& t : p) t = tok(rng);
            prompts_.push_back(std::move(p));
        }
        Tokens phrase(37);
        for (auto& t : phrase) t = tok(rng);
        Tokens rep;
        while (rep.size() < 560) rep.insert(rep.end(), phrase.begin(), phrase.end());
        prompts_.push_back(std::move(rep));
    }

    EngineConfig config(bool swa_full) const {
        EngineConfig c;
        c.n_ctx = 1024;
        c.kv_block_size = 16;
        c.kv_blocks = 3 * 1024 / 16;  // three sequences' contexts
        c.scheduler.max_batched_tokens = kStep;
        c.scheduler.max_running = 3;
        c.swa_full = swa_full;
        return c;
    }

    // Greedy outputs (n samples each); checks after every step that each running sequence
    // holds at most its window's local blocks.
    std::vector<Tokens> run(Engine& e, const std::vector<Tokens>& prompts, int64_t n = 1) {
        std::vector<int64_t> ids;
        for (const Request& r : test::greedy_requests(prompts, kGen)) {
            for (int64_t id : e.add_request_group(r, n)) ids.push_back(id);
        }
        std::map<int64_t, size_t> slot;
        for (size_t i = 0; i < ids.size(); ++i) slot[ids[i]] = i;
        std::vector<Tokens> out(ids.size());
        const BlockManager& kv = e.kv_blocks();
        const int64_t most = local_blocks_per_sequence(window_, kStep, kv.config().block_size);
        while (e.has_work()) {
            for (const StepOutput& o : e.step()) {
                auto& got = out[slot.at(o.request_id)];
                got.insert(got.end(), o.tokens.begin(), o.tokens.end());
            }
            if (!kv.has_local_group()) continue;
            for (const auto& [id, i] : slot) {
                if (!kv.has_sequence(id)) continue;
                const BlockTable& t = kv.table(id);
                EXPECT_LE(static_cast<int64_t>(t.local.size()), most) << "request " << id;
                EXPECT_EQ(t.local_first + static_cast<int64_t>(t.local.size()),
                          static_cast<int64_t>(t.blocks.size()));
            }
        }
        EXPECT_EQ(e.num_used_kv_blocks(), 0);
        if (kv.has_local_group()) {
            EXPECT_EQ(kv.local_pool().num_free(), kv.local_pool().num_total());
        }
        return out;
    }

    Engine make(bool swa_full, std::unique_ptr<spec::Drafter> drafter = nullptr) {
        return Engine(*g_->model, *g_->tokenizer, *g_->backend, config(swa_full),
                      std::move(drafter));
    }

    Loaded* g_ = nullptr;
    int64_t window_ = 0;
    std::vector<Tokens> prompts_;
};

TEST_P(EngineLocalKv, GreedyOutputIsTheSameAsKeepingEveryToken) {
    Engine full = make(/*swa_full=*/true);
    ASSERT_FALSE(full.kv_blocks().has_local_group());
    const std::vector<Tokens> want = run(full, prompts_);

    Engine windowed = make(/*swa_full=*/false);
    ASSERT_TRUE(windowed.kv_blocks().has_local_group());
    const EngineStats s = windowed.stats();
    // Gemma 3: 5 local layers in 6, so a token's growing KV is a sixth of it.
    EXPECT_LT(s.kv_bytes_per_token * 5, full.stats().kv_bytes_per_token);
    EXPECT_EQ(s.kv_local_blocks_total, local_pool_blocks(window_, kStep, 16, 3));
    EXPECT_EQ(run(windowed, prompts_), want);
    std::printf("[local_kv] %s: local pool %lld blocks, %lld preemptions (full: %lld)\n",
                GetParam().c_str(), static_cast<long long>(s.kv_local_blocks_total),
                static_cast<long long>(windowed.stats().preemptions),
                static_cast<long long>(full.stats().preemptions));

    // Forked samples share the prompt's local blocks and copy the last one on write.
    Engine forked = make(false);
    const std::vector<Tokens> two = run(forked, {prompts_[1]}, 2);
    EXPECT_EQ(two[0], want[1]);
    EXPECT_EQ(two[1], want[1]);
}

// Drafts the known greedy continuation with its third token wrong: each verification accepts
// two tokens and rolls three back.
class HalfRightDrafter final : public spec::Drafter {
  public:
    explicit HalfRightDrafter(std::vector<Tokens> sequences) : sequences_(std::move(sequences)) {}
    const char* name() const override { return "half-right"; }
    void propose(std::span<const spec::DraftRequest> requests,
                 std::vector<spec::Draft>& drafts) override {
        drafts.resize(requests.size());
        for (size_t i = 0; i < requests.size(); ++i) {
            drafts[i].clear();
            const auto& seen = requests[i].tokens;
            for (const Tokens& full : sequences_) {
                if (full.size() <= seen.size() || !std::equal(seen.begin(), seen.end(), full.begin()))
                    continue;
                for (int32_t k = 0; k < requests[i].max_tokens; ++k) {
                    const size_t at = seen.size() + static_cast<size_t>(k);
                    if (at >= full.size()) break;
                    drafts[i].tokens.push_back(k == 2 ? full[at] + 1 : full[at]);
                }
            }
        }
    }

  private:
    std::vector<Tokens> sequences_;
};

TEST_P(EngineLocalKv, SpeculationRollsTheLocalTablesBack) {
    const std::vector<Tokens> prompts{prompts_[1], prompts_[2]};
    Engine full = make(true);
    const std::vector<Tokens> want = run(full, prompts);
    std::vector<Tokens> sequences;
    for (size_t i = 0; i < prompts.size(); ++i) {
        sequences.push_back(prompts[i]);
        sequences.back().insert(sequences.back().end(), want[i].begin(), want[i].end());
    }
    Engine e = make(false, std::make_unique<HalfRightDrafter>(sequences));
    EXPECT_EQ(run(e, prompts), want);
    EXPECT_GT(e.stats().spec_accepted_tokens, 0);
    EXPECT_GT(e.stats().spec_draft_tokens, e.stats().spec_accepted_tokens);  // some rejected
}

TEST_P(EngineLocalKv, WhatNeedsEveryTokensKvIsRefused) {
    EngineConfig c = config(false);
    c.preemption = Preemption::Swap;
    try {
        Engine e(*g_->model, *g_->tokenizer, *g_->backend, c);
        ADD_FAILURE() << "swap preemption accepted with a local group";
    } catch (const InvalidArgument& err) {
        EXPECT_NE(std::string(err.what()).find("--swa-full"), std::string::npos) << err.what();
    }
    c.swa_full = true;  // with every token's KV, swapping is fine
    EXPECT_NO_THROW(Engine(*g_->model, *g_->tokenizer, *g_->backend, c));
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineLocalKv, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace vela
