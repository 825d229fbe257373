#include "engine/scheduler.h"

#include <algorithm>

namespace vela {

void Scheduler::remove(Sequence* seq) {
    std::erase(waiting_, seq);
    std::erase(running_, seq);
}

void Scheduler::preempt(KvCache& kv, Sequence* victim, std::vector<Sequence*>& preempted) {
    if (config_.preemption == Preemption::Swap) {
        kv.swap_out(victim->id());  // n_computed stays: the KV comes back as it was
        ++counters_.swap_outs;
    } else {
        kv.free(victim->id());
        victim->reset_computed(0);
    }
    ++counters_.preemptions;
    victim->set_status(Sequence::Status::Waiting);
    // Preempted sequences go back to the head of the queue, in their original order (the last
    // admitted is preempted first, so pushing to the front keeps arrival order).
    waiting_.push_front(victim);
    preempted.push_back(victim);
}

bool Scheduler::preempt_last(KvCache& kv, const Sequence* keep, std::vector<Sequence*>& preempted) {
    if (running_.empty() || running_.back() == keep) return false;
    Sequence* victim = running_.back();
    running_.pop_back();
    preempt(kv, victim, preempted);
    return true;
}

void Scheduler::schedule_running(KvCache& kv, int64_t& budget, std::vector<ScheduledSeq>& out,
                                 std::vector<Sequence*>& preempted) {
    // Each continues (decode token or the rest of a chunked prefill). Victims are taken from
    // the back, after index i, so none of them is already in `out`.
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
        Sequence* seq = running_[i];
        const int64_t n = std::min(seq->n_uncomputed(), budget);
        if (n <= 0) continue;
        while (!kv.can_append(seq->id(), n)) {
            if (!preempt_last(kv, seq, preempted)) break;
        }
        if (!kv.can_append(seq->id(), n)) {
            // Even without later sequences it does not fit: preempt itself; it is retried when
            // earlier ones finish and free their blocks.
            running_.erase(running_.begin() + static_cast<long>(i));
            preempt(kv, seq, preempted);
            break;
        }
        out.push_back(ScheduledSeq{seq, n, kv.append(seq->id(), n)});
        budget -= n;
    }
}

bool Scheduler::restore_kv(KvCache& kv, Sequence* seq, int64_t budget) {
    const SeqId id = seq->id();
    if (kv.is_swapped(id)) {
        // Swapped KV comes back into fresh blocks: it needs all of them plus the next chunk's.
        const int64_t bs = kv.config().block_size;
        const int64_t n = std::min(seq->n_uncomputed(), budget);
        const int64_t needed = (seq->n_computed() + n + bs - 1) / bs;
        if (needed > kv.num_free_blocks()) return false;
        kv.swap_in(id);
        ++counters_.swap_ins;
        return true;
    }
    if (!kv.has_sequence(id)) {
        kv.add_sequence(id);
        // The table keeps these blocks while the sequence waits for the rest, so the lookup
        // (and its hit counters) happens once per admission.
        seq->reset_computed(kv.acquire_cached_prefix(id, seq->tokens()));
    }
    return true;
}

std::vector<ScheduledSeq> Scheduler::schedule(KvCache& kv, std::vector<Sequence*>& preempted) {
    std::vector<ScheduledSeq> out;
    int64_t budget = config_.max_batched_tokens;
    schedule_running(kv, budget, out, preempted);

    // Waiting sequences, in arrival order, while budget, slots and blocks allow. Nothing is
    // admitted in a step that had to preempt: the blocks are short.
    while (!waiting_.empty() && budget > 0 &&
           static_cast<int64_t>(running_.size()) < config_.max_running && preempted.empty()) {
        Sequence* seq = waiting_.front();
        if (!restore_kv(kv, seq, budget)) break;
        const int64_t n = std::min(seq->n_uncomputed(), budget);
        if (!kv.can_append(seq->id(), n)) break;
        waiting_.pop_front();
        seq->set_status(Sequence::Status::Running);
        running_.push_back(seq);
        out.push_back(ScheduledSeq{seq, n, kv.append(seq->id(), n)});
        budget -= n;
    }
    return out;
}

}  // namespace vela
