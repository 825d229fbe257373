#include "spec/draft_model_drafter.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace vela::spec {
namespace {

constexpr int64_t kBlockSize = 16;

void check_same_vocabulary(const Model& draft, const Tokenizer& draft_tok, const Model& target,
                           const Tokenizer& target_tok) {
    if (draft_tok.vocab_size() != target_tok.vocab_size()) {
        fail<InvalidArgument>(
            "draft model: its vocabulary has {} tokens, the target's {}; speculative decoding "
            "needs the same tokenizer",
            draft_tok.vocab_size(), target_tok.vocab_size());
    }
    for (int32_t id = 0; id < target_tok.vocab_size(); ++id) {
        if (draft_tok.token_text(id) != target_tok.token_text(id)) {
            fail<InvalidArgument>(
                "draft model: token {} is '{}' there and '{}' in the target; speculative "
                "decoding needs the same tokenizer",
                id, draft_tok.token_text(id), target_tok.token_text(id));
        }
    }
    if (draft.hparams().n_vocab != target.hparams().n_vocab) {
        fail<InvalidArgument>("draft model: {} logits per token, the target {}",
                              draft.hparams().n_vocab, target.hparams().n_vocab);
    }
}

BlockManagerConfig pool_config(int64_t kv_tokens) {
    BlockManagerConfig c;
    c.block_size = kBlockSize;
    c.num_blocks = std::max<int64_t>(1, (kv_tokens + kBlockSize - 1) / kBlockSize);
    return c;
}

}  // namespace

DraftModelDrafter::DraftModelDrafter(Model& draft, const Tokenizer& draft_tokenizer,
                                     Backend& backend, const Model& target,
                                     const Tokenizer& target_tokenizer, int64_t kv_tokens,
                                     KvFormats kv_formats, DraftTreeOptions tree)
    : model_(draft),
      backend_(backend),
      n_vocab_(static_cast<int32_t>(draft.hparams().n_vocab)),
      blocks_(pool_config(kv_tokens)),
      sizer_(tree) {
    check_same_vocabulary(draft, draft_tokenizer, target, target_tokenizer);
    storage_ = backend_.make_kv_storage(model_.kv_layout(kBlockSize, blocks_.num_total_blocks()),
                                        kv_formats);
}

DraftModelDrafter::~DraftModelDrafter() = default;

int64_t DraftModelDrafter::n_held(int64_t seq_id) const {
    auto it = states_.find(seq_id);
    return it == states_.end() ? 0 : static_cast<int64_t>(it->second.held.size());
}

void DraftModelDrafter::drop(int64_t seq_id) {
    if (blocks_.has_sequence(seq_id)) blocks_.free(seq_id);
    states_.erase(seq_id);
}

void DraftModelDrafter::release(int64_t seq_id) {
    drop(seq_id);
}

void DraftModelDrafter::accepted(int64_t seq_id, std::span<const int32_t> tokens) {
    auto it = states_.find(seq_id);
    if (it == states_.end()) return;
    // (A draft the scheduler cut counts its cut nodes as rejected: rare, a small bias.)
    if (trees() && it->second.tree.size() > 0)
        record_outcome(it->second.tree, tokens, it->second.base, sizer_);
    it->second.tree.clear();
    roll_back(seq_id, it->second, tokens);
}

void DraftModelDrafter::roll_back(int64_t seq_id, State& s, std::span<const int32_t> tokens) {
    std::vector<int32_t>& held = s.held;
    const auto common = static_cast<size_t>(
        std::mismatch(held.begin(), held.end(), tokens.begin(), tokens.end()).first - held.begin());
    held.resize(common);
    blocks_.truncate(seq_id, static_cast<int64_t>(common));
}

DraftModelDrafter::State& DraftModelDrafter::state_for(const DraftRequest& r) {
    auto [it, fresh] = states_.try_emplace(r.seq_id);
    if (fresh) {
        // Its own RNG stream, derived from the sequence's seed (draws must not disturb the
        // target sampler's stream, which the verifier uses).
        SamplingParams p = *r.sampling;
        if (p.seed != SamplingParams::kRandomSeed) p.seed ^= 0x9E3779B97F4A7C15ull;
        it->second.sampler = std::make_unique<Sampler>(p);
        blocks_.add_sequence(r.seq_id);
    }
    return it->second;
}

void DraftModelDrafter::forward(const std::vector<int64_t>& ids,
                                const std::vector<std::vector<int32_t>>& feed) {
    batch_.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
        const int64_t first = blocks_.n_tokens(ids[i]);
        const std::vector<int64_t> slots =
            blocks_.append(ids[i], static_cast<int64_t>(feed[i].size()));
        const BlockTable& table = blocks_.table(ids[i]);
        batch_.add_sequence(feed[i], first, slots, table.blocks, table.n_tokens, true);
    }
    batch_.finish();
    model_.forward(batch_, *storage_, backend_, logits_);
}

void DraftModelDrafter::propose(std::span<const DraftRequest> requests,
                                std::vector<Draft>& drafts) {
    drafts.assign(requests.size(), Draft{});
    catch_up_ = 0;
    // Active sequences (indexes into requests) and what each feeds next.
    std::vector<size_t> active;
    std::vector<int64_t> ids;
    std::vector<std::vector<int32_t>> feed;
    for (size_t i = 0; i < requests.size(); ++i) {
        const DraftRequest& r = requests[i];
        State& s = state_for(r);
        // Roll back to the longest common prefix, keeping at least the last token to feed.
        roll_back(r.seq_id, s, r.tokens.first(r.tokens.size() - 1));
        std::vector<int32_t> rest(r.tokens.begin() + static_cast<long>(s.held.size()),
                                  r.tokens.end());
        // Room for the catch-up and the k - 1 drafts fed back.
        const int64_t need = static_cast<int64_t>(rest.size()) + r.max_tokens - 1;
        if (!blocks_.can_append(r.seq_id, need)) {
            drop(r.seq_id);
            continue;
        }
        catch_up_ += static_cast<int64_t>(rest.size()) - 1;
        s.held.insert(s.held.end(), rest.begin(), rest.end());
        s.tree.clear();
        s.base = r.tokens.size();
        s.spine = -1;
        s.depth = 0;
        if (trees()) s.widths = sizer_.widths(r.max_tokens, std::max(r.max_nodes, r.max_tokens));
        active.push_back(i);
        ids.push_back(r.seq_id);
        feed.push_back(std::move(rest));
    }
    const size_t vocab = static_cast<size_t>(n_vocab_);
    while (!active.empty()) {
        forward(ids, feed);
        std::vector<size_t> still;
        std::vector<int64_t> still_ids;
        std::vector<std::vector<int32_t>> next;
        for (size_t a = 0; a < active.size(); ++a) {
            const DraftRequest& r = requests[active[a]];
            State& s = states_.at(r.seq_id);
            Draft& d = drafts[active[a]];
            const std::span<const float> row(logits_.data() + a * vocab, vocab);
            const int32_t token = extend(s, row, d);
            if (s.depth < r.max_tokens) {
                s.held.push_back(token);
                still.push_back(active[a]);
                still_ids.push_back(r.seq_id);
                next.push_back({token});
            }
        }
        active = std::move(still);
        ids = std::move(still_ids);
        feed = std::move(next);
    }
    if (!trees()) return;
    for (size_t i = 0; i < requests.size(); ++i) {
        Draft& d = drafts[i];
        // No siblings: a chain (verified the same way, fed without a tree mask).
        if (d.depth() == d.size()) d.parents.clear();
        if (d.size() > 0) states_.at(requests[i].seq_id).tree = d;
    }
}

int32_t DraftModelDrafter::extend(State& s, std::span<const float> row, Draft& d) {
    s.sampler->distribution(row, s.held, q_);
    const bool greedy = s.sampler->params().temperature == 0.0f;
    const auto argmax = static_cast<int32_t>(std::max_element(q_.begin(), q_.end()) - q_.begin());
    ++s.depth;
    if (!trees()) {
        // Greedy drafts are deterministic (q one-hot); sampled ones carry q.
        const int32_t token = greedy ? argmax : s.sampler->sample_from(q_);
        d.tokens.push_back(token);
        if (!greedy) d.probs.insert(d.probs.end(), q_.begin(), q_.end());
        return token;
    }
    // Siblings rank by the draft's processed distribution when sampling (its survivors only);
    // greedy q is one-hot, so there by the logits.
    const int32_t width = s.widths[static_cast<size_t>(s.depth - 1)];
    s.spine = greedy ? append_spine_level(argmax, row, -std::numeric_limits<float>::infinity(),
                                          width, s.spine, d)
                     : append_spine_level(argmax, q_, 0.0f, width, s.spine, d);
    return argmax;
}

}  // namespace vela::spec
