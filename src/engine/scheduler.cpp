#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace vela {

void Scheduler::remove(Sequence* seq) {
    std::erase(waiting_, seq);
    std::erase(running_, seq);
}

void Scheduler::preempt(BlockManager& kv, Sequence* victim, std::vector<Sequence*>& preempted) {
    if (config_.preemption == Preemption::Swap) {
        kv.swap_out(victim->id());  // n_computed stays: the KV comes back as it was
        ++counters_.swap_outs;
    } else {
        kv.free(victim->id());
        victim->reset_computed(0);
    }
    ++counters_.preemptions;
    victim->draft().clear();
    victim->set_status(Sequence::Status::Waiting);
    // Preempted sequences go back to the head of the queue, in their original order (the last
    // admitted is preempted first, so pushing to the front keeps arrival order).
    waiting_.push_front(victim);
    preempted.push_back(victim);
}

bool Scheduler::preempt_last(BlockManager& kv, const Sequence* keep, std::vector<Sequence*>& preempted) {
    if (running_.empty() || running_.back() == keep) return false;
    Sequence* victim = running_.back();
    running_.pop_back();
    preempt(kv, victim, preempted);
    return true;
}

void Scheduler::schedule_running(BlockManager& kv, int64_t& budget, std::vector<ScheduledSeq>& out,
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
        // The oldest running sequence must always be able to finish: once nothing else runs,
        // KV that waiting sequences hold is all that can stand in its way (besides KV the engine
        // retains, which it gives up when this step reports preemptions).
        if (i == 0 && !kv.can_append(seq->id(), n)) release_waiting_kv(kv);
        if (!kv.can_append(seq->id(), n)) {
            // Even without later sequences it does not fit: preempt itself; it is retried when
            // earlier ones finish and free their blocks (the oldest one, when the engine has
            // given up its retained KV).
            running_.erase(running_.begin() + static_cast<long>(i));
            preempt(kv, seq, preempted);
            break;
        }
        out.push_back(ScheduledSeq{seq, n, kv.append(seq->id(), n)});
        budget -= n;
    }
}

std::optional<ScheduledSeq> Scheduler::try_admit(BlockManager& kv, Sequence* seq, int64_t budget) {
    const SeqId id = seq->id();
    if (kv.is_swapped(id)) {
        // Swapped KV comes back into fresh blocks: it needs all of them plus the chunk's.
        const int64_t bs = kv.config().block_size;
        const int64_t n = std::min(seq->n_uncomputed(), budget);
        if ((seq->n_kv() + n + bs - 1) / bs > kv.num_free_blocks()) return std::nullopt;
        kv.swap_in(id);
        ++counters_.swap_ins;
        return ScheduledSeq{seq, n, kv.append(id, n)};
    }
    if (kv.has_sequence(id)) {
        // KV handed over before admission (a follower's fork, a chat turn's reused KV).
        const int64_t n = std::min(seq->n_uncomputed(), budget);
        if (!kv.can_append(id, n)) return std::nullopt;
        return ScheduledSeq{seq, n, kv.append(id, n)};
    }
    const PrefixHit hit = kv.match_cached_prefix(seq->tokens());
    const int64_t n_tokens = static_cast<int64_t>(seq->tokens().size());
    const int64_t n = std::min(n_tokens - hit.n_tokens, budget);
    if (!kv.can_admit(hit, n)) return std::nullopt;
    kv.add_sequence(id);
    // Counted in the prefix-cache hit counters here, once per admission.
    seq->reset_computed(kv.acquire_cached_prefix(id, seq->tokens()));
    VELA_ASSERT(seq->n_computed() == hit.n_tokens);
    return ScheduledSeq{seq, n, kv.append(id, n)};
}

void Scheduler::admit_waiting(BlockManager& kv, int64_t& budget, std::vector<ScheduledSeq>& out) {
    while (!waiting_.empty() && budget > 0 &&
           static_cast<int64_t>(running_.size()) < config_.max_running) {
        Sequence* seq = waiting_.front();
        std::optional<ScheduledSeq> s = try_admit(kv, seq, budget);
        if (!s) break;
        waiting_.pop_front();
        seq->set_status(Sequence::Status::Running);
        running_.push_back(seq);
        budget -= s->n_tokens;
        out.push_back(std::move(*s));
    }
}

void Scheduler::add_drafts(BlockManager& kv, int64_t& budget, std::vector<ScheduledSeq>& out) {
    for (ScheduledSeq& s : out) {
        spec::Draft& draft = s.seq->draft();
        if (draft.size() == 0) continue;
        // Only a decode step (its one new token fed) verifies a draft.
        VELA_ASSERT(s.n_tokens == 1 && s.seq->n_uncomputed() == 1);
        int64_t n = std::min(draft.size(), budget);
        if (n > 0 && !kv.can_append(s.seq->id(), n)) n = 0;
        draft.truncate(n);
        if (n == 0) continue;
        const std::vector<int64_t> slots = kv.append(s.seq->id(), n);
        s.slots.insert(s.slots.end(), slots.begin(), slots.end());
        s.n_tokens += n;
        budget -= n;
    }
}

bool Scheduler::release_waiting_kv(BlockManager& kv) {
    bool released = false;
    for (Sequence* seq : waiting_) {
        if (!kv.has_sequence(seq->id())) continue;
        kv.free(seq->id());
        seq->reset_computed(0);
        released = true;
    }
    return released;
}

std::vector<ScheduledSeq> Scheduler::schedule(BlockManager& kv, std::vector<Sequence*>& preempted) {
    std::vector<ScheduledSeq> out;
    int64_t budget = config_.max_batched_tokens;
    schedule_running(kv, budget, out, preempted);
    // Nothing is admitted in a step that had to preempt (the blocks are short), unless nothing
    // runs any more: the head (the earliest admitted of those preempted) then has the pool.
    if (preempted.empty() || running_.empty()) admit_waiting(kv, budget, out);
    // Nothing runs and the head does not fit: what is in its way is KV that waiting sequences
    // hold (nothing runs, so nothing would ever free it) or KV the engine retains.
    if (out.empty() && release_waiting_kv(kv)) admit_waiting(kv, budget, out);
    add_drafts(kv, budget, out);
    return out;
}

}  // namespace vela
