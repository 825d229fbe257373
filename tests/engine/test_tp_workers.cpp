// Tensor parallelism over processes (engine/tp_workers.h, model/shm_group.h): rank 0 forks the
// other ranks, hands them every KV storage, block operation and forward, and their collectives
// meet in shared memory.
//   - Logits equal those of the same ranks as threads (ThreadGroup), bit for bit: the same shards,
//     the same sums in the same order; ThreadGroup's own accuracy is test_tensor_parallel's.
//   - The engine's greedy tokens, with chunked prefill, prefix caching, n > 1 and preemption on
//     a small KV pool, equal one sequence at a time through the ranks as threads.
//   - A worker that dies or fails, before or inside a collective, stops the group: rank 0's
//     forward throws GroupFailed naming it, never hangs, and so does every later one.
// Its own binary: fork() wants a process with one thread.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/forward_driver.h"
#include "engine/tp_sockets.h"
#include "engine/tp_workers.h"
#include "model/model.h"
#include "model/shm_group.h"
#include "model/tensor_parallel.h"
#include "tokenizer/tokenizer.h"
#include "../model/thread_ranks.h"

namespace vela {
namespace {

const std::string kData = std::string(VELA_SOURCE_DIR) + "/tests/model/data/";
const std::string kSmol = std::string(VELA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::vector<int32_t> some_tokens(int n, int64_t vocab) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>(1 + (i * 7919) % (vocab - 1)));
    return t;
}

// What a worker does once its share and backend exist: serve_tp_steps, or a failure.
using WorkerSteps = std::function<int(Model&, CpuBackend&, TpChannel&)>;

int serve(Model& model, CpuBackend& backend, TpChannel& channel) {
    serve_tp_steps(model, backend, channel);
    return 0;
}

// Ranks 1.. as processes, each with its share of `path` on one CPU thread, running `steps`.
struct ProcessGroup {
    ProcessGroup(const std::string& path, int size, const WorkerSteps& steps = serve)
        : shm(size),
          workers(
              size,
              [&](int r, TpChannel& channel) {
                  Model model(path, &shm.rank(r));
                  ThreadPool pool(1);
                  CpuBackend backend(pool);
                  return steps(model, backend, channel);
              },
              &shm),
          model(path, &shm.rank(0)),
          backend(pool) {
        model.set_step_broadcast(&workers);
    }
    ShmGroup shm;
    TpWorkers workers;
    Model model;
    ThreadPool pool{1};
    CpuBackend backend;
};

// The reference: the same ranks as threads, every logits row of `tokens`, in one forward.
std::vector<float> thread_ranks(const std::string& path, int size,
                                const std::vector<int32_t>& tokens) {
    return test::thread_ranks(path, size, tokens, 64)[0];
}

struct Case {
    std::string path;
    int size;
};

class TpWorkersLogits : public ::testing::TestWithParam<Case> {};

TEST_P(TpWorkersLogits, EqualRanksAsThreadsBitForBit) {
    const Case& c = GetParam();
    if (!std::filesystem::exists(c.path)) GTEST_SKIP() << c.path << " missing (scripts/setup.sh)";
    std::vector<float> processes;
    int64_t vocab = 0;
    std::vector<int32_t> tokens;
    {
        ProcessGroup g(c.path, c.size);
        vocab = g.model.hparams().n_vocab;
        tokens = some_tokens(40, vocab);
        ForwardDriver driver(g.model, g.backend, 64, 64);
        processes = driver.evaluate(tokens, /*all_logits=*/true);
        // A second pass over the same storage: cleared blocks, the same rows.
        EXPECT_EQ(driver.evaluate(tokens, true), processes);
    }
    const std::vector<float> threads = thread_ranks(c.path, c.size, tokens);
    ASSERT_EQ(processes.size(), tokens.size() * static_cast<size_t>(vocab));
    EXPECT_TRUE(processes == threads) << c.path << " TP " << c.size;
}

INSTANTIATE_TEST_SUITE_P(Models, TpWorkersLogits,
                         ::testing::Values(Case{kData + "tiny_llama.gguf", 2},
                                           Case{kData + "tiny_llama.gguf", 4},
                                           Case{kData + "tiny_qwen2.gguf", 2},
                                           Case{kData + "tiny_gemma3.gguf", 2},
                                           Case{kData + "tiny_llama_mqa_f16_linear.gguf", 2},
                                           Case{kSmol, 3}));

// Greedy tokens of `prompt`, one forward a token, through `size` ranks as threads.
std::vector<int32_t> greedy_threads(const std::string& path, int size,
                                    const std::vector<int32_t>& prompt, int n) {
    ThreadGroup group(size);
    std::vector<std::vector<int32_t>> out(static_cast<size_t>(size));
    std::vector<std::thread> threads;
    for (int r = 0; r < size; ++r) {
        threads.emplace_back([&, r] {
            Model model(path, &group.rank(r));
            ThreadPool pool(1);
            CpuBackend backend(pool);
            ForwardDriver driver(model, backend, 512, 512);
            driver.reset();
            std::vector<float> logits = driver.extend(prompt);
            for (int i = 0; i < n; ++i) {
                const auto best = static_cast<int32_t>(
                    std::max_element(logits.begin(), logits.end()) - logits.begin());
                out[static_cast<size_t>(r)].push_back(best);
                if (i + 1 < n) logits = driver.extend({best});
            }
        });
    }
    for (std::thread& t : threads) t.join();
    return out[0];
}

class TpWorkersEngine : public ::testing::TestWithParam<Preemption> {};

TEST_P(TpWorkersEngine, GreedyEqualsOneSequenceAtATime) {
    if (!std::filesystem::exists(kSmol)) GTEST_SKIP() << kSmol << " missing (scripts/setup.sh)";
    constexpr int kSize = 3, kTokens = 12;
    std::vector<std::vector<int32_t>> prompts;
    const std::vector<int32_t> shared = some_tokens(40, 49152);
    for (int i = 0; i < 5; ++i) {
        std::vector<int32_t> p = shared;  // a common prefix: the prefix cache shares its blocks
        for (int j = 0; j <= i * 7; ++j) p.push_back(100 + 37 * i + j);
        prompts.push_back(p);
    }
    std::map<int64_t, size_t> prompt_of;
    std::map<int64_t, std::vector<int32_t>> got;
    EngineStats stats;
    {
        ProcessGroup g(kSmol, kSize);
        const Tokenizer tokenizer = Tokenizer::from_gguf(g.model.file());
        EngineConfig config;
        config.n_ctx = 128;
        config.kv_blocks = 16;  // 256 tokens for 6 sequences of ~90: preemption
        config.scheduler.max_batched_tokens = 32;  // chunked prefill
        config.preemption = GetParam();
        Engine engine(g.model, tokenizer, g.backend, config);
        for (size_t i = 0; i < prompts.size(); ++i) {
            Request r;
            r.prompt = prompts[i];
            r.max_tokens = kTokens;
            r.ignore_eos = true;
            r.sampling.temperature = 0;
            if (i == 0) {
                for (int64_t id : engine.add_request_group(r, 2)) prompt_of[id] = i;  // n = 2
            } else {
                prompt_of[engine.add_request(r)] = i;
            }
        }
        while (engine.has_work()) {
            for (const StepOutput& o : engine.step()) {
                auto& t = got[o.request_id];
                t.insert(t.end(), o.tokens.begin(), o.tokens.end());
            }
        }
        stats = engine.stats();
    }
    std::printf(
        "engine at TP %d over processes: %lld preemptions (%lld swapped out), %lld prompt "
        "tokens from the prefix cache\n",
        kSize, static_cast<long long>(stats.preemptions), static_cast<long long>(stats.swap_outs),
        static_cast<long long>(stats.prefix_hit_tokens));
    EXPECT_GT(stats.preemptions, 0);
    if (GetParam() == Preemption::Swap) {
        EXPECT_GT(stats.swap_outs, 0);
    }
    EXPECT_GT(stats.prefix_hit_tokens, 0);
    std::vector<std::vector<int32_t>> expected;
    for (const auto& p : prompts) expected.push_back(greedy_threads(kSmol, kSize, p, kTokens));
    ASSERT_EQ(got.size(), prompts.size() + 1);
    for (const auto& [id, tokens] : got) EXPECT_EQ(tokens, expected[prompt_of[id]]) << id;
}

INSTANTIATE_TEST_SUITE_P(Preemption, TpWorkersEngine,
                         ::testing::Values(Preemption::Recompute, Preemption::Swap));

// A worker whose forward ends its process (`die`) or throws, at its first forward: rank 0 is
// then inside that forward's first all-reduce, waiting for it.
int fail_at_first_forward(bool die, TpChannel& channel) {
    TpChannel::Message m;
    while (channel.receive(m) && m.kind != TpChannel::Kind::Forward) {
    }
    if (die) raise(SIGKILL);
    fail("injected failure");
}

struct FailingGroup : ProcessGroup {
    explicit FailingGroup(bool die)
        : ProcessGroup(kData + "tiny_llama.gguf", 2,
                       [die](Model&, CpuBackend&, TpChannel& channel) {
                           return fail_at_first_forward(die, channel);
                       }) {}
};

void expect_stops(FailingGroup& g, const std::string& reason) {
    ForwardDriver driver(g.model, g.backend, 64, 64);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        driver.evaluate(some_tokens(8, 32), false);
        ADD_FAILURE() << "the forward went on without its worker";
    } catch (const GroupFailed& e) {
        EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
    // And every later step, before it sends anything.
    EXPECT_THROW(driver.evaluate(some_tokens(8, 32), false), GroupFailed);
}

TEST(TpWorkers, WorkerKilledInsideACollectiveStopsTheGroup) {
    FailingGroup g(/*die=*/true);
    expect_stops(g, "worker rank 1 killed by signal 9");
}

TEST(TpWorkers, WorkerErrorInsideACollectiveStopsTheGroup) {
    FailingGroup g(/*die=*/false);
    expect_stops(g, "rank 1: injected failure");
}

TEST(TpWorkers, WorkerKilledBetweenStepsStopsTheGroup) {
    ProcessGroup g(kData + "tiny_llama.gguf", 2);
    ForwardDriver driver(g.model, g.backend, 64, 64);
    driver.evaluate(some_tokens(8, 32), false);
    ASSERT_EQ(kill(g.workers.pid(1), SIGKILL), 0);
    try {
        driver.evaluate(some_tokens(8, 32), false);
        ADD_FAILURE() << "the forward went on without its worker";
    } catch (const GroupFailed& e) {
        EXPECT_NE(std::string(e.what()).find("worker rank 1"), std::string::npos) << e.what();
    }
}

// A loopback address with a port nobody listens on (bound, then released).
std::string free_master() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

// Ranks started apart (as mpirun starts them), meeting over TCP: the same logits, bit for bit,
// as the ranks as threads. Here the "launcher" is fork, and rank 0 is this process.
TEST(TpSockets, RanksThatMeetOverTcpEqualRanksAsThreads) {
    const std::string path = kSmol;
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " missing (scripts/setup.sh)";
    constexpr int kSize = 3;
    const std::string master = free_master();
    std::vector<pid_t> pids;
    for (int r = 1; r < kSize; ++r) {
        const pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int code = 1;
            try {
                TpSockets s = tp_rendezvous(r, kSize, master, 20);
                SocketGroup group(r, kSize, s.data);
                TpChannel channel(s.control[0]);
                Model model(path, &group);
                ThreadPool pool(1);
                CpuBackend backend(pool);
                serve_tp_steps(model, backend, channel);
                code = 0;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "rank %d: %s\n", r, e.what());
            }
            _exit(code);
        }
        pids.push_back(pid);
    }
    std::vector<float> logits;
    std::vector<int32_t> tokens;
    {
        TpSockets s = tp_rendezvous(0, kSize, master, 20);
        std::vector<std::unique_ptr<TpChannel>> channels;
        for (int fd : s.control) channels.push_back(std::make_unique<TpChannel>(fd));
        TpWorkers workers(std::move(channels));
        SocketGroup group(0, kSize, s.data);
        Model model(path, &group);
        model.set_step_broadcast(&workers);
        ThreadPool pool(1);
        CpuBackend backend(pool);
        tokens = some_tokens(40, model.hparams().n_vocab);
        ForwardDriver driver(model, backend, 64, 64);
        logits = driver.evaluate(tokens, /*all_logits=*/true);
    }  // the channels close: the workers' loops end
    for (pid_t pid : pids) {
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    EXPECT_TRUE(logits == thread_ranks(path, kSize, tokens));
}

TEST(TpSockets, RendezvousRefusesAWrongGroupSizeAndTimesOut) {
    const std::string master = free_master();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {  // a rank of a group of 3 at a rank 0 of a group of 2
        try {
            tp_rendezvous(1, 3, master, 2);
        } catch (...) {
        }
        _exit(0);
    }
    EXPECT_THROW(tp_rendezvous(0, 2, master, 10), Error);
    waitpid(pid, nullptr, 0);
    // Nobody comes: a clear error after the timeout, not a hang.
    try {
        tp_rendezvous(0, 2, free_master(), 0.3);
        ADD_FAILURE() << "no rank joined, yet the rendezvous returned";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("1 of 2 ranks joined"), std::string::npos)
            << e.what();
    }
}

TEST(TpWorkers, RefusesToForkBesideOtherThreads) {
    std::atomic<bool> done{false};
    std::thread other([&] {
        while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    ShmGroup shm(2);
    EXPECT_THROW(TpWorkers(2, [](int, TpChannel&) { return 0; }, &shm), Error);
    done = true;
    other.join();
}

TEST(TpWorkers, RefusesEvictionByAttentionScores) {
    ProcessGroup g(kData + "tiny_llama.gguf", 2);
    KvLayout layout = g.model.kv_layout(16, 4);
    layout.attention_scores = true;
    EXPECT_THROW(g.model.make_kv_storage(g.backend, layout, KvFormat::F16), InvalidArgument);
}

}  // namespace
}  // namespace vela
