#include "server/engine_service.h"

#include "core/error.h"
#include "core/log.h"
#include "model/tensor_parallel.h"

namespace vela::server {

EngineService::EngineService(Engine& engine, ServiceConfig config, ServerMetrics& metrics)
    : engine_(engine), config_(config), metrics_(metrics) {
    stats_ = engine_.stats();
    thread_ = std::thread([this] { run(); });
}

EngineService::~EngineService() {
    {
        std::lock_guard lock(mu_);
        accepting_ = false;
        abort_everything_ = true;
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

std::shared_ptr<RequestChannel> EngineService::submit(std::vector<Request> requests,
                                                      std::function<void()> notify) {
    const auto n = static_cast<int64_t>(requests.size());
    auto channel = std::make_shared<RequestChannel>(requests.size(), std::move(notify));
    {
        std::lock_guard lock(mu_);
        if (!accepting_) {
            throw ShuttingDown(failure_.empty() ? "the server is shutting down"
                                                : "the engine stopped: " + failure_);
        }
        // Checked under the lock so that concurrent submissions cannot overshoot together.
        if (outstanding_.load() + n > config_.max_running + config_.max_queue) {
            throw QueueFull("the request queue is full; retry later");
        }
        outstanding_ += n;
        pending_.push_back({channel, std::move(requests)});
    }
    cv_.notify_all();
    return channel;
}

void EngineService::cancel(const std::shared_ptr<RequestChannel>& channel) {
    {
        std::lock_guard lock(mu_);
        cancelled_.push_back(channel);
    }
    cv_.notify_all();
}

void EngineService::drain(std::chrono::milliseconds grace) {
    std::unique_lock lock(mu_);
    accepting_ = false;
    idle_cv_.wait_for(lock, grace, [&] { return outstanding_.load() == 0; });
    abort_everything_ = true;
    cv_.notify_all();
    idle_cv_.wait(lock, [&] { return outstanding_.load() == 0; });
}

bool EngineService::accepting() const {
    std::lock_guard lock(mu_);
    return accepting_;
}

std::string EngineService::failure() const {
    std::lock_guard lock(mu_);
    return failure_;
}

EngineStats EngineService::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

void EngineService::run() {
    for (;;) {
        std::vector<Pending> pending;
        std::vector<std::shared_ptr<RequestChannel>> cancelled;
        bool abort_everything = false;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] {
                return stop_ || !pending_.empty() || !cancelled_.empty() || abort_everything_ ||
                       engine_.has_work();
            });
            if (stop_ && !engine_.has_work() && pending_.empty()) return;
            pending.swap(pending_);
            cancelled.swap(cancelled_);
            abort_everything = abort_everything_;
            abort_everything_ = false;  // one shot: later arrivals are refused anyway
        }
        for (Pending& p : pending) admit(p);
        apply_cancellations(cancelled);
        if (abort_everything) abort_all();
        if (engine_.has_work()) {
            try {
                deliver(engine_.step());
            } catch (const std::exception& e) {
                // A failed step leaves sequences in an unknown state: end them all loudly.
                log(LogLevel::Error, "engine step failed: {}", e.what());
                if (dynamic_cast<const GroupFailed*>(&e)) {  // no later step can run
                    std::lock_guard lock(mu_);
                    accepting_ = false;
                    failure_ = e.what();
                }
                abort_all();
            }
        }
        {
            std::lock_guard lock(mu_);
            stats_ = engine_.stats();
        }
        idle_cv_.notify_all();
    }
}

void EngineService::admit(Pending& p) {
    std::vector<int64_t> ids;
    try {
        for (Request& r : p.requests) ids.push_back(engine_.add_request(std::move(r)));
    } catch (const std::exception& e) {
        for (int64_t id : ids) engine_.abort(id);  // their finish outputs are not delivered
        outstanding_ -= static_cast<int64_t>(p.requests.size());
        p.channel->reject(e.what());
        return;
    }
    for (size_t i = 0; i < ids.size(); ++i) live_[ids[i]] = Live{p.channel, i, false, {}};
    p.channel->accept();
}

void EngineService::apply_cancellations(
    const std::vector<std::shared_ptr<RequestChannel>>& cancelled) {
    if (cancelled.empty()) return;
    for (const auto& [id, live] : live_) {
        for (const auto& c : cancelled) {
            if (live.channel == c) engine_.abort(id);
        }
    }
}

void EngineService::abort_all() {
    for (const auto& [id, live] : live_) engine_.abort(id);
    // Sequences the engine no longer knows (a failed step) would never report a finish.
    if (!engine_.has_work()) {
        for (auto& [id, live] : live_) {
            StepOutput aborted;
            aborted.request_id = id;
            aborted.finish = FinishReason::Abort;
            live.channel->push(live.choice, std::move(aborted));
        }
        outstanding_ -= static_cast<int64_t>(live_.size());
        live_.clear();
    }
}

void EngineService::deliver(const std::vector<StepOutput>& outputs) {
    const Clock::time_point now = Clock::now();
    for (const StepOutput& out : outputs) {
        auto it = live_.find(out.request_id);
        if (it == live_.end()) continue;  // aborted before its channel was accepted
        Live& live = it->second;
        if (!out.tokens.empty()) {
            const Clock::time_point since =
                live.has_token ? live.last_token : live.channel->created();
            const double dt = std::chrono::duration<double>(now - since).count();
            // Tokens of one increment arrived together: the gap is shared among them.
            size_t n_itl = out.tokens.size();
            if (!live.has_token) {
                metrics_.observe_ttft(dt);
                --n_itl;
            }
            for (size_t i = 0; i < n_itl; ++i) {
                metrics_.observe_itl(dt / static_cast<double>(out.tokens.size()));
            }
            live.has_token = true;
            live.last_token = now;
        }
        live.channel->push(live.choice, out);
        if (out.finish != FinishReason::None) {
            live_.erase(it);
            --outstanding_;
        }
    }
}

}  // namespace vela::server
