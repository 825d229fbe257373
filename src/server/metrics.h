#pragma once
// Server-side counters and latency histograms, rendered with the engine's gauges in the
// Prometheus text format. Thread-safe: handlers count responses, the engine thread observes
// latencies, /metrics reads everything.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace vela::server {

// Cumulative histogram with fixed upper bounds (seconds), as Prometheus expects.
class Histogram {
  public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double seconds);
    void render(std::string& out, const std::string& name, const std::string& help) const;

  private:
    std::vector<double> bounds_;
    std::vector<int64_t> counts_;  // one per bound plus +Inf, not cumulative
    double sum_ = 0;
    int64_t count_ = 0;
};

class ServerMetrics {
  public:
    ServerMetrics();

    void count_response(int status);
    void count_request_tokens(int64_t prompt_tokens, int64_t completion_tokens);
    void observe_ttft(double seconds);
    void observe_itl(double seconds);

    // Prometheus text exposition (version 0.0.4).
    std::string render(const EngineStats& engine) const;

  private:
    mutable std::mutex mu_;
    std::map<int, int64_t> responses_by_status_;
    int64_t prompt_tokens_ = 0;
    int64_t completion_tokens_ = 0;
    Histogram ttft_;
    Histogram itl_;
};

}  // namespace vela::server
