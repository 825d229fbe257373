#pragma once
// Decides, each step, which sequences run and how many of their tokens: decode tokens of
// running sequences first (FCFS), then prefill chunks of waiting ones, within a token budget and
// only when their KV blocks can be allocated. When a running sequence cannot grow, the most
// recently admitted one is preempted (KV dropped, recomputed later): FCFS fairness.
#include <cstdint>
#include <deque>
#include <vector>

#include "engine/sequence.h"
#include "kv/kv_cache.h"

namespace vela {

struct SchedulerConfig {
    int64_t max_batched_tokens = 512;  // tokens fed to the model in one step
    int64_t max_running = 64;          // sequences in one step
};

struct ScheduledSeq {
    Sequence* seq = nullptr;
    int64_t n_tokens = 0;              // tokens to feed this step, starting at seq->n_computed()
    std::vector<int64_t> slots;        // their KV slots (allocated by schedule())
};

class Scheduler {
public:
    explicit Scheduler(SchedulerConfig config) : config_(config) {}

    void add(Sequence* seq) { waiting_.push_back(seq); }
    // Removes a sequence (finished or aborted) from the queues; does not touch its KV.
    void remove(Sequence* seq);

    // Picks this step's work and allocates its KV slots in `kv`. Sequences preempted to make
    // room are reported in `preempted` (their KV is already freed).
    std::vector<ScheduledSeq> schedule(KvCache& kv, std::vector<Sequence*>& preempted);

    bool has_work() const { return !waiting_.empty() || !running_.empty(); }
    size_t n_waiting() const { return waiting_.size(); }
    size_t n_running() const { return running_.size(); }

private:
    bool preempt_last(KvCache& kv, const Sequence* keep, std::vector<Sequence*>& preempted);

    SchedulerConfig config_;
    std::deque<Sequence*> waiting_;
    std::deque<Sequence*> running_;
};

}  // namespace vela
