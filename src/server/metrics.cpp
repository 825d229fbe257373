#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace vela::server {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double seconds) {
    const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), seconds);
    ++counts_[static_cast<size_t>(it - bounds_.begin())];
    sum_ += seconds;
    ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    int64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
        cumulative += counts_[i];
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
    }
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
    out += fmt::format("{}_sum {}\n{}_count {}\n", name, sum_, name, count_);
}

ServerMetrics::ServerMetrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

void ServerMetrics::count_response(int status) {
    std::lock_guard lock(mu_);
    ++responses_by_status_[status];
}

void ServerMetrics::count_request_tokens(int64_t prompt_tokens, int64_t completion_tokens) {
    std::lock_guard lock(mu_);
    prompt_tokens_ += prompt_tokens;
    completion_tokens_ += completion_tokens;
}

void ServerMetrics::observe_ttft(double seconds) {
    std::lock_guard lock(mu_);
    ttft_.observe(seconds);
}

void ServerMetrics::observe_itl(double seconds) {
    std::lock_guard lock(mu_);
    itl_.observe(seconds);
}

namespace {
void metric(std::string& out, const char* name, const char* type, const char* help, double value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
}
}  // namespace

std::string ServerMetrics::render(const EngineStats& e) const {
    std::lock_guard lock(mu_);
    std::string out;
    out += "# HELP vela_requests_total HTTP responses by status code\n";
    out += "# TYPE vela_requests_total counter\n";
    for (const auto& [status, n] : responses_by_status_) {
        out += fmt::format("vela_requests_total{{status=\"{}\"}} {}\n", status, n);
    }
    metric(out, "vela_prompt_tokens_total", "counter", "prompt tokens of accepted requests",
           static_cast<double>(prompt_tokens_));
    metric(out, "vela_generation_tokens_total", "counter", "tokens generated for clients",
           static_cast<double>(completion_tokens_));
    metric(out, "vela_prefill_tokens_total", "counter",
           "tokens fed as prefill by the engine (recomputation included)",
           static_cast<double>(e.prompt_tokens));
    metric(out, "vela_preemptions_total", "counter", "sequences preempted for lack of KV blocks",
           static_cast<double>(e.preemptions));
    metric(out, "vela_requests_running", "gauge", "sequences in the running batch",
           static_cast<double>(e.running));
    metric(out, "vela_requests_waiting", "gauge", "sequences waiting for admission",
           static_cast<double>(e.waiting));
    metric(out, "vela_kv_blocks_used", "gauge", "KV blocks referenced by live sequences",
           static_cast<double>(e.kv_blocks_used));
    metric(out, "vela_kv_blocks_total", "gauge", "KV blocks in the pool",
           static_cast<double>(e.kv_blocks_total));
    metric(out, "vela_kv_blocks_cached", "gauge", "KV blocks held by the prefix cache",
           static_cast<double>(e.kv_blocks_cached));
    metric(out, "vela_kv_bytes_per_token", "gauge",
           "KV cache bytes of one token (K and V, all layers, scales included)",
           static_cast<double>(e.kv_bytes_per_token));
    metric(out, "vela_kv_evicted_tokens_total", "counter",
           "tokens dropped from sequences' KV by the eviction policy (--kv-evict)",
           static_cast<double>(e.kv_evicted_tokens));
    metric(out, "vela_prefix_cache_hit_rate", "gauge",
           "prompt tokens found in the prefix cache / tokens looked up", e.prefix_hit_rate());
    metric(out, "vela_spec_draft_tokens_total", "counter",
           "draft tokens verified (speculative decoding)",
           static_cast<double>(e.spec_draft_tokens));
    metric(out, "vela_spec_accepted_tokens_total", "counter", "draft tokens accepted",
           static_cast<double>(e.spec_accepted_tokens));
    metric(out, "vela_spec_verify_steps_total", "counter", "decode steps that verified a draft",
           static_cast<double>(e.spec_verify_steps));
    metric(out, "vela_spec_acceptance_rate", "gauge", "accepted / drafted tokens",
           e.spec_acceptance_rate());
    metric(out, "vela_spec_mean_accepted_length", "gauge",
           "tokens a verifying step emits on average (accepted drafts + 1)",
           e.spec_mean_accepted_length());
    ttft_.render(out, "vela_time_to_first_token_seconds", "time from arrival to the first token");
    itl_.render(out, "vela_inter_token_latency_seconds", "time between consecutive tokens");
    return out;
}

}  // namespace vela::server
