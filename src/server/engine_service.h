#pragma once
// Owns the Engine on one background thread. The engine is not thread-safe, so nothing else
// touches it: handler threads submit requests and cancellations through a locked queue and read
// their increments from a RequestChannel; /metrics reads a stats snapshot taken after each step.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "server/metrics.h"
#include "server/request_channel.h"

namespace vela::server {

struct ServiceConfig {
    int64_t max_running = 64;  // the engine's scheduler limit, for the queue arithmetic
    int64_t max_queue = 256;   // requests allowed to wait beyond max_running
};

// submit() refusals: the HTTP layer turns them into 429 and 503.
struct QueueFull : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct ShuttingDown : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class EngineService {
  public:
    EngineService(Engine& engine, ServiceConfig config, ServerMetrics& metrics);
    ~EngineService();  // stops the thread, aborting whatever is still running

    // Queues the requests (the n choices of one HTTP request) for the engine thread; `notify`
    // is called (engine thread) whenever their channel changes. Throws QueueFull or
    // ShuttingDown; engine-side validation errors arrive as a channel rejection.
    std::shared_ptr<RequestChannel> submit(std::vector<Request> requests,
                                           std::function<void()> notify);
    // Aborts the channel's requests at the next step (client gone, timeout); idempotent.
    void cancel(const std::shared_ptr<RequestChannel>& channel);

    // Graceful shutdown: refuse new work, let in-flight requests finish for up to `grace`, then
    // abort the rest and wait until the engine is idle.
    void drain(std::chrono::milliseconds grace);

    // False from the start of drain(): new requests are refused, /health reports draining.
    bool accepting() const;
    // Why the engine can run no more steps (a tensor-parallel rank stopped: GroupFailed), or
    // "" while it can. From then on requests are refused with it and /health reports it.
    std::string failure() const;
    EngineStats stats() const;
    int64_t outstanding() const { return outstanding_.load(); }

  private:
    struct Pending {
        std::shared_ptr<RequestChannel> channel;
        std::vector<Request> requests;
    };
    struct Live {
        std::shared_ptr<RequestChannel> channel;
        size_t choice = 0;
        bool has_token = false;
        Clock::time_point last_token;
    };

    void run();
    void admit(Pending& p);
    void apply_cancellations(const std::vector<std::shared_ptr<RequestChannel>>& cancelled);
    void deliver(const std::vector<StepOutput>& outputs);
    void abort_all();

    Engine& engine_;
    const ServiceConfig config_;
    ServerMetrics& metrics_;

    mutable std::mutex mu_;  // guards everything below until the thread
    std::condition_variable cv_;
    std::vector<Pending> pending_;
    std::vector<std::shared_ptr<RequestChannel>> cancelled_;
    bool accepting_ = true;
    std::string failure_;
    bool abort_everything_ = false;
    bool stop_ = false;
    EngineStats stats_;
    std::condition_variable idle_cv_;

    std::atomic<int64_t> outstanding_{0};  // engine requests submitted and not finished
    std::map<int64_t, Live> live_;         // engine thread only
    std::thread thread_;
};

}  // namespace vela::server
