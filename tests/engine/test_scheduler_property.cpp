// Scheduler properties on thousands of random schedules, run through the real Engine on a tiny
// random model (tests/model/data/tiny_llama.gguf: 2 layers, width 64, vocabulary 128, so a
// forward costs microseconds). A schedule draws arrivals over time, prompts with shared
// prefixes (prefix-cache hits) or repeated whole, max_tokens, groups of n samples, chat turns
// that retain and reuse KV, aborts, and an engine from a pool that barely fits the largest
// sequence to an ample one, block sizes 1..16, token budgets from 1, max_running, Recompute or
// Swap preemption. Properties: while the engine has work, every step computes tokens, and all
// requests end within a bounded number of steps; every request not aborted ends with exactly
// max_tokens tokens, equal to those of the same prompts run without memory pressure (greedy),
// an aborted one with a prefix of them; no KV block is used once everything has ended.
// The same on a tiny Gemma 3 (tests/model/data/tiny_gemma3.gguf: two local layers with an
// 8-key window) whose local layers keep only their window (the BlockManager's local group),
// in local pools from one sequence's window to ample, against --swa-full's output.
//
// Seed: VELA_TEST_SEED (printed; schedule i uses seed + i, so VELA_TEST_SEED=<its seed> with
// VELA_SCHEDULE_COUNT=1 replays one); count: VELA_SCHEDULE_COUNT.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "../common/byte_vocabulary.h"
#include "backend/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace vela {
namespace {

using Tokens = std::vector<int32_t>;
using Rng = std::mt19937_64;

constexpr uint64_t kDefaultSeed = 20260419;
constexpr int64_t kDefaultSchedules = 2000;

uint64_t env_or(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

int64_t uniform(Rng& rng, int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

bool chance(Rng& rng, double p) {
    return std::bernoulli_distribution(p)(rng);
}

// The model and a byte-level tokenizer (the tiny GGUF has none; ids only need to decode).
struct TinyModel {
    explicit TinyModel(const char* file)
        : model(std::string(VELA_SOURCE_DIR) + "/tests/model/data/" + file),
          tokenizer(test::byte_vocabulary()),
          pool(1),
          backend(pool) {}


    Model model;
    Tokenizer tokenizer;
    ThreadPool pool;
    CpuBackend backend;
};

TinyModel& tiny() {
    static TinyModel m("tiny_llama.gguf");
    return m;
}

TinyModel& tiny_gemma() {
    static TinyModel m("tiny_gemma3.gguf");
    return m;
}

// One request of a schedule.
struct Spec {
    Tokens prompt;
    int64_t max_tokens = 1;
    int64_t n = 1;          // samples (add_request_group)
    int64_t arrival = 0;    // engine step at which it is submitted
    int64_t abort_at = -1;  // step at which one of its samples is aborted, -1 never
    bool retain = false;    // keeps its KV for a later chat turn
    int64_t turn_of = -1;   // a chat turn continuing spec turn_of (reuses its KV if retained)
};

struct Schedule {
    EngineConfig config;
    std::vector<Spec> specs;
    TinyModel* model = &tiny();
};

Tokens random_tokens(Rng& rng, int64_t n, int32_t vocab) {
    Tokens t(static_cast<size_t>(n));
    for (auto& x : t) x = static_cast<int32_t>(uniform(rng, 0, vocab - 1));
    return t;
}

std::vector<Spec> random_specs(Rng& rng, int64_t block_size, int32_t vocab) {
    std::vector<Tokens> prefixes(static_cast<size_t>(uniform(rng, 0, 3)));
    for (Tokens& p : prefixes) p = random_tokens(rng, uniform(rng, 1, 3 * block_size + 3), vocab);
    std::vector<Spec> specs(static_cast<size_t>(uniform(rng, 1, 10)));
    for (size_t i = 0; i < specs.size(); ++i) {
        Spec& s = specs[i];
        s.arrival = chance(rng, 0.3) ? 0 : uniform(rng, 0, 24);
        const bool turn = i > 0 && chance(rng, 0.15);
        if (turn) {
            s.turn_of = uniform(rng, 0, static_cast<int64_t>(i) - 1);
            s.prompt = specs[static_cast<size_t>(s.turn_of)].prompt;
            s.arrival = std::max(s.arrival, specs[static_cast<size_t>(s.turn_of)].arrival);
        } else if (i > 0 && chance(rng, 0.1)) {
            s.prompt = specs[static_cast<size_t>(uniform(rng, 0, static_cast<int64_t>(i) - 1))]
                           .prompt;  // the same prompt again: a whole-prompt hit
        } else if (!prefixes.empty() && chance(rng, 0.6)) {
            s.prompt = prefixes[static_cast<size_t>(
                uniform(rng, 0, static_cast<int64_t>(prefixes.size()) - 1))];
        }
        const Tokens tail = random_tokens(rng, uniform(rng, s.prompt.empty() ? 1 : 0, 30), vocab);
        s.prompt.insert(s.prompt.end(), tail.begin(), tail.end());
        if (s.prompt.empty()) s.prompt = random_tokens(rng, 1, vocab);
        s.max_tokens = uniform(rng, 1, 20);
        s.n = !turn && chance(rng, 0.15) ? uniform(rng, 2, 3) : 1;
        s.retain = s.n == 1 && chance(rng, 0.2);
        if (chance(rng, 0.12)) s.abort_at = s.arrival + uniform(rng, 0, 30);
    }
    return specs;
}

int64_t blocks_for(int64_t tokens, int64_t block_size) {
    return (tokens + block_size - 1) / block_size;
}

Schedule random_schedule(Rng& rng, int32_t vocab) {
    static constexpr int64_t kBlockSizes[] = {1, 2, 3, 4, 5, 8, 16};
    Schedule s;
    EngineConfig& c = s.config;
    c.n_ctx = 1024;  // above any prompt + max_tokens drawn (chat turns grow their prompts)
    c.kv_block_size = kBlockSizes[uniform(rng, 0, std::size(kBlockSizes) - 1)];
    c.prefix_caching = chance(rng, 0.8);
    c.preemption = chance(rng, 0.5) ? Preemption::Recompute : Preemption::Swap;
    c.scheduler.max_batched_tokens = chance(rng, 0.2) ? uniform(rng, 1, 4) : uniform(rng, 5, 96);
    c.scheduler.max_running = chance(rng, 0.2) ? 64 : uniform(rng, 1, 8);
    s.specs = random_specs(rng, c.kv_block_size, vocab);
    // From the least that still holds the largest sequence whole (no max_tokens clamping) to
    // room for every sample of every request at once.
    int64_t least = 1, all = 0;
    for (const Spec& spec : s.specs) {
        const int64_t b =
            blocks_for(static_cast<int64_t>(spec.prompt.size()) + spec.max_tokens, c.kv_block_size);
        least = std::max(least, b);
        all += spec.n * b;
    }
    const double r = std::uniform_real_distribution<double>(0, 1)(rng);
    c.kv_blocks = r < 0.35   ? least + uniform(rng, 0, 2)
                  : r < 0.85 ? uniform(rng, least, std::max(least, all))
                             : all + least;
    return s;
}

std::string describe(const Schedule& s) {
    const EngineConfig& c = s.config;
    std::ostringstream o;
    o << "block " << c.kv_block_size << ", blocks " << c.kv_blocks << ", budget "
      << c.scheduler.max_batched_tokens << ", max_running " << c.scheduler.max_running << ", "
      << (c.preemption == Preemption::Swap ? "swap" : "recompute")
      << (c.prefix_caching ? ", prefix cache" : "")
      << (c.kv_local_blocks > 0 ? ", local blocks " + std::to_string(c.kv_local_blocks) : "")
      << "; requests (prompt/max/n/arrival/abort):";
    for (const Spec& spec : s.specs) {
        o << " " << spec.prompt.size() << "/" << spec.max_tokens << "/" << spec.n << "/"
          << spec.arrival << "/" << spec.abort_at << (spec.retain ? "/retain" : "")
          << (spec.turn_of >= 0 ? "/turn of " + std::to_string(spec.turn_of) : "");
    }
    return o.str();
}

// What one sample produced.
struct Sample {
    Tokens tokens;
    FinishReason finish = FinishReason::None;
};

struct Outcome {
    std::vector<std::vector<Sample>> samples;  // per spec, per sample
    int64_t steps = 0;                         // step() calls
    EngineStats stats;
};

Request request_of(const Spec& s) {
    Request r;
    r.prompt = s.prompt;
    r.max_tokens = s.max_tokens;
    r.ignore_eos = true;
    r.sampling.temperature = 0;
    r.retain_kv = s.retain;
    return r;
}

// Runs the schedule: submissions at their arrival steps, aborts at theirs, steps until all has
// ended (fails the test, without hanging, if that takes more than max_steps).
class ScheduleRun {
  public:
    ScheduleRun(const Schedule& s, int64_t max_steps)
        : s_(s),
          max_steps_(max_steps),
          engine_(s.model->model, s.model->tokenizer, s.model->backend, s.config) {
        out_.samples.resize(s.specs.size());
        ids_.resize(s.specs.size());
    }

    Outcome run() {
        for (int64_t t = 0; !all_ended(); ++t) {
            submit_arrivals(t);
            abort_due(t);
            if (!engine_.has_work()) continue;  // idle until the next arrival
            const int64_t before = engine_.stats().steps;
            for (const StepOutput& o : engine_.step()) record(o);
            ++out_.steps;
            // The engine's guarantee: a step with work left computes something.
            const bool progressed = !engine_.has_work() || engine_.stats().steps > before;
            EXPECT_TRUE(progressed) << "a step with work did nothing: " << gauges();
            EXPECT_LE(engine_.stats().running, s_.config.scheduler.max_running);
            if (!progressed || out_.steps > max_steps_) {
                ADD_FAILURE() << "no end after " << out_.steps << " steps: " << gauges();
                break;
            }
        }
        for (size_t i = 0; i < s_.specs.size(); ++i) {
            if (s_.specs[i].retain && !ids_[i].empty()) engine_.release_retained(ids_[i][0]);
        }
        out_.stats = engine_.stats();
        EXPECT_EQ(engine_.num_used_kv_blocks(), 0) << "KV blocks leaked";
        if (engine_.kv_blocks().has_local_group()) {
            EXPECT_EQ(out_.stats.kv_local_blocks_used, 0) << "local KV blocks leaked";
        }
        EXPECT_EQ(engine_.kv_blocks().num_sequences(), 0);
        EXPECT_EQ(out_.stats.kv_blocks_swapped, 0);
        return std::move(out_);
    }

  private:
    bool all_ended() const {
        if (engine_.has_work()) return false;
        return std::ranges::all_of(ids_, [](const auto& ids) { return !ids.empty(); });
    }

    void submit_arrivals(int64_t t) {
        for (size_t i = 0; i < s_.specs.size(); ++i) {
            const Spec& spec = s_.specs[i];
            if (spec.arrival > t || !ids_[i].empty()) continue;
            Request r = request_of(spec);
            // A chat turn names its predecessor's KV; the engine uses it if still retained.
            if (spec.turn_of >= 0 && !ids_[static_cast<size_t>(spec.turn_of)].empty()) {
                r.reuse_kv_of = ids_[static_cast<size_t>(spec.turn_of)][0];
            }
            ids_[i] = engine_.add_request_group(r, spec.n);
            out_.samples[i].resize(ids_[i].size());
            for (size_t k = 0; k < ids_[i].size(); ++k) where_[ids_[i][k]] = {i, k};
        }
    }

    void abort_due(int64_t t) {
        for (size_t i = 0; i < s_.specs.size(); ++i) {
            if (s_.specs[i].abort_at == t && !ids_[i].empty()) {
                engine_.abort(ids_[i][static_cast<size_t>(t) % ids_[i].size()]);
            }
        }
    }

    void record(const StepOutput& o) {
        const auto [i, k] = where_.at(o.request_id);
        Sample& sample = out_.samples[i][k];
        EXPECT_EQ(sample.finish, FinishReason::None) << "output after the finish";
        auto& got = sample.tokens;
        got.insert(got.end(), o.tokens.begin(), o.tokens.end());
        if (o.finish != FinishReason::None) sample.finish = o.finish;
    }

    std::string gauges() const {
        const EngineStats st = engine_.stats();
        std::ostringstream o;
        o << "running " << st.running << ", waiting " << st.waiting << ", KV blocks used "
          << st.kv_blocks_used << "/" << st.kv_blocks_total << ", preemptions " << st.preemptions
          << ", generated " << st.generated_tokens;
        return o.str();
    }

    const Schedule& s_;
    int64_t max_steps_;
    Engine engine_;
    Outcome out_;
    std::vector<std::vector<int64_t>> ids_;  // per spec, once submitted
    std::map<int64_t, std::pair<size_t, size_t>> where_;
};

// The same prompts without any pressure: all at once into an ample pool with a large budget, no
// prefix cache, no aborts, no KV reuse. Greedy output per spec.
std::vector<Tokens> unpressured(const Schedule& s) {
    Schedule ref;
    ref.model = s.model;
    ref.config.swa_full = true;  // every token's KV in every layer
    ref.config.n_ctx = s.config.n_ctx;
    ref.config.kv_block_size = 16;
    ref.config.prefix_caching = false;
    ref.config.scheduler.max_batched_tokens = 4096;
    ref.config.scheduler.max_running = 64;
    int64_t blocks = 0;
    for (const Spec& spec : s.specs) {
        Spec r;
        r.prompt = spec.prompt;
        r.max_tokens = spec.max_tokens;
        ref.specs.push_back(r);
        blocks += blocks_for(static_cast<int64_t>(spec.prompt.size()) + spec.max_tokens, 16);
    }
    ref.config.kv_blocks = blocks;
    const Outcome o = ScheduleRun(ref, 1000).run();
    EXPECT_EQ(o.stats.preemptions, 0);
    std::vector<Tokens> out;
    for (const auto& samples : o.samples) out.push_back(samples.at(0).tokens);
    return out;
}

// Steps a schedule may take: every step computes at least one token, and preemption makes a
// sequence compute its tokens again a bounded number of times.
int64_t step_bound(const Schedule& s) {
    int64_t tokens = 0, last_arrival = 0;
    for (const Spec& spec : s.specs) {
        tokens += spec.n * (static_cast<int64_t>(spec.prompt.size()) + spec.max_tokens);
        last_arrival = std::max({last_arrival, spec.arrival, spec.abort_at});
    }
    return last_arrival + 10 * tokens + 100;
}

void check_outputs(const Schedule& s, const Outcome& got, const std::vector<Tokens>& want) {
    for (size_t i = 0; i < s.specs.size(); ++i) {
        const Spec& spec = s.specs[i];
        ASSERT_EQ(static_cast<int64_t>(got.samples[i].size()), spec.n);
        ASSERT_EQ(static_cast<int64_t>(want[i].size()), spec.max_tokens);
        for (size_t k = 0; k < got.samples[i].size(); ++k) {
            const Sample& g = got.samples[i][k];
            SCOPED_TRACE("request " + std::to_string(i) + " sample " + std::to_string(k));
            if (g.finish == FinishReason::Abort) {
                EXPECT_NE(spec.abort_at, -1);
                ASSERT_LE(g.tokens.size(), want[i].size());
                EXPECT_TRUE(std::equal(g.tokens.begin(), g.tokens.end(), want[i].begin()));
            } else {
                EXPECT_EQ(g.finish, FinishReason::Length);
                EXPECT_EQ(g.tokens, want[i]);
            }
        }
    }
}

TEST(SchedulerProperty, PreemptedSequencesDoNotHoldTheQueue) {
    // Issue 19 as reported (3 distinct ~180-token prompts, max_tokens 96, 32 blocks of 16,
    // recompute, prefix cache): once two sequences had been preempted, both came back to take
    // their own cached prompt blocks while waiting, and the head could never fit again.
    Rng rng(19);
    Schedule s;
    s.config.n_ctx = 512;
    s.config.kv_blocks = 32;
    s.config.preemption = Preemption::Recompute;
    for (int64_t i = 0; i < 3; ++i) {
        Spec spec;
        spec.prompt = random_tokens(rng, 175 + 5 * i, 128);
        spec.max_tokens = 96;
        s.specs.push_back(spec);
    }
    const std::vector<Tokens> want = unpressured(s);
    const Outcome got = ScheduleRun(s, step_bound(s)).run();
    check_outputs(s, got, want);
    EXPECT_GT(got.stats.preemptions, 0);
}

// What the schedules of a run exercised, summed.
struct Totals {
    int64_t steps = 0, preemptions = 0, swap_ins = 0, prefix_hits = 0;
    int64_t with_local = 0, local_preemptions = 0;  // schedules with a local group, theirs
};

// Runs `count` random schedules (made by `make` from a seeded Rng) and checks each against
// its unpressured outputs; the first failing schedule is the report.
template <class Make>
Totals run_schedules(int64_t count, Make make) {
    const uint64_t seed = env_or("VELA_TEST_SEED", kDefaultSeed);
    std::printf("scheduler property: %lld schedules from seed %llu (VELA_TEST_SEED, "
                "VELA_SCHEDULE_COUNT)\n",
                static_cast<long long>(count), static_cast<unsigned long long>(seed));
    Totals sum;
    for (int64_t i = 0; i < count; ++i) {
        Rng rng(seed + static_cast<uint64_t>(i));
        const Schedule s = make(rng);
        SCOPED_TRACE("schedule " + std::to_string(i) +
                     " (VELA_TEST_SEED=" + std::to_string(seed + static_cast<uint64_t>(i)) +
                     " VELA_SCHEDULE_COUNT=1): " + describe(s));
        Outcome got;
        try {
            const std::vector<Tokens> want = unpressured(s);
            got = ScheduleRun(s, step_bound(s)).run();
            check_outputs(s, got, want);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "exception: " << e.what();
        }
        if (::testing::Test::HasFailure()) return sum;
        sum.steps += got.steps;
        sum.preemptions += got.stats.preemptions;
        sum.swap_ins += got.stats.swap_ins;
        sum.prefix_hits += got.stats.prefix_hit_tokens;
        if (got.stats.kv_local_blocks_total > 0) {
            ++sum.with_local;
            sum.local_preemptions += got.stats.preemptions;
        }
    }
    std::printf("scheduler property: %lld steps, %lld preemptions (%lld swap-ins), %lld prefix "
                "hit tokens; %lld schedules with a local group, %lld preemptions there\n",
                static_cast<long long>(sum.steps), static_cast<long long>(sum.preemptions),
                static_cast<long long>(sum.swap_ins), static_cast<long long>(sum.prefix_hits),
                static_cast<long long>(sum.with_local),
                static_cast<long long>(sum.local_preemptions));
    return sum;
}

TEST(SchedulerProperty, RandomSchedulesProgressAndMatchUnpressuredOutputs) {
    const auto count = static_cast<int64_t>(env_or("VELA_SCHEDULE_COUNT", kDefaultSchedules));
    const int32_t vocab = static_cast<int32_t>(tiny().model.hparams().n_vocab);
    const Totals sum = run_schedules(count, [&](Rng& rng) { return random_schedule(rng, vocab); });
    // The schedules must actually exercise what they are meant to.
    if (count >= 100) {
        EXPECT_GT(sum.preemptions, count / 10);
        EXPECT_GT(sum.swap_ins, 0);
        EXPECT_GT(sum.prefix_hits, 0);
    }
}

TEST(SchedulerProperty, LocalGroupSchedulesMatchEveryTokensKvOutputs) {
    const auto count =
        static_cast<int64_t>(env_or("VELA_SCHEDULE_COUNT", kDefaultSchedules / 4));
    const int32_t vocab = static_cast<int32_t>(tiny_gemma().model.hparams().n_vocab);
    const int64_t window = tiny_gemma().model.hparams().sliding_window;
    ASSERT_GT(window, 0);
    const Totals sum = run_schedules(count, [&](Rng& rng) {
        Schedule s = random_schedule(rng, vocab);
        s.model = &tiny_gemma();
        EngineConfig& c = s.config;
        c.preemption = Preemption::Recompute;  // swap needs every token's KV
        // Mostly from one sequence's window and step (appends that do not fit preempt) up.
        const int64_t one =
            local_blocks_per_sequence(window, c.scheduler.max_batched_tokens, c.kv_block_size);
        c.kv_local_blocks = chance(rng, 0.8) ? one + uniform(rng, 0, 3) : 0;
        return s;
    });
    if (count >= 100) {
        EXPECT_GT(sum.with_local, count / 3);
        EXPECT_GT(sum.local_preemptions, count / 10);
    }
}

}  // namespace
}  // namespace vela
