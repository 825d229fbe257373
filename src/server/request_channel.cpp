#include "server/request_channel.h"

namespace vela::server {

void RequestChannel::accept() {
    {
        std::lock_guard lock(mu_);
        state_ = State::Accepted;
    }
    if (notify_) notify_();
}

void RequestChannel::reject(std::string message) {
    {
        std::lock_guard lock(mu_);
        state_ = State::Rejected;
        rejection_ = std::move(message);
    }
    if (notify_) notify_();
}

void RequestChannel::push(size_t choice, StepOutput output) {
    {
        std::lock_guard lock(mu_);
        if (output.finish != FinishReason::None) ++n_finished_;
        events_.push_back({choice, std::move(output)});
    }
    if (notify_) notify_();
}

RequestChannel::State RequestChannel::take(std::vector<ChannelEvent>& out, bool& done) {
    std::lock_guard lock(mu_);
    for (ChannelEvent& e : events_) out.push_back(std::move(e));
    events_.clear();
    done = state_ == State::Accepted && n_finished_ == n_choices_;
    return state_;
}

std::string RequestChannel::rejection() const {
    std::lock_guard lock(mu_);
    return rejection_;
}

}  // namespace vela::server
