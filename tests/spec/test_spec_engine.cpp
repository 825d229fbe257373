// Speculative decoding in the engine on the default model: greedy output is identical with
// speculation on and off, for every drafter (n-gram, a random drafter whose tokens are nearly
// always rejected), alone and in a batch with chunked prefill and prefix caching, under
// preemption (Recompute, Swap), with stop strings, EOS, max_tokens and logprobs; the KV block
// count returns to 0 and rejected drafts never reach the prefix cache.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "../common/default_model.h"
#include "../common/oracle_tree_drafter.h"
#include "../common/test_seed.h"
#include "core/error.h"
#include "engine/engine.h"
#include "spec/draft_model_drafter.h"
#include "spec/ngram_drafter.h"

namespace vela {
namespace {

using Tokens = std::vector<int32_t>;
using test::OracleTreeDrafter;
constexpr int64_t kGen = 24;

// Proposes random tokens (a deliberately bad drafter) and remembers what it proposed.
class RandomDrafter final : public spec::Drafter {
  public:
    explicit RandomDrafter(uint32_t seed, int32_t n_vocab) : rng_(seed), n_vocab_(n_vocab) {}
    const char* name() const override { return "random"; }
    void propose(std::span<const spec::DraftRequest> requests,
                 std::vector<spec::Draft>& drafts) override {
        drafts.resize(requests.size());
        for (size_t i = 0; i < requests.size(); ++i) {
            drafts[i].clear();
            for (int32_t k = 0; k < requests[i].max_tokens; ++k)
                drafts[i].tokens.push_back(static_cast<int32_t>(rng_() % n_vocab_));
            Tokens seen(requests[i].tokens.begin(), requests[i].tokens.end());
            seen.insert(seen.end(), drafts[i].tokens.begin(), drafts[i].tokens.end());
            proposals.push_back({static_cast<int64_t>(requests[i].tokens.size()), seen});
        }
    }
    struct Proposal {
        int64_t n_before;  // tokens of the sequence before the draft
        Tokens tokens;     // those tokens, then the draft
    };
    std::vector<Proposal> proposals;

  private:
    std::mt19937 rng_;
    int32_t n_vocab_;
};

class SpecEngine : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        test::DefaultModel* m = test::default_model();
        if (m == nullptr) return;
        dm_ = m;
        // Input-grounded prompts (the model copies from them: n-gram drafts get accepted) and
        // random-token ones.
        const char* texts[] = {
            "Repeat this code exactly:\ndef add(a, b):\n    return a + b\n\ndef add(a, b):\n",
            "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the",
            "<|im_start|>user\nCopy: int main() { return 0; }<|im_end|>\n<|im_start|>assistant\n",
            "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
        };
        for (const char* t : texts) prompts_.push_back(m->tokenizer.encode(t, false, true));
        std::mt19937 rng(20261205);
        std::uniform_int_distribution<int32_t> tok(200, 40000);
        for (int i = 0; i < 4; ++i) {
            Tokens p(static_cast<size_t>(5 + 17 * i));
            for (auto& t : p) t = tok(rng);
            prompts_.push_back(p);
        }
    }
    void SetUp() override {
        if (dm_ == nullptr) GTEST_SKIP() << "default model not fetched";
    }

    static Request greedy(const Tokens& prompt) {
        Request r;
        r.prompt = prompt;
        r.max_tokens = kGen;
        r.ignore_eos = true;
        r.sampling.temperature = 0;
        return r;
    }

    static std::unique_ptr<Engine> engine(const EngineConfig& c,
                                          std::unique_ptr<spec::Drafter> d = nullptr) {
        return std::make_unique<Engine>(dm_->model, dm_->tokenizer, dm_->backend, c, std::move(d));
    }

    // Runs the requests together to completion; the outputs (tokens, text, logprobs) by request.
    static std::vector<std::vector<StepOutput>> run(Engine& e, const std::vector<Request>& reqs) {
        std::map<int64_t, size_t> index;
        for (size_t i = 0; i < reqs.size(); ++i) index[e.add_request(reqs[i])] = i;
        std::vector<std::vector<StepOutput>> out(reqs.size());
        while (e.has_work()) {
            for (StepOutput& o : e.step()) out[index.at(o.request_id)].push_back(std::move(o));
        }
        return out;
    }

    static std::vector<Tokens> tokens_of(const std::vector<std::vector<StepOutput>>& outs) {
        std::vector<Tokens> t(outs.size());
        for (size_t i = 0; i < outs.size(); ++i)
            for (const StepOutput& o : outs[i])
                t[i].insert(t[i].end(), o.tokens.begin(), o.tokens.end());
        return t;
    }

    static std::vector<Request> greedy_requests() {
        std::vector<Request> reqs;
        for (const Tokens& p : prompts_) reqs.push_back(greedy(p));
        return reqs;
    }

    // Each request alone, without speculation or prefix cache: the reference.
    static const std::vector<Tokens>& reference() {
        static std::vector<Tokens> out;
        if (out.empty()) {
            EngineConfig c;
            c.prefix_caching = false;
            c.n_ctx = 256;
            for (const Request& r : greedy_requests())
                out.push_back(tokens_of(run(*engine(c), {r}))[0]);
        }
        return out;
    }

    static void expect_no_leak(const Engine& e) {
        EXPECT_EQ(e.num_used_kv_blocks(), 0);
        EXPECT_EQ(e.stats().kv_blocks_swapped, 0);
        EXPECT_EQ(e.kv_blocks().num_sequences(), 0);
    }

    static std::unique_ptr<spec::Drafter> drafter(const std::string& name) {
        if (name == "ngram") return std::make_unique<spec::NgramDrafter>();
        // Up to 4 continuations merged into a token tree (rows moved after verification).
        if (name == "ngram-tree") return std::make_unique<spec::NgramDrafter>(1, 3, 4);
        if (name == "draft") {
            // SmolLM2 drafting for itself: a perfect drafter under greedy decoding.
            return std::make_unique<spec::DraftModelDrafter>(dm_->model, dm_->tokenizer,
                                                             dm_->backend, dm_->model,
                                                             dm_->tokenizer, 4096, KvFormat::F16);
        }
        return std::make_unique<RandomDrafter>(test::fresh_seed(),
                                               static_cast<int32_t>(dm_->model.hparams().n_vocab));
    }

    static inline test::DefaultModel* dm_ = nullptr;
    static inline std::vector<Tokens> prompts_;
};

const char* const kDrafters[] = {"ngram", "ngram-tree", "random", "draft"};

TEST_F(SpecEngine, GreedyIdenticalAlone) {
    for (const char* name : kDrafters) {
        EngineConfig c;
        c.n_ctx = 256;
        const std::vector<Request> reqs = greedy_requests();
        int64_t accepted = 0;
        for (size_t i = 0; i < reqs.size(); ++i) {
            auto e = engine(c, drafter(name));
            EXPECT_EQ(tokens_of(run(*e, {reqs[i]}))[0], reference()[i]) << name << " prompt " << i;
            EXPECT_GT(e->stats().spec_verify_steps, 0) << name << " prompt " << i;
            accepted += e->stats().spec_accepted_tokens;
            if (std::string(name) == "draft") {
                // The target drafting for itself: its KV in step, every draft is accepted.
                EXPECT_EQ(e->stats().spec_accepted_tokens, e->stats().spec_draft_tokens) << i;
            }
            expect_no_leak(*e);
        }
        if (std::string(name).starts_with("ngram")) {
            EXPECT_GT(accepted, 0);
        }
    }
}

TEST_F(SpecEngine, TokenTreeBranchesKeepGreedyOutput) {
    EngineConfig c;
    c.n_ctx = 256;
    c.speculation.max_tokens = 8;
    c.scheduler.max_batched_tokens = 48;
    std::vector<Tokens> ps(prompts_.begin(), prompts_.end());
    auto e = engine(c, std::make_unique<OracleTreeDrafter>(
                           ps, reference(), static_cast<int32_t>(dm_->model.hparams().n_vocab)));
    EXPECT_EQ(tokens_of(run(*e, greedy_requests())), reference());
    const EngineStats st = e->stats();
    // Half the nodes are right and on the accepted path.
    EXPECT_GT(st.spec_accepted_tokens, st.spec_draft_tokens / 3);
    expect_no_leak(*e);
}

// Self-speculation: the model drafts for itself over sinks + a recent window of its own KV.
// A window covering the whole context makes the draft the target itself: every draft token is
// accepted. A small one drafts worse; greedy outputs stay the reference alone, batched with
// chunked prefill and prefix cache, and under preemption.
TEST_F(SpecEngine, SelfSpeculationKeepsGreedyOutput) {
    EngineConfig c;
    c.n_ctx = 256;
    c.speculation.self_draft = true;
    {
        // By default short contexts do not self-draft: a draft would cost a full forward.
        auto e = engine(c);
        EXPECT_EQ(tokens_of(run(*e, {greedy(prompts_[0])}))[0], reference()[0]);
        EXPECT_EQ(e->stats().spec_draft_tokens, 0);
    }
    c.speculation.self_max_cost = 1.0;  // draft whatever the cost
    c.speculation.self_window = 256;
    for (const Request& r : greedy_requests()) {
        auto e = engine(c);
        EXPECT_EQ(tokens_of(run(*e, {r}))[0], tokens_of(run(*engine(EngineConfig{}), {r}))[0]);
        EXPECT_GT(e->stats().spec_draft_tokens, 0);
        EXPECT_EQ(e->stats().spec_accepted_tokens, e->stats().spec_draft_tokens);
        expect_no_leak(*e);
    }
    c.speculation.self_sinks = 2;
    c.speculation.self_window = 6;
    c.speculation.max_batch = 64;
    c.kv_block_size = 4;
    c.scheduler.max_batched_tokens = 40;
    for (Preemption mode : {Preemption::Recompute, Preemption::Swap}) {
        for (int64_t blocks : {int64_t{40}}) {  // 160 tokens: two or three sequences at a time
            EngineConfig t = c;
            t.preemption = mode;
            t.kv_blocks = blocks;
            auto e = engine(t);
            std::vector<Request> reqs = greedy_requests();
            const size_t n = reqs.size();
            for (size_t i = 0; i < n; ++i) reqs.push_back(reqs[i]);  // prefix-cache hits
            const std::vector<Tokens> got = tokens_of(run(*e, reqs));
            for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i], reference()[i % n]) << i;
            const EngineStats st = e->stats();
            EXPECT_GT(st.spec_accepted_tokens, 0);
            EXPECT_LT(st.spec_accepted_tokens, st.spec_draft_tokens);
            if (blocks > 0) {
                EXPECT_GT(st.preemptions, 0);
            }
            expect_no_leak(*e);
        }
    }
    EngineConfig bad = c;
    bad.speculation.self_window = 0;
    EXPECT_THROW(engine(bad), InvalidArgument);
    EXPECT_THROW(engine(c, drafter("ngram")), InvalidArgument);
}

// A request's own limit (llama-server's speculative.n_max): 0 turns speculation off for it, 1
// drafts at most one token a step; the output stays the reference either way. Out-of-range
// limits are refused.
TEST_F(SpecEngine, PerRequestDraftLimit) {
    EngineConfig c;
    c.n_ctx = 256;
    c.speculation.max_tokens = 5;
    for (int32_t limit : {0, 1}) {
        auto e = engine(c, drafter("ngram"));
        Request r = greedy(prompts_[0]);  // repetitive code: n-grams draft at every step
        r.spec_max_tokens = limit;
        EXPECT_EQ(tokens_of(run(*e, {r}))[0], reference()[0]) << "limit " << limit;
        const EngineStats st = e->stats();
        if (limit == 0) {
            EXPECT_EQ(st.spec_draft_tokens, 0);
        } else {
            EXPECT_GT(st.spec_draft_tokens, 0);
            EXPECT_LE(st.spec_draft_tokens, st.spec_verify_steps) << "more than one draft a step";
        }
        expect_no_leak(*e);
    }
    auto e = engine(c, drafter("ngram"));
    Request bad = greedy(prompts_[0]);
    for (int32_t limit : {-2, 65}) {
        bad.spec_max_tokens = limit;
        EXPECT_THROW(e->add_request(bad), InvalidArgument) << limit;
    }
}

TEST_F(SpecEngine, GreedyIdenticalInABatchWithChunkedPrefillAndPrefixCache) {
    for (const char* name : kDrafters) {
        EngineConfig c;
        c.n_ctx = 1024;
        c.kv_block_size = 4;
        c.scheduler.max_batched_tokens = 40;  // chunked prefill beside verification steps
        c.speculation.max_batch = 64;         // draft in a batch of 16 too
        std::vector<Request> reqs = greedy_requests();
        // Every prompt twice: the second copy finds the first one's blocks in the prefix cache.
        const size_t n = reqs.size();
        for (size_t i = 0; i < n; ++i) reqs.push_back(reqs[i]);
        auto e = engine(c, drafter(name));
        const std::vector<Tokens> got = tokens_of(run(*e, reqs));
        for (size_t i = 0; i < reqs.size(); ++i)
            EXPECT_EQ(got[i], reference()[i % n]) << name << " " << i;
        const EngineStats s = e->stats();
        EXPECT_GT(s.spec_draft_tokens, 0) << name;
        EXPECT_GT(s.prefix_hit_tokens, 0) << name;
        expect_no_leak(*e);
    }
}

TEST_F(SpecEngine, GreedyIdenticalUnderPreemption) {
    for (const char* name : kDrafters) {
        for (Preemption mode : {Preemption::Recompute, Preemption::Swap}) {
            EngineConfig c;
            c.preemption = mode;
            c.kv_block_size = 4;
            c.kv_blocks = 40;  // 160 tokens: two or three sequences at a time
            c.scheduler.max_batched_tokens = 64;
            auto e = engine(c, drafter(name));
            const std::vector<Tokens> got = tokens_of(run(*e, greedy_requests()));
            EXPECT_EQ(got, reference())
                << name << (mode == Preemption::Swap ? " swap" : " recompute");
            EXPECT_GT(e->stats().preemptions, 0);
            EXPECT_GT(e->stats().spec_draft_tokens, 0);
            expect_no_leak(*e);
        }
    }
}

TEST_F(SpecEngine, RejectedDraftsNeverReachThePrefixCache) {
    EngineConfig c;
    c.n_ctx = 1024;
    c.kv_block_size = 2;  // small blocks: most drafts fill some
    auto owned = std::make_unique<RandomDrafter>(
        test::fresh_seed(), static_cast<int32_t>(dm_->model.hparams().n_vocab));
    RandomDrafter* random = owned.get();
    auto e = engine(c, std::move(owned));
    const std::vector<Request> reqs = greedy_requests();
    const std::vector<Tokens> got = tokens_of(run(*e, reqs));
    EXPECT_EQ(got, reference());
    expect_no_leak(*e);
    ASSERT_FALSE(random->proposals.empty());
    // A sequence's final tokens, to tell accepted draft tokens from rejected ones.
    std::map<Tokens, Tokens> final_of;
    for (size_t i = 0; i < reqs.size(); ++i) {
        Tokens all = reqs[i].prompt;
        all.insert(all.end(), got[i].begin(), got[i].end());
        final_of[reqs[i].prompt] = all;
    }
    int64_t rejected = 0;
    for (const auto& p : random->proposals) {
        const Tokens* full = nullptr;
        for (const auto& [prompt, all] : final_of) {
            const bool extends = p.tokens.size() >= prompt.size() &&
                                 std::equal(prompt.begin(), prompt.end(), p.tokens.begin());
            if (extends) full = &all;
        }
        ASSERT_NE(full, nullptr);
        int64_t agree = 0;  // tokens of the proposal that are the sequence's own
        while (agree < static_cast<int64_t>(std::min(full->size(), p.tokens.size())) &&
               (*full)[agree] == p.tokens[agree])
            ++agree;
        if (agree == static_cast<int64_t>(p.tokens.size())) continue;
        ++rejected;
        EXPECT_LE(e->kv_blocks().match_cached_prefix(p.tokens).n_tokens, agree);
    }
    EXPECT_GT(rejected, 0);
    // And the cached KV is right: the same requests again, served from the cache.
    EXPECT_EQ(tokens_of(run(*e, reqs)), reference());
    EXPECT_GT(e->stats().prefix_hit_tokens, 0);
}

TEST_F(SpecEngine, StopsWhereDecodingWithoutSpeculationStops) {
    // Stop strings, EOS and max_tokens inside accepted runs, and logprobs per token: the whole
    // stream (tokens, text, finish reason, logprobs) equals the one without speculation.
    std::vector<Request> reqs;
    for (size_t i = 0; i < prompts_.size(); ++i) {
        Request r = greedy(prompts_[i]);
        r.ignore_eos = i % 2 == 1;
        r.max_tokens = 5 + static_cast<int64_t>(i) * 3;
        r.logprobs = i % 3 == 0 ? 2 : -1;
        if (i == 0) r.stop = {"b\n"};
        if (i == 1) r.stop = {"lazy"};
        if (i == 3) r.stop = {"9, 2"};
        reqs.push_back(r);
    }
    EngineConfig c;
    c.n_ctx = 512;
    auto plain = engine(c);
    const auto want = run(*plain, reqs);
    for (const char* name : kDrafters) {
        auto e = engine(c, drafter(name));
        const auto got = run(*e, reqs);
        for (size_t i = 0; i < reqs.size(); ++i) {
            std::string want_text, got_text;
            FinishReason want_finish = FinishReason::None, got_finish = FinishReason::None;
            std::vector<std::vector<TokenChoice>> want_lp, got_lp;
            for (const StepOutput& o : want[i]) {
                want_text += o.text;
                if (o.finish != FinishReason::None) want_finish = o.finish;
                want_lp.insert(want_lp.end(), o.logprobs.begin(), o.logprobs.end());
            }
            for (const StepOutput& o : got[i]) {
                got_text += o.text;
                if (o.finish != FinishReason::None) got_finish = o.finish;
                got_lp.insert(got_lp.end(), o.logprobs.begin(), o.logprobs.end());
            }
            EXPECT_EQ(got_text, want_text) << name << " " << i;
            EXPECT_EQ(got_finish, want_finish) << name << " " << i;
            ASSERT_EQ(got_lp.size(), want_lp.size()) << name << " " << i;
            for (size_t t = 0; t < got_lp.size(); ++t) {
                ASSERT_EQ(got_lp[t].size(), want_lp[t].size());
                for (size_t a = 0; a < got_lp[t].size(); ++a) {
                    EXPECT_EQ(got_lp[t][a].token, want_lp[t][a].token);
                    EXPECT_EQ(got_lp[t][a].logprob, want_lp[t][a].logprob);
                }
            }
        }
        EXPECT_EQ(tokens_of(got), tokens_of(want)) << name;
        expect_no_leak(*e);
    }
}

TEST_F(SpecEngine, SampledRequestsRunWithEveryDrafter) {
    // The distribution itself is tested in test_verifier_distribution.cpp; here the sampled
    // path runs end to end on the real model (draft distributions q from the draft model).
    for (const char* name : kDrafters) {
        EngineConfig c;
        c.n_ctx = 512;
        auto e = engine(c, drafter(name));
        std::vector<Request> reqs = greedy_requests();
        for (size_t i = 0; i < reqs.size(); ++i) {
            reqs[i].sampling.temperature = 0.8f;
            reqs[i].sampling.top_k = i % 2 ? 40 : 0;
            reqs[i].sampling.seed = i;
        }
        const std::vector<Tokens> got = tokens_of(run(*e, reqs));
        for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].size(), size_t{kGen}) << name;
        EXPECT_GT(e->stats().spec_draft_tokens, 0) << name;
        expect_no_leak(*e);
    }
}

}  // namespace
}  // namespace vela

namespace vela {
namespace {

TEST(DraftModelDrafter, RefusesAnotherVocabulary) {
    test::DefaultModel* m = test::default_model();
    const std::string qwen =
        std::string(VELA_SOURCE_DIR) + "/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
    if (m == nullptr || !std::filesystem::exists(qwen)) GTEST_SKIP() << "models not fetched";
    Model draft(qwen);
    const Tokenizer tok = Tokenizer::from_gguf(draft.file());
    try {
        spec::DraftModelDrafter d(draft, tok, m->backend, m->model, m->tokenizer, 64,
                                  KvFormat::F16);
        FAIL() << "a Qwen draft model was accepted for SmolLM2";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace vela
