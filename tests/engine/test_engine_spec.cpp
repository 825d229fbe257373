// Speculative decoding on every backend the build has: greedy outputs with draft chains and
// token trees equal those without speculation, each request alone and all of them batched. On
// the GPU a tree is verified by the prefill kernel with the tree's mask; the identity is
// asserted where a backend promises batch invariance (the CPU, CUDA with --batch-invariant).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "../common/oracle_tree_drafter.h"
#include "../common/run_requests.h"
#include "engine/engine.h"
#include "serving_backends.h"
#include "spec/ngram_drafter.h"

namespace vela {
namespace {

using test::Tokens;

constexpr int64_t kGen = 20;

class EngineSpec : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        ctx_ = test::serving_backend(GetParam());
        if (ctx_ == nullptr) {
            if (test::default_model() == nullptr) GTEST_SKIP() << "default model not fetched";
            if (test::gpu_required()) FAIL() << "VELA_REQUIRE_GPU=1 but no GPU";
            GTEST_SKIP() << "no CUDA device";
        }
        if (GetParam() == "cuda") GTEST_SKIP() << "the default CUDA mode is not batch-invariant";
        // Input-grounded prompts (n-gram drafts get accepted) and a random-token one.
        for (const char* t : {
                 "Repeat this code exactly:\ndef add(a, b):\n    return a + b\n\ndef add(a, b):\n",
                 "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the",
                 "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
             }) {
            prompts_.push_back(ctx_->tokenizer->encode(t, false, true));
        }
        prompts_.push_back({523, 9010, 310, 44, 1201, 7, 88, 3001});
    }

    // Greedy outputs of the prompts submitted together; checks that no KV block is left.
    std::vector<Tokens> run(const std::vector<Tokens>& prompts,
                            std::unique_ptr<spec::Drafter> drafter, EngineStats* stats) {
        EngineConfig c;
        c.n_ctx = 256;
        c.speculation.max_tokens = 8;
        c.scheduler.max_batched_tokens = 48;  // the batched prompts run as chunked prefill
        Engine e(*ctx_->model, *ctx_->tokenizer, *ctx_->backend, c, std::move(drafter));
        std::vector<Tokens> out = test::run_requests(e, test::greedy_requests(prompts, kGen));
        EXPECT_EQ(e.num_used_kv_blocks(), 0);
        if (stats != nullptr) *stats = e.stats();
        return out;
    }

    // Each prompt alone without speculation.
    std::vector<Tokens> reference() {
        std::vector<Tokens> out;
        for (const Tokens& p : prompts_) out.push_back(run({p}, nullptr, nullptr)[0]);
        return out;
    }

    test::ServingBackend* ctx_ = nullptr;
    std::vector<Tokens> prompts_;
};

TEST_P(EngineSpec, NgramDraftsKeepGreedyOutputs) {
    const std::vector<Tokens> ref = reference();
    for (int branches : {1, 4}) {
        EngineStats st;
        const std::vector<Tokens> batched =
            run(prompts_, std::make_unique<spec::NgramDrafter>(1, 3, branches), &st);
        EXPECT_EQ(batched, ref) << "n-gram, " << branches << " branches, batched";
        EXPECT_GT(st.spec_accepted_tokens, 0) << branches << " branches";
        for (size_t i = 0; i < prompts_.size(); ++i) {
            EXPECT_EQ(run({prompts_[i]}, std::make_unique<spec::NgramDrafter>(1, 3, branches),
                          nullptr)[0],
                      ref[i])
                << "n-gram, " << branches << " branches, prompt " << i << " alone";
        }
    }
}

// Trees whose accepted paths always take second children: every accepted node's K/V row is
// moved behind the last token after verification, and the mask must hide first children from
// their siblings' subtrees.
TEST_P(EngineSpec, OracleTreesKeepGreedyOutputs) {
    const std::vector<Tokens> ref = reference();
    const auto n_vocab = static_cast<int32_t>(ctx_->model->hparams().n_vocab);
    EngineStats st;
    EXPECT_EQ(run(prompts_, std::make_unique<test::OracleTreeDrafter>(prompts_, ref, n_vocab), &st),
              ref);
    EXPECT_GT(st.spec_accepted_tokens, st.spec_draft_tokens / 3);
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineSpec, ::testing::ValuesIn(test::serving_backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace vela
