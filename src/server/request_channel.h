#pragma once
// The hand-off point between one HTTP handler thread and the engine thread: the engine thread
// accepts or rejects the handler's requests and pushes their increments; the handler waits on a
// condition variable. One channel carries all n choices of one HTTP request.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "engine/request.h"

namespace vela::server {

using Clock = std::chrono::steady_clock;

struct ChannelEvent {
    size_t choice = 0;  // index among the request's n choices
    StepOutput output;
};

class RequestChannel {
  public:
    enum class Poll { Events, Done, Rejected, Timeout };

    explicit RequestChannel(size_t n_choices) : n_choices_(n_choices) {}

    // Engine thread.
    void accept();
    void reject(std::string message);
    void push(size_t choice, StepOutput output);

    // Handler thread: waits until events arrive, everything finished, the engine rejected the
    // request, or `deadline` passed; moves pending events into `out`. Done is returned only
    // after every event has been handed out.
    Poll wait(std::vector<ChannelEvent>& out, Clock::time_point deadline);
    // Handler thread: blocks until the engine thread accepted or rejected the request.
    bool wait_accepted(Clock::time_point deadline);
    bool rejected() const;
    std::string rejection() const;

    size_t n_choices() const { return n_choices_; }
    Clock::time_point created() const { return created_; }

  private:
    enum class State { Pending, Accepted, Rejected };

    const size_t n_choices_;
    const Clock::time_point created_ = Clock::now();
    mutable std::mutex mu_;
    std::condition_variable cv_;
    State state_ = State::Pending;
    std::string rejection_;
    std::vector<ChannelEvent> events_;
    size_t n_finished_ = 0;
};

}  // namespace vela::server
