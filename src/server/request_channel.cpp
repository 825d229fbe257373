#include "server/request_channel.h"

namespace vela::server {

void RequestChannel::accept() {
    {
        std::lock_guard lock(mu_);
        state_ = State::Accepted;
    }
    cv_.notify_all();
}

void RequestChannel::reject(std::string message) {
    {
        std::lock_guard lock(mu_);
        state_ = State::Rejected;
        rejection_ = std::move(message);
    }
    cv_.notify_all();
}

void RequestChannel::push(size_t choice, StepOutput output) {
    {
        std::lock_guard lock(mu_);
        if (output.finish != FinishReason::None) ++n_finished_;
        events_.push_back({choice, std::move(output)});
    }
    cv_.notify_all();
}

RequestChannel::Poll RequestChannel::wait(std::vector<ChannelEvent>& out,
                                          Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    const bool woke = cv_.wait_until(lock, deadline, [&] {
        return state_ == State::Rejected || !events_.empty() || n_finished_ == n_choices_;
    });
    if (state_ == State::Rejected) return Poll::Rejected;
    if (!events_.empty()) {
        for (ChannelEvent& e : events_) out.push_back(std::move(e));
        events_.clear();
        return Poll::Events;
    }
    if (n_finished_ == n_choices_) return Poll::Done;
    return woke ? Poll::Events : Poll::Timeout;
}

bool RequestChannel::wait_accepted(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return state_ != State::Pending; });
}

bool RequestChannel::rejected() const {
    std::lock_guard lock(mu_);
    return state_ == State::Rejected;
}

std::string RequestChannel::rejection() const {
    std::lock_guard lock(mu_);
    return rejection_;
}

}  // namespace vela::server
