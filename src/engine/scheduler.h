#pragma once
// Decides, each step, which sequences run and how many of their tokens: decode tokens of
// running sequences first (FCFS), then prefill chunks of waiting ones, within a token budget and
// only when their KV blocks can be allocated. When a running sequence cannot grow, the most
// recently admitted one is preempted (FCFS fairness): its KV is dropped and recomputed later
// (Recompute), or copied to host memory and copied back when it is re-admitted (Swap).
//
// Admission is check/act: whether the head's next chunk fits is computed without touching the
// KV cache (cached-prefix blocks that are evictable count as taken), and only then does the
// head take its cached prefix (when the KV cache has prefix caching on) and its chunk's blocks.
// A waiting sequence therefore holds no KV blocks, except KV handed to it before admission (a
// follower's fork of its leader's prompt, a chat turn's reused KV); when nothing can run, those
// are given up, so the head always fits eventually (every sequence fits the pool on its own).
//
// Draft tokens (speculative decoding) ride along with a running sequence's decode token, using
// only the budget and blocks left after everything else is scheduled: drafts never preempt a
// sequence or delay an admission. A draft that does not fit is cut (Sequence::draft()).
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "engine/sequence.h"
#include "kv/block_manager.h"

namespace vela {

enum class Preemption { Recompute, Swap };

struct SchedulerConfig {
    int64_t max_batched_tokens = 512;  // tokens fed to the model in one step
    int64_t max_running = 64;          // sequences in one step
    Preemption preemption = Preemption::Recompute;
};

struct SchedulerCounters {
    int64_t preemptions = 0;
    int64_t swap_outs = 0;
    int64_t swap_ins = 0;
};

struct ScheduledSeq {
    Sequence* seq = nullptr;
    int64_t n_tokens = 0;        // tokens to feed this step, starting at seq->n_computed()
    std::vector<int64_t> slots;  // their KV slots (allocated by schedule())
};

class Scheduler {
  public:
    explicit Scheduler(SchedulerConfig config) : config_(config) {}

    void add(Sequence* seq) { waiting_.push_back(seq); }
    // Removes a sequence (finished or aborted) from the queues; does not touch its KV.
    void remove(Sequence* seq);

    // Picks this step's work and allocates its KV slots in `kv`. Sequences preempted to make
    // room are reported in `preempted` (their KV is already freed or swapped out). Empty only
    // when there is no work, or when KV held outside the scheduler's sequences (retained for a
    // chat turn) keeps the queue head out.
    std::vector<ScheduledSeq> schedule(BlockManager& kv, std::vector<Sequence*>& preempted);

    bool has_work() const { return !waiting_.empty() || !running_.empty(); }
    size_t n_waiting() const { return waiting_.size(); }
    size_t n_running() const { return running_.size(); }
    const std::deque<Sequence*>& running() const { return running_; }
    const SchedulerCounters& counters() const { return counters_; }
    const SchedulerConfig& config() const { return config_; }

  private:
    bool preempt_last(BlockManager& kv, const Sequence* keep, std::vector<Sequence*>& preempted);
    void preempt(BlockManager& kv, Sequence* victim, std::vector<Sequence*>& preempted);
    void schedule_running(BlockManager& kv, int64_t& budget, std::vector<ScheduledSeq>& out,
                          std::vector<Sequence*>& preempted);
    // Admits waiting sequences in arrival order while budget, max_running and blocks allow.
    void admit_waiting(BlockManager& kv, int64_t& budget, std::vector<ScheduledSeq>& out);
    // The head's next chunk (at most `budget` tokens) with its slots, after swapping its KV in
    // or taking its cached prefix; nullopt, changing nothing, when the blocks are not there.
    std::optional<ScheduledSeq> try_admit(BlockManager& kv, Sequence* seq, int64_t budget);
    // Extends the scheduled decode steps by their draft tokens where budget and blocks allow.
    void add_drafts(BlockManager& kv, int64_t& budget, std::vector<ScheduledSeq>& out);
    // Frees the KV that waiting sequences hold (they recompute it); false when none held any.
    bool release_waiting_kv(BlockManager& kv);

    SchedulerConfig config_;
    std::deque<Sequence*> waiting_;
    std::deque<Sequence*> running_;
    SchedulerCounters counters_;
};

}  // namespace vela
