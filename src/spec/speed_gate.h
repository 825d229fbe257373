#pragma once
// Whether speculation pays on this machine, from measured speed rather than a cost model: the
// tokens per second of recent decode steps that speculated and of those that did not
// (exponential averages). Bytes read predict a step's time on a CPU; on a GPU a small model's
// step is bound by kernel launches, and a draft forward costs as much as a full one whatever it
// reads. Once both figures exist the faster kind runs, and now and then one step of the other
// kind refreshes its figure (the load and the context length move): kProbeEvery steps after
// the winner changes, then at doubling intervals up to kMaxProbeEvery. A probe costs the time
// of one losing step, so probes are also at least kProbeCost losing-step times of the winner's
// steps apart (at most ~2% of the time probing, however slow the loser: a speculative step
// that verifies long contexts can take ten plain ones).
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace vela::spec {

class SpeedGate {
  public:
    static constexpr int64_t kProbeEvery = 32;
    static constexpr int64_t kMaxProbeEvery = 512;
    static constexpr double kProbeCost = 50.0;

    // Whether the next decode step may speculate.
    bool allow() {
        ++steps_;
        if (repeat_) {  // the last step was not a figure: run its kind again
            repeat_ = false;
            return last_;
        }
        return last_ = decide();
    }

    // A finished decode step (no prompt tokens in it): its tokens, wall time and sequences.
    // Rates are per sequence (tokens / sequences / seconds): a step's tokens grow with its batch
    // and its time much less, so raw tokens/s would favour whichever kind was last measured at a
    // larger batch (a batch that empties as its requests finish made plain steps look ever
    // slower than a speculative figure taken while it was full). A step that is
    // not `representative` of its kind (a draft model catching up on tokens it did not see
    // while drafting was off; a GPU step that ran a new shape eagerly or recorded it as a CUDA
    // graph, slower than its replays) is no figure, and the next step is of the same kind; up
    // to kMaxUnrepresentative such steps in a row, after which it counts (a kind may have no
    // other steps).
    void record(bool speculated, int64_t tokens, double seconds, bool representative = true,
                int64_t sequences = 1) {
        if (!representative && unrepresentative_ < kMaxUnrepresentative) {
            ++unrepresentative_;
            repeat_ = true;
            return;
        }
        unrepresentative_ = 0;
        if (tokens <= 0 || seconds <= 0.0 || sequences <= 0) return;
        Kind& k = speculated ? spec_ : plain_;
        const double r = static_cast<double>(tokens) / static_cast<double>(sequences) / seconds;
        k.rate = k.rate <= 0.0 ? r : 0.75 * k.rate + 0.25 * r;
        k.seconds = k.seconds <= 0.0 ? seconds : 0.75 * k.seconds + 0.25 * seconds;
    }
    static constexpr int kMaxUnrepresentative = 4;

    double spec_rate() const { return spec_.rate; }
    double plain_rate() const { return plain_.rate; }

  private:
    bool decide() {
        if (spec_.rate <= 0.0) return true;    // measure speculation first
        if (plain_.rate <= 0.0) return false;  // then a step without it
        const bool spec_wins = spec_.rate >= plain_.rate;
        const Kind& win = spec_wins ? spec_ : plain_;
        const Kind& lose = spec_wins ? plain_ : spec_;
        const auto floor = static_cast<int64_t>(std::ceil(kProbeCost * lose.seconds / win.seconds));
        if (spec_wins != spec_won_ || next_probe_ == 0) {  // a new winner: probe soon
            spec_won_ = spec_wins;
            interval_ = std::max(kProbeEvery, floor);
            next_probe_ = steps_ + interval_;
        }
        if (steps_ < next_probe_) return spec_wins;
        // A probe of the losing kind; each one that confirms the winner waits twice as long
        // for the next.
        interval_ = std::min(std::max(2 * interval_, floor), std::max(kMaxProbeEvery, floor));
        next_probe_ = steps_ + interval_;
        return !spec_wins;
    }

    struct Kind {
        double rate = 0.0;     // tokens/s per sequence; 0: not measured yet
        double seconds = 0.0;  // a step's wall time
    };
    int64_t steps_ = 0;
    Kind spec_, plain_;
    bool spec_won_ = false;
    bool last_ = false, repeat_ = false;  // allow()'s last answer; the last step was no figure
    int unrepresentative_ = 0;            // steps in a row that were no figure
    int64_t interval_ = kProbeEvery, next_probe_ = 0;  // 0: no winner yet
};

}  // namespace vela::spec
