#pragma once
// The hand-off point between one HTTP reply and the engine thread: the engine thread accepts or
// rejects the reply's requests and pushes their increments; after each change it calls the
// notify callback (the reply's Waker), and the reply takes what arrived without blocking. One
// channel carries all n choices of one HTTP request.
#include <chrono>
#include <cstdint>
#include <functional>
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
    enum class State { Pending, Accepted, Rejected };

    // `notify` is called from the engine thread, outside the channel's lock, after every
    // change; it must be cheap and thread-safe.
    RequestChannel(size_t n_choices, std::function<void()> notify)
        : n_choices_(n_choices), notify_(std::move(notify)) {}

    // Engine thread.
    void accept();
    void reject(std::string message);
    void push(size_t choice, StepOutput output);

    // Reply side: moves the events that arrived into `out` and returns the state; `done` is set
    // once every choice has finished and all their events have been handed out.
    State take(std::vector<ChannelEvent>& out, bool& done);
    std::string rejection() const;

    size_t n_choices() const { return n_choices_; }
    Clock::time_point created() const { return created_; }

  private:
    const size_t n_choices_;
    const std::function<void()> notify_;
    const Clock::time_point created_ = Clock::now();
    mutable std::mutex mu_;
    State state_ = State::Pending;
    std::string rejection_;
    std::vector<ChannelEvent> events_;
    size_t n_finished_ = 0;
};

}  // namespace vela::server
