#pragma once
// Whether speculation pays on this machine, from measured speed rather than a cost model: the
// tokens per second of recent decode steps that speculated and of those that did not
// (exponential averages). Bytes read predict a step's time on a CPU; on a GPU a small model's
// step is bound by kernel launches, and a draft forward costs as much as a full one whatever it
// reads. Once both figures exist the faster kind runs, and now and then one step of the other
// kind refreshes its figure (the load and the context length move): kProbeEvery steps after
// the winner changes, then at doubling intervals up to kMaxProbeEvery.
#include <algorithm>
#include <cstdint>

namespace vela::spec {

class SpeedGate {
  public:
    static constexpr int64_t kProbeEvery = 32;
    static constexpr int64_t kMaxProbeEvery = 512;

    // Whether the next decode step may speculate.
    bool allow() {
        ++steps_;
        if (spec_rate_ <= 0.0) return true;    // measure speculation first
        if (plain_rate_ <= 0.0) return false;  // then a step without it
        const bool spec_wins = spec_rate_ >= plain_rate_;
        if (spec_wins != spec_won_ || next_probe_ == 0) {  // a new winner: probe soon
            spec_won_ = spec_wins;
            interval_ = kProbeEvery;
            next_probe_ = steps_ + interval_;
        }
        if (steps_ < next_probe_) return spec_wins;
        // A probe of the losing kind; each one that confirms the winner waits twice as long
        // for the next (a probe costs, the more the worse the loser).
        interval_ = std::min(2 * interval_, kMaxProbeEvery);
        next_probe_ = steps_ + interval_;
        return !spec_wins;
    }

    // A finished decode step (no prompt tokens in it): its tokens and wall time.
    void record(bool speculated, int64_t tokens, double seconds) {
        if (tokens <= 0 || seconds <= 0.0) return;
        double& rate = speculated ? spec_rate_ : plain_rate_;
        const double r = static_cast<double>(tokens) / seconds;
        rate = rate <= 0.0 ? r : 0.75 * rate + 0.25 * r;
    }

    double spec_rate() const { return spec_rate_; }
    double plain_rate() const { return plain_rate_; }

  private:
    int64_t steps_ = 0;
    double spec_rate_ = 0.0, plain_rate_ = 0.0;  // tokens/s; 0: not measured yet
    bool spec_won_ = false;
    int64_t interval_ = kProbeEvery, next_probe_ = 0;  // 0: no winner yet
};

}  // namespace vela::spec
