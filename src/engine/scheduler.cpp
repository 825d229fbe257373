#include "engine/scheduler.h"

#include <algorithm>

namespace vela {

void Scheduler::remove(Sequence* seq) {
    std::erase(waiting_, seq);
    std::erase(running_, seq);
}

bool Scheduler::preempt_last(KvCache& kv, const Sequence* keep, std::vector<Sequence*>& preempted) {
    if (running_.empty() || running_.back() == keep) return false;
    Sequence* victim = running_.back();
    running_.pop_back();
    kv.free(victim->id());
    victim->reset_computed(0);
    victim->set_status(Sequence::Status::Waiting);
    waiting_.push_front(victim);
    preempted.push_back(victim);
    return true;
}

std::vector<ScheduledSeq> Scheduler::schedule(KvCache& kv, std::vector<Sequence*>& preempted) {
    std::vector<ScheduledSeq> out;
    int64_t budget = config_.max_batched_tokens;

    // Running sequences: each continues (decode token or the rest of a chunked prefill).
    for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
        Sequence* seq = running_[i];
        const int64_t n = std::min(seq->n_uncomputed(), budget);
        if (n <= 0) continue;
        while (!kv.can_append(seq->id(), n)) {
            if (!preempt_last(kv, seq, preempted)) break;
        }
        if (!kv.can_append(seq->id(), n)) {
            // Even alone it does not fit: preempt itself; it is retried when blocks free up.
            running_.erase(running_.begin() + static_cast<long>(i));
            kv.free(seq->id());
            seq->reset_computed(0);
            seq->set_status(Sequence::Status::Waiting);
            waiting_.push_front(seq);
            preempted.push_back(seq);
            break;
        }
        out.push_back(ScheduledSeq{seq, n, kv.append(seq->id(), n)});
        budget -= n;
    }

    // Waiting sequences, in arrival order, while budget, slots and blocks allow.
    while (!waiting_.empty() && budget > 0 &&
           static_cast<int64_t>(running_.size()) < config_.max_running && preempted.empty()) {
        Sequence* seq = waiting_.front();
        if (!kv.has_sequence(seq->id())) kv.add_sequence(seq->id());
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
