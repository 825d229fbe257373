// Draft-model token trees (spec/spine_tree.h): the sizer widens the tree where siblings get
// accepted and drafts a chain where they never are, and its widths are the best allocation
// (checked against every allocation); siblings are the next-best tokens, in order; outcomes
// are read back from the verified tokens. On the default model, greedy output is identical
// with draft trees on and off, alone and batched, while siblings do get accepted; sampled
// requests run through them. (Their distribution under sampling: test_verifier_distribution.)
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "../common/default_model.h"
#include "../common/run_requests.h"
#include "../common/test_seed.h"
#include "engine/engine.h"
#include "spec/draft_model_drafter.h"
#include "spec/spine_tree.h"

namespace vela {
namespace {

using spec::SpineTreeSizer;
using Tokens = std::vector<int32_t>;

// Feeds `steps` verified outcomes of a spine tree of `depth` with width-wide levels: at each
// depth the spine is accepted with probability spine_rate; otherwise the siblings are tried in
// turn, each accepted with probability sibling_rate, and the step ends.
void simulate(SpineTreeSizer& sizer, int32_t depth, int32_t width, double spine_rate,
              double sibling_rate, int steps, uint32_t seed) {
    std::mt19937 rng(seed);
    std::bernoulli_distribution spine(spine_rate), sibling(sibling_rate);
    for (int n = 0; n < steps; ++n) {
        for (int32_t d = 1; d <= depth; ++d) {
            if (spine(rng)) {
                sizer.record(d, 1, 0);
                continue;
            }
            int32_t r = 1;
            while (r < width && !sibling(rng)) ++r;
            sizer.record(d, std::min(r + 1, width), r < width ? r : -1);
            break;
        }
    }
}

int32_t nodes(const std::vector<int32_t>& widths) {
    int32_t n = 0;
    for (int32_t w : widths) n += w;
    return n;
}

// The best net gain over every allocation of widths (1..max_width per depth, <= budget nodes).
double best_by_enumeration(const SpineTreeSizer& s, int32_t depth, int32_t budget) {
    const int32_t w_max = s.options().max_width;
    std::vector<int32_t> w(static_cast<size_t>(depth), 1);
    const double base = s.expected_accepted(w);
    double best = 0.0;
    std::function<void(int32_t)> go = [&](int32_t d) {
        if (d == depth) {
            if (nodes(w) > budget) return;
            const double net = s.expected_accepted(w) - base -
                               s.options().min_gain * static_cast<double>(nodes(w) - depth);
            best = std::max(best, net);
            return;
        }
        for (int32_t x = 1; x <= w_max; ++x) {
            w[static_cast<size_t>(d)] = x;
            go(d + 1);
        }
        w[static_cast<size_t>(d)] = 1;
    };
    go(0);
    return best;
}

double net_gain(const SpineTreeSizer& s, const std::vector<int32_t>& w) {
    const std::vector<int32_t> chain(w.size(), 1);
    return s.expected_accepted(w) - s.expected_accepted(chain) -
           s.options().min_gain * static_cast<double>(nodes(w) - static_cast<int32_t>(w.size()));
}

TEST(SpineTreeSizer, ChainWhenSiblingsAreNeverAccepted) {
    SpineTreeSizer s({4, 0.05});
    simulate(s, 4, 4, 0.7, 0.0, 2000, test::fresh_seed());
    EXPECT_LT(s.rate(1, 1), 0.05);
    EXPECT_EQ(s.widths(4, 16), std::vector<int32_t>(4, 1));
    EXPECT_EQ(s.n_sibling_accepted(), 0);
}

TEST(SpineTreeSizer, WiderWhenSiblingsGetAccepted) {
    SpineTreeSizer s({4, 0.05});
    simulate(s, 4, 4, 0.6, 0.5, 2000, test::fresh_seed());
    EXPECT_GT(s.n_sibling_accepted(), 0);
    const std::vector<int32_t> w = s.widths(4, 12);
    ASSERT_EQ(w.size(), 4u);
    EXPECT_LE(nodes(w), 12);
    // Depth 1 is reached every step: its siblings are worth most.
    EXPECT_GT(w[0], 1);
    EXPECT_GE(w[0], w[3]);
    // A budget of depth nodes leaves no room: the chain.
    EXPECT_EQ(s.widths(4, 4), std::vector<int32_t>(4, 1));
}

TEST(SpineTreeSizer, WidthsAreTheBestAllocation) {
    const uint32_t seed = test::fresh_seed();
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int trial = 0; trial < 40; ++trial) {
        SpineTreeSizer s({1 + static_cast<int32_t>(rng() % 4), trial % 2 ? 0.0 : 0.03});
        simulate(s, 5, s.options().max_width, u(rng), u(rng), 30, rng());
        const int32_t depth = 1 + static_cast<int32_t>(rng() % 5);
        const int32_t budget = depth + static_cast<int32_t>(rng() % 9);
        const std::vector<int32_t> w = s.widths(depth, budget);
        ASSERT_EQ(static_cast<int32_t>(w.size()), depth);
        EXPECT_LE(nodes(w), budget) << "seed " << seed << " trial " << trial;
        EXPECT_NEAR(net_gain(s, w), best_by_enumeration(s, depth, budget), 1e-9)
            << "seed " << seed << " trial " << trial;
    }
}

TEST(SpineTree, SiblingsAreTheNextBestTokens) {
    const std::vector<float> scores{0.1f, 0.4f, 0.0f, 0.2f, 0.2f, 0.05f};
    spec::Draft d;
    const int32_t spine = spec::append_spine_level(1, scores, 0.0f, 4, -1, d);
    EXPECT_EQ(spine, 0);
    // Spine first, then by score, ties by id; token 2's score is not above the floor.
    EXPECT_EQ(d.tokens, (Tokens{1, 3, 4, 0}));
    EXPECT_EQ(d.parents, (Tokens{-1, -1, -1, -1}));
    const int32_t next = spec::append_spine_level(3, scores, 0.15f, 5, spine, d);
    EXPECT_EQ(next, 4);
    EXPECT_EQ(d.tokens, (Tokens{1, 3, 4, 0, 3, 1, 4}));
    EXPECT_EQ(d.parents, (Tokens{-1, -1, -1, -1, 0, 0, 0}));
    EXPECT_EQ(d.depth(), 2);
}

TEST(SpineTree, OutcomeIsReadFromTheVerifiedTokens) {
    // Depth 1: spine 10, siblings 11, 12; depth 2 (under 10): spine 20, sibling 21.
    spec::Draft d;
    d.tokens = {10, 11, 12, 20, 21};
    d.parents = {-1, -1, -1, 0, 0};
    SpineTreeSizer s({3, 0.0});
    // 10 accepted, then 21 (rank 1) accepted, then the bonus token 99.
    spec::record_outcome(d, Tokens{5, 6, 10, 21, 99}, 2, s);
    EXPECT_EQ(s.n_recorded(), 2);
    EXPECT_EQ(s.n_sibling_accepted(), 1);
    EXPECT_GT(s.rate(1, 0), 0.5);  // accepted once
    EXPECT_GT(s.rate(2, 1), 0.5);
    EXPECT_LT(s.rate(2, 0), 0.5);  // tried, rejected
    EXPECT_EQ(s.rate(1, 1), 0.5);  // never tried
    // Nothing accepted at depth 1: all three tried and rejected.
    spec::record_outcome(d, Tokens{5, 6, 7}, 2, s);
    EXPECT_EQ(s.n_recorded(), 3);
    EXPECT_LT(s.rate(1, 1), 0.5);
    EXPECT_LT(s.rate(1, 2), 0.5);
}

class DraftTreeEngine : public ::testing::Test {
  protected:
    static constexpr int64_t kGen = 24;

    void SetUp() override {
        dm_ = test::default_model();
        if (dm_ == nullptr) GTEST_SKIP() << "default model not fetched";
        const char* texts[] = {
            "Repeat this code exactly:\ndef add(a, b):\n    return a + b\n\ndef add(a, b):\n",
            "<|im_start|>user\nWrite a haiku about rain.<|im_end|>\n<|im_start|>assistant\n",
            "Once upon a time, in a small village,",
        };
        for (const char* t : texts) prompts_.push_back(dm_->tokenizer.encode(t, false, true));
        std::mt19937 rng(20261205);
        std::uniform_int_distribution<int32_t> tok(200, 40000);
        for (int i = 0; i < 3; ++i) {
            Tokens p(static_cast<size_t>(6 + 13 * i));
            for (auto& t : p) t = tok(rng);
            prompts_.push_back(p);
        }
    }

    Request request(const Tokens& prompt) const {
        Request r;
        r.prompt = prompt;
        r.max_tokens = kGen;
        r.ignore_eos = true;
        r.sampling.temperature = 0;
        return r;
    }

    // The same model drafting from a Q4 KV cache: close to the target, not equal, so its chain
    // is sometimes wrong where a sibling is right. Every depth as wide as allowed (min gain 0).
    std::unique_ptr<spec::DraftModelDrafter> tree_drafter() const {
        return std::make_unique<spec::DraftModelDrafter>(
            dm_->model, dm_->tokenizer, dm_->backend, dm_->model, dm_->tokenizer, 4096,
            KvFormat::Q4, spec::DraftTreeOptions{3, 0.0});
    }

    // `while_alive` runs after the requests finish, before the engine (and the drafter it owns)
    // is destroyed: the place to read a drafter's state.
    std::vector<Tokens> run(const EngineConfig& c, const std::vector<Request>& reqs,
                            std::unique_ptr<spec::Drafter> d, EngineStats* stats,
                            const std::function<void()>& while_alive = {}) const {
        Engine e(dm_->model, dm_->tokenizer, dm_->backend, c, std::move(d));
        std::vector<Tokens> out = test::run_requests(e, reqs);
        EXPECT_EQ(e.num_used_kv_blocks(), 0);
        if (stats != nullptr) *stats = e.stats();
        if (while_alive) while_alive();
        return out;
    }

    static EngineConfig tree_config() {
        EngineConfig c;
        c.n_ctx = 512;
        c.speculation.max_tokens = 9;  // nodes
        c.speculation.max_depth = 4;
        return c;
    }

    test::DefaultModel* dm_ = nullptr;
    std::vector<Tokens> prompts_;
};

TEST_F(DraftTreeEngine, GreedyIdenticalAloneAndBatched) {
    EngineConfig plain;
    plain.n_ctx = 512;
    std::vector<Request> reqs;
    std::vector<Tokens> reference;
    for (const Tokens& p : prompts_) {
        reqs.push_back(request(p));
        reference.push_back(run(plain, {reqs.back()}, nullptr, nullptr)[0]);
    }
    int64_t sibling_accepted = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
        auto d = tree_drafter();
        const spec::DraftModelDrafter* drafter = d.get();
        EngineStats st;
        const auto count = [&] { sibling_accepted += drafter->tree_sizer().n_sibling_accepted(); };
        EXPECT_EQ(run(tree_config(), {reqs[i]}, std::move(d), &st, count)[0], reference[i])
            << "prompt " << i;
        EXPECT_GT(st.spec_verify_steps, 0);
        // Trees: two nodes or more per step on average (a chain after a rejection has one).
        EXPECT_GT(st.spec_draft_tokens, 2 * st.spec_verify_steps) << "prompt " << i;
    }
    // The accepted branch went through a sibling at least once: its KV rows were moved.
    EXPECT_GT(sibling_accepted, 0);
    // Batched, with chunked prefill beside the verification steps.
    EngineConfig c = tree_config();
    c.scheduler.max_batched_tokens = 48;
    auto d = tree_drafter();
    const spec::DraftModelDrafter* drafter = d.get();
    int64_t recorded = 0;
    EXPECT_EQ(
        run(c, reqs, std::move(d), nullptr, [&] { recorded = drafter->tree_sizer().n_recorded(); }),
        reference);
    EXPECT_GT(recorded, 0);
}

TEST_F(DraftTreeEngine, SampledRequestsRunThroughTrees) {
    std::vector<Request> reqs;
    for (size_t i = 0; i < prompts_.size(); ++i) {
        reqs.push_back(request(prompts_[i]));
        reqs.back().sampling.temperature = 0.8f;
        reqs.back().sampling.top_k = i % 2 ? 40 : 0;
        reqs.back().sampling.seed = i;
    }
    EngineStats st;
    const std::vector<Tokens> got = run(tree_config(), reqs, tree_drafter(), &st);
    for (const Tokens& t : got) EXPECT_EQ(t.size(), size_t{kGen});
    EXPECT_GT(st.spec_accepted_tokens, 0);
}

}  // namespace
}  // namespace vela
