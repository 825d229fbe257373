#include "engine/engine.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/log.h"

namespace vela {

const char* finish_reason_name(FinishReason r) {
    switch (r) {
        case FinishReason::None:
            return "none";
        case FinishReason::Stop:
            return "stop";
        case FinishReason::Length:
            return "length";
        case FinishReason::Abort:
            return "abort";
    }
    return "?";
}

namespace {

BlockManagerConfig block_config(const EngineConfig& c, int64_t window) {
    BlockManagerConfig k;
    k.block_size = c.kv_block_size;
    const int64_t per_ctx = (c.n_ctx + c.kv_block_size - 1) / c.kv_block_size;
    k.num_blocks = c.kv_blocks > 0 ? c.kv_blocks : per_ctx;
    k.prefix_caching = c.prefix_caching;
    k.local_num_blocks = local_kv_blocks(c, window, k.num_blocks);
    if (k.local_num_blocks > 0) {
        k.local_window = window;
        k.prefix_caching = false;
    }
    return k;
}

SchedulerConfig scheduler_config(const EngineConfig& c) {
    SchedulerConfig s = c.scheduler;
    s.preemption = c.preemption;
    return s;
}

}  // namespace

int64_t local_kv_blocks(const EngineConfig& c, int64_t window, int64_t num_blocks) {
    if (window <= 0 || c.swa_full) return 0;
    const int64_t step = c.scheduler.max_batched_tokens;
    const int64_t one = local_blocks_per_sequence(window, step, c.kv_block_size);
    if (c.kv_local_blocks > 0 && c.kv_local_blocks < one) {
        fail<InvalidArgument>(
            "a local KV pool of {} blocks does not hold one sequence's window and step ({})",
            c.kv_local_blocks, one);
    }
    // Every running sequence's window and a step.
    const int64_t local =
        c.kv_local_blocks > 0
            ? c.kv_local_blocks
            : local_pool_blocks(window, step, c.kv_block_size, c.scheduler.max_running);
    return local < num_blocks ? local : 0;
}

Engine::Engine(Model& model, const Tokenizer& tokenizer, Backend& backend, EngineConfig config,
               std::unique_ptr<spec::Drafter> drafter)
    : model_(model),
      tokenizer_(tokenizer),
      config_(config),
      backend_(backend),
      scheduler_(scheduler_config(config)),
      runner_(model, backend),
      drafter_(std::move(drafter)) {
    if (config_.n_ctx < 2) fail<InvalidArgument>("context size {} is too small", config_.n_ctx);
    if (config_.kv_block_size < 1) {
        fail<InvalidArgument>("KV block size {} must be >= 1", config_.kv_block_size);
    }
    if (config_.scheduler.max_batched_tokens < 1 || config_.scheduler.max_running < 1) {
        fail<InvalidArgument>("scheduler limits must be >= 1");
    }
    const SpeculationConfig& sp = config_.speculation;
    if (sp.self_draft) {
        if (drafter_) fail<InvalidArgument>("self-speculation replaces the drafter: pass none");
        if (config_.eviction.enabled()) {
            fail<InvalidArgument>("self-speculation and KV eviction do not run together");
        }
        if (sp.self_window < 1 || sp.self_sinks < 0) {
            fail<InvalidArgument>(
                "self-speculation needs a window >= 1 and sinks >= 0, got {} / {}", sp.self_window,
                sp.self_sinks);
        }
        draft_batch_.sparse_sinks = sp.self_sinks;
        draft_batch_.sparse_window = sp.self_window;
        for (const auto& t : model.file().tensors()) weight_bytes_ += static_cast<double>(t.nbytes);
    }
    if (config_.speculation.max_tokens < 0 || config_.speculation.max_tokens > 64) {
        fail<InvalidArgument>("draft tokens per step must be between 0 and 64, got {}",
                              config_.speculation.max_tokens);
    }
    // Attention scores live beside the rows, so a block shared through the prefix cache would
    // carry the scores of whoever used it before: policies ranking by scores go without it.
    if (config_.eviction.score_mode() != KvScoreMode::None) config_.prefix_caching = false;
    kv_ = std::make_unique<BlockManager>(block_config(config_, model.hparams().sliding_window));
    const BlockManagerConfig& bc = kv_->config();
    if (bc.local_window > 0) {
        if (config_.prefix_caching) {
            log(LogLevel::Info,
                "sliding-window layers keep their window only: prefix caching is off "
                "(--swa-full keeps every token's KV)");
        }
        config_.prefix_caching = false;
        if (config_.preemption == Preemption::Swap) {
            fail<InvalidArgument>(
                "swap preemption needs every token's KV, but the sliding-window layers keep "
                "only their window: use --swa-full");
        }
    }
    KvLayout layout =
        model.kv_layout(config_.kv_block_size, kv_->num_total_blocks(), bc.local_num_blocks);
    const EvictionConfig& ev = config_.eviction;
    ev.validate();
    if (ev.enabled()) {
        if (model.hparams().sliding_window > 0) {
            // Its local layers mask keys by distance in the KV, which compaction shortens.
            fail<InvalidArgument>(
                "KV eviction ({}) is not supported for a model with its own sliding window ({})",
                eviction_policy_name(ev.policy), model.hparams().arch);
        }
        layout.attention_scores = ev.score_mode() != KvScoreMode::None;
    }
    storage_ = model.make_kv_storage(backend_, layout, config_.kv_formats);
    if (ev.enabled()) {
        evictor_ = std::make_unique<KvEvictor>(ev, layout);
        runner_.set_kv_scores(ev.score_mode());
    }
}

Engine::~Engine() = default;

int64_t Engine::add_request(Request r) {
    if (r.prompt.empty()) fail<InvalidArgument>("the prompt is empty");
    const int64_t n_prompt = static_cast<int64_t>(r.prompt.size());
    if (n_prompt >= config_.n_ctx) {
        fail<InvalidArgument>(
            "the prompt has {} tokens but the context holds {} (prompt + at "
            "least one generated token)",
            n_prompt, config_.n_ctx);
    }
    const int64_t blocks_needed =
        (n_prompt + 1 + config_.kv_block_size - 1) / config_.kv_block_size;
    if (blocks_needed > kv_->num_total_blocks()) {
        fail<InvalidArgument>("the prompt needs {} KV blocks, the cache has {}", blocks_needed,
                              kv_->num_total_blocks());
    }
    for (int32_t t : r.prompt) {
        if (t < 0 || t >= model_.hparams().n_vocab) {
            fail<InvalidArgument>("token id {} is outside the vocabulary (0..{})", t,
                                  model_.hparams().n_vocab - 1);
        }
    }
    if (r.max_tokens < 1) fail<InvalidArgument>("max_tokens must be >= 1, got {}", r.max_tokens);
    if (r.logprobs < -1 || r.logprobs > 20) {
        fail<InvalidArgument>("logprobs must be between 0 and 20 alternatives, got {}", r.logprobs);
    }
    if (r.spec_max_tokens < -1 || r.spec_max_tokens > 64) {
        fail<InvalidArgument>("draft tokens per step must be between 0 and 64, got {}",
                              r.spec_max_tokens);
    }
    r.sampling.validate();
    // A sequence must fit the whole KV pool on its own, or it would be preempted forever.
    const int64_t capacity = kv_->num_total_blocks() * config_.kv_block_size;
    r.max_tokens = std::min({r.max_tokens, config_.n_ctx - n_prompt, capacity - n_prompt});

    const int64_t id = next_id_++;
    const int64_t reuse = r.reuse_kv_of;
    auto seq = std::make_unique<Sequence>(id, std::move(r), tokenizer_);
    if (reuse >= 0 && retained_.count(reuse)) reuse_retained_kv(*seq, reuse);
    scheduler_.add(seq.get());
    sequences_.emplace(id, std::move(seq));
    return id;
}

void Engine::reuse_retained_kv(Sequence& seq, int64_t source_id) {
    const std::vector<int32_t>& old = retained_.at(source_id);  // exactly the tokens in its KV
    const auto& now = seq.tokens();
    int64_t common = 0;
    const auto limit = std::min(old.size(), now.size() - 1);  // always compute >= 1 token
    while (common < static_cast<int64_t>(limit) && old[common] == now[common]) ++common;
    // The sliding-window layers' KV before that point is gone: compute it all again.
    if (common < kv_->local_min_tokens(source_id)) common = 0;
    kv_->truncate(source_id, common);
    kv_->fork(source_id, seq.id());
    kv_->free(source_id);
    retained_.erase(source_id);
    seq.reset_computed(common);
}

EngineStats Engine::stats() const {
    EngineStats s = stats_;
    const SchedulerCounters& c = scheduler_.counters();
    s.preemptions = c.preemptions;
    s.swap_outs = c.swap_outs;
    s.swap_ins = c.swap_ins;
    const PrefixCacheStats p = kv_->prefix_stats();
    s.prefix_query_tokens = p.query_tokens;
    s.prefix_hit_tokens = p.hit_tokens;
    s.running = static_cast<int64_t>(scheduler_.n_running());
    s.waiting = static_cast<int64_t>(scheduler_.n_waiting());
    s.kv_blocks_total = kv_->num_total_blocks();
    s.kv_bytes_per_token = static_cast<int64_t>(storage_->bytes_per_token());
    s.kv_blocks_used = kv_->num_used_blocks();
    s.kv_blocks_cached = p.cached_blocks;
    s.kv_blocks_swapped = kv_->num_swapped_blocks();
    if (kv_->has_local_group()) {
        s.kv_local_blocks_total = kv_->local_pool().num_total();
        s.kv_local_blocks_used = s.kv_local_blocks_total - kv_->local_pool().num_free();
    }
    return s;
}

std::vector<int64_t> Engine::add_request_group(Request r, int64_t n) {
    if (n < 1) fail<InvalidArgument>("n must be >= 1, got {}", n);
    const Request copy = r;
    std::vector<int64_t> ids{add_request(std::move(r))};
    const Request& validated = sequences_.at(ids[0])->request();  // max_tokens clamped
    for (int64_t i = 1; i < n; ++i) {
        Request f = validated;
        f.retain_kv = false;
        f.reuse_kv_of = -1;
        if (copy.sampling.seed != SamplingParams::kRandomSeed)
            f.sampling.seed = copy.sampling.seed + i;
        const int64_t id = next_id_++;
        auto seq = std::make_unique<Sequence>(id, std::move(f), tokenizer_);
        followers_[ids[0]].push_back(seq.get());
        sequences_.emplace(id, std::move(seq));
        ids.push_back(id);
    }
    return ids;
}

void Engine::start_followers(Sequence& leader, bool fork_kv) {
    auto it = followers_.find(leader.id());
    if (it == followers_.end()) return;
    const int64_t n_prompt = leader.n_prompt();
    for (Sequence* f : it->second) {
        if (fork_kv) {
            // The leader's KV holds exactly the prompt now; each follower recomputes only the
            // last prompt token, for logits of its own (its own block after copy-on-write).
            kv_->fork(leader.id(), f->id());
            kv_->truncate(f->id(), leader.n_kv() - 1);
            f->reset_computed(n_prompt - 1, leader.n_evicted());
        }
        scheduler_.add(f);
    }
    followers_.erase(it);
}

void Engine::release_retained(int64_t request_id) {
    if (retained_.erase(request_id) > 0) kv_->free(request_id);
}

void Engine::release_all_retained() {
    for (const auto& [id, tokens] : retained_) kv_->free(id);
    retained_.clear();
}

void Engine::abort(int64_t request_id) {
    if (sequences_.count(request_id)) aborted_.push_back(request_id);
}

void Engine::finish(Sequence& seq, std::vector<StepOutput>& out, FinishReason reason) {
    if (seq.finish_reason() == FinishReason::None) out.push_back(seq.finish_now(reason));
    scheduler_.remove(&seq);
    if (drafter_) drafter_->release(seq.id());
    start_followers(seq, false);  // the leader ended before its prompt was done: plain admission
    for (auto& [leader, list] : followers_) std::erase(list, &seq);
    if (kv_->is_swapped(seq.id())) kv_->free(seq.id());
    if (kv_->has_sequence(seq.id())) {
        // An evicted KV no longer holds the tokens' prefix a next turn would reuse.
        if (seq.request().retain_kv && seq.n_evicted() == 0) {
            // The KV holds the computed tokens only: never the last sampled one, and fewer when
            // the sequence was aborted before its prompt was done.
            VELA_ASSERT(kv_->n_tokens(seq.id()) == seq.n_computed());
            const auto& t = seq.tokens();
            retained_[seq.id()] = std::vector<int32_t>(t.begin(), t.begin() + seq.n_computed());
        } else {
            kv_->free(seq.id());
        }
    }
    sequences_.erase(seq.id());
}

std::vector<StepOutput> Engine::step() {
    const auto start = std::chrono::steady_clock::now();
    const int64_t prompt_tokens = stats_.prompt_tokens;
    const uint64_t warmups = backend_.warmup_runs();  // a step that warms up is no figure
    drafted_ = false;
    std::vector<StepOutput> out;
    for (int64_t id : aborted_) {
        auto it = sequences_.find(id);
        if (it != sequences_.end()) finish(*it->second, out, FinishReason::Abort);
    }
    aborted_.clear();

    if (drafter_ || config_.speculation.self_draft) propose_drafts();
    std::vector<Sequence*> preempted;
    std::vector<ScheduledSeq> work = scheduler_.schedule(*kv_, preempted);
    const bool stalled = work.empty() && scheduler_.has_work();
    if (!retained_.empty() && (stalled || !preempted.empty())) {
        // Live sequences are short of blocks: KV kept for a next chat turn must not keep them
        // from finishing (that turn can do without it).
        release_all_retained();
        if (stalled) work = scheduler_.schedule(*kv_, preempted);
    }
    // Every sequence fits the pool on its own, so with nothing else holding blocks the head is
    // admitted: a step with work always computes something (the server's loop relies on it).
    // Should that ever break, the caller hears it (the server aborts the requests and stays up)
    // instead of spinning on empty steps.
    if (work.empty() && scheduler_.has_work()) {
        fail<Error>(
            "the scheduler made no progress: {} running, {} waiting, {} of {} KV blocks used",
            scheduler_.n_running(), scheduler_.n_waiting(), kv_->num_used_blocks(),
            kv_->num_total_blocks());
    }
    if (work.empty()) return out;
    ++stats_.steps;
    // Copies and swaps decided while scheduling happen before this step reads or writes KV.
    storage_->apply(kv_->take_ops());
    if (config_.speculation.self_draft) self_draft(work);
    runner_.prepare(work, *kv_);
    runner_.run(*storage_);

    std::vector<Sequence*> done;
    for (size_t i = 0; i < work.size(); ++i) {
        Sequence& seq = *work[i].seq;
        std::span<float> logits = runner_.logits_for(i);
        if (seq.draft().size() > 0) {
            out.push_back(verify_draft(seq, logits));
            if (out.back().finish != FinishReason::None) done.push_back(&seq);
            continue;
        }
        seq.mark_computed(work[i].n_tokens);
        kv_->cache_computed(seq.id(),
                            std::span(seq.tokens()).first(static_cast<size_t>(seq.n_computed())));
        if (logits.empty()) {
            stats_.prompt_tokens += work[i].n_tokens;
            continue;
        }
        stats_.prompt_tokens += work[i].n_tokens - (seq.n_generated() > 0 ? 1 : 0);
        const int32_t greedy = runner_.argmax_token(i);
        StepOutput o;
        if (greedy >= 0) {
            o = seq.append_tokens({&greedy, 1});
        } else if (!runner_.samples_top(i)) {
            o = seq.append_sampled(logits);
        } else if (auto top = seq.append_sampled_top(runner_.top_for(i), runner_.lse_for(i))) {
            o = std::move(*top);
        } else {  // the list fell short of the nucleus: the whole row
            o = seq.append_sampled(runner_.fetch_row(i));
        }
        if (seq.n_generated() == 1) start_followers(seq, true);
        ++stats_.generated_tokens;
        const bool ended = o.finish != FinishReason::None;
        out.push_back(std::move(o));
        if (ended) done.push_back(&seq);
    }
    if (evictor_) {
        // Before finish() frees the ended ones (`done`, compared by address only).
        for (const ScheduledSeq& s : work) {
            if (std::find(done.begin(), done.end(), s.seq) == done.end()) evict(*s.seq);
        }
    }
    for (Sequence* seq : done) finish(*seq, out, seq->finish_reason());
    const SpeculationConfig& sp = config_.speculation;
    if ((sp.self_draft || (drafter_ && sp.gate)) && stats_.prompt_tokens == prompt_tokens) {
        int64_t tokens = 0;
        for (const StepOutput& o : out) tokens += std::ssize(o.tokens);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        const bool caught_up = drafted_ && drafter_ && drafter_->last_catch_up() > 0;
        const bool representative = !caught_up && backend_.warmup_runs() == warmups;
        spec_gate_.record(drafted_, tokens, took.count(), representative, std::ssize(work));
        log(LogLevel::Debug,
            "speed gate: {} step, {} tokens of {} sequences in {:.2f} ms{}; per sequence: "
            "speculating {:.0f} tok/s, plain {:.0f} tok/s",
            drafted_ ? "drafting" : "plain", tokens, work.size(), took.count() * 1e3,
            representative ? "" : " (warm-up, no figure)", spec_gate_.spec_rate(),
            spec_gate_.plain_rate());
    }
    return out;
}

void Engine::self_draft(const std::vector<ScheduledSeq>& work) {
    int64_t k = 0;
    for (const ScheduledSeq& s : work) k = std::max(k, s.seq->draft().size());
    // Draft j feeds each drafting sequence's token at position n + j (its last token, then its
    // drafts so far) into the step's slot j, and draws the next draft from its logits.
    for (int64_t j = 0; j < k; ++j) {
        draft_batch_.clear();
        std::vector<Sequence*> fed;
        for (const ScheduledSeq& s : work) {
            spec::Draft& d = s.seq->draft();
            if (d.size() <= j) continue;
            const int32_t token = j == 0 ? s.seq->tokens().back() : d.tokens[j - 1];
            const BlockTable& table = kv_->table(s.seq->id());
            draft_batch_.add_sequence({&token, 1}, s.seq->n_computed() + j,
                                      {&s.slots[static_cast<size_t>(j)], 1}, table.blocks,
                                      s.seq->n_kv() + j + 1, true);
            fed.push_back(s.seq);
        }
        draft_batch_.finish();
        // Greedy drafts (q one-hot): lossless for any sampling of the target. Only the argmax
        // of each row comes back from the device.
        draft_keep_.assign(fed.size(), Model::kKeepArgmax);
        model_.forward(draft_batch_, *storage_, backend_, draft_keep_, draft_out_);
        for (size_t i = 0; i < fed.size(); ++i) {
            fed[i]->draft().tokens[j] = std::max(draft_out_.ids[i], 0);  // -1: no logit above -inf
        }
    }
}

void Engine::evict(Sequence& seq) {
    const int64_t n_kv = seq.n_kv();
    if (!evictor_->due(n_kv, seq.n_computed())) return;
    const std::vector<KeepGroup> keep =
        evictor_->plan(*storage_, kv_->table(seq.id()), seq.n_computed());
    const auto n_keep = static_cast<int64_t>(keep.front().indices.size());
    // Out of free blocks for the copies of shared ones: it stays as it is and tries again
    // after its next step.
    if (!kv_->compact(seq.id(), n_keep, keep)) return;
    storage_->apply(kv_->take_ops());
    seq.mark_evicted(n_kv - n_keep);
    stats_.kv_evicted_tokens += n_kv - n_keep;
}

void Engine::propose_drafts() {
    const auto& running = scheduler_.running();
    for (Sequence* seq : running) seq->draft().clear();
    if (static_cast<int64_t>(running.size()) > config_.speculation.max_batch) return;
    draft_requests_.clear();
    drafting_.clear();
    for (Sequence* seq : running) {
        // Decode steps only (one token to feed), after the first generated token.
        if (seq->n_uncomputed() != 1 || seq->n_generated() < 1) continue;
        // A step emits at most draft + 1 tokens: never draft past max_tokens.
        const int64_t room = seq->request().max_tokens - seq->n_generated() - 1;
        const int32_t cap = seq->request().spec_max_tokens;
        const int32_t most = cap >= 0 ? std::min(cap, config_.speculation.max_tokens)
                                      : config_.speculation.max_tokens;
        // The adaptive length sets the depth; a tree drafter may add nodes up to `most`.
        const int32_t deepest = config_.speculation.max_depth > 0
                                    ? std::min(config_.speculation.max_depth, most)
                                    : most;
        const auto k =
            static_cast<int32_t>(std::min<int64_t>(seq->draft_length().next(deepest), room));
        if (k <= 0) continue;
        const auto nodes =
            static_cast<int32_t>(std::max<int64_t>(k, std::min<int64_t>(most, room)));
        draft_requests_.push_back({seq->id(), seq->tokens(), &seq->request().sampling, k, nodes});
        drafting_.push_back(seq);
    }
    if (drafting_.empty()) return;
    if (!drafter_) {
        // Self-speculation: the lengths now, the tokens once the step's slots exist; only where
        // a sparse draft forward reads far fewer bytes than a full one. The sequences of a step
        // share one read of the weights: each is charged its share of them (MagicDec's regime is
        // a large batch at long context, where the KV dominates).
        const SpeculationConfig& sp = config_.speculation;
        // Below "always" (1), measured speed decides too: the byte estimate misses a GPU's
        // launch-bound steps.
        if (sp.self_max_cost < 1.0 && !spec_gate_.allow()) return;
        const auto kv_token = static_cast<double>(storage_->bytes_per_token());
        const double weights = weight_bytes_ / static_cast<double>(drafting_.size());
        for (size_t i = 0; i < drafting_.size(); ++i) {
            const auto n_kv = static_cast<double>(drafting_[i]->n_kv());
            const double sparse =
                std::min(n_kv, static_cast<double>(sp.self_sinks + sp.self_window));
            if (weights + sparse * kv_token > sp.self_max_cost * (weights + n_kv * kv_token)) {
                continue;
            }
            drafting_[i]->draft().tokens.assign(static_cast<size_t>(draft_requests_[i].max_tokens),
                                                drafting_[i]->tokens().back());
            drafted_ = true;
        }
        return;
    }
    if (config_.speculation.gate && !spec_gate_.allow()) return;
    drafter_->propose(draft_requests_, drafts_);
    for (size_t i = 0; i < drafting_.size(); ++i) {
        VELA_ASSERT(drafts_[i].size() <= draft_requests_[i].max_nodes);
        drafted_ = drafted_ || drafts_[i].size() > 0;
        drafting_[i]->draft() = std::move(drafts_[i]);
    }
}

StepOutput Engine::verify_draft(Sequence& seq, std::span<float> rows) {
    const int64_t drafted = seq.draft().size();
    const int64_t depth = seq.draft().depth();
    int64_t accepted = 0, valid_kv = 0;
    const int64_t last = seq.n_kv();  // the fed last token's KV index
    StepOutput o = seq.append_verified(rows, verifier_, accepted, valid_kv, path_);
    seq.mark_computed(valid_kv);
    // The rejected drafts' KV goes before the prefix cache sees the new blocks: it never
    // enters the cache, and its slots are written again by the next step. A tree's accepted
    // branch moves behind the last token first.
    tail_.clear();
    for (int32_t node : path_) tail_.push_back(last + 1 + node);
    kv_->keep_tail(seq.id(), last + 1, tail_);
    storage_->apply(kv_->take_ops());
    kv_->cache_computed(seq.id(),
                        std::span(seq.tokens()).first(static_cast<size_t>(seq.n_computed())));
    if (drafter_) drafter_->accepted(seq.id(), seq.tokens());
    // The length follows the depth a step can accept (for a tree, not its node count).
    seq.draft_length().record(depth, accepted);
    ++stats_.spec_verify_steps;
    stats_.spec_draft_tokens += drafted;
    stats_.spec_accepted_tokens += accepted;
    stats_.spec_draft_depth += depth;
    stats_.generated_tokens += static_cast<int64_t>(o.tokens.size());
    return o;
}

}  // namespace vela
