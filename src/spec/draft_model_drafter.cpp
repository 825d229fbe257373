#include "spec/draft_model_drafter.h"

#include <algorithm>

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
                                     KvFormats kv_formats)
    : model_(draft),
      backend_(backend),
      n_vocab_(static_cast<int32_t>(draft.hparams().n_vocab)),
      blocks_(pool_config(kv_tokens)) {
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
    std::vector<int32_t>& held = it->second.held;
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
    // Active sequences (indexes into requests) and what each feeds next.
    std::vector<size_t> active;
    std::vector<int64_t> ids;
    std::vector<std::vector<int32_t>> feed;
    for (size_t i = 0; i < requests.size(); ++i) {
        const DraftRequest& r = requests[i];
        State& s = state_for(r);
        // Roll back to the longest common prefix, keeping at least the last token to feed.
        accepted(r.seq_id, r.tokens.first(r.tokens.size() - 1));
        std::vector<int32_t> rest(r.tokens.begin() + static_cast<long>(s.held.size()),
                                  r.tokens.end());
        // Room for the catch-up and the k - 1 drafts fed back.
        const int64_t need = static_cast<int64_t>(rest.size()) + r.max_tokens - 1;
        if (!blocks_.can_append(r.seq_id, need)) {
            drop(r.seq_id);
            continue;
        }
        s.held.insert(s.held.end(), rest.begin(), rest.end());
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
            s.sampler->distribution(row, s.held, q_);
            const int32_t token =
                s.sampler->params().temperature == 0.0f
                    ? static_cast<int32_t>(std::max_element(q_.begin(), q_.end()) - q_.begin())
                    : s.sampler->sample_from(q_);
            d.tokens.push_back(token);
            // Greedy drafts are deterministic (q one-hot); sampled ones carry q.
            if (s.sampler->params().temperature != 0.0f)
                d.probs.insert(d.probs.end(), q_.begin(), q_.end());
            if (d.size() < r.max_tokens) {
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
}

}  // namespace vela::spec
