#pragma once
// How many tokens to draft for one sequence, from its recent acceptance. Drafting more than the
// target accepts costs verification rows for nothing, so the length follows the last outcome:
// one more after a fully accepted draft, the accepted count + 1 otherwise. When drafts are
// mostly rejected (an exponential average of the accepted fraction below kOffBelow) drafting
// pauses for kPauseSteps steps, then probes again with one token.
#include <algorithm>
#include <cstdint>

namespace vela::spec {

class AdaptiveLength {
  public:
    static constexpr double kOffBelow = 0.15;
    static constexpr int32_t kPauseSteps = 16;

    // Tokens to draft this step, at most max_tokens (0: not this step).
    int32_t next(int32_t max_tokens) {
        if (paused_ > 0) {
            --paused_;
            return 0;
        }
        return std::min(length_ < 0 ? max_tokens : length_, max_tokens);
    }

    void record(int64_t drafted, int64_t accepted) {
        if (drafted <= 0) return;
        rate_ = 0.7 * rate_ + 0.3 * static_cast<double>(accepted) / static_cast<double>(drafted);
        length_ = static_cast<int32_t>(accepted == drafted ? drafted + 1 : accepted + 1);
        if (rate_ < kOffBelow) {
            paused_ = kPauseSteps;
            length_ = 1;
            rate_ = 0.5;  // the probe starts from a neutral estimate
        }
    }

    double acceptance() const { return rate_; }

  private:
    int32_t length_ = -1;  // -1: nothing recorded yet, draft the maximum
    int32_t paused_ = 0;
    double rate_ = 1.0;
};

}  // namespace vela::spec
