#include "engine/forward_driver.h"

#include "core/error.h"

namespace vela {
namespace {
BlockManagerConfig config_for(int64_t n_ctx, int64_t block_size, int64_t batch_size,
                              int64_t window) {
    if (block_size < 1) fail<InvalidArgument>("KV block size {} must be >= 1", block_size);
    BlockManagerConfig c;
    c.block_size = block_size;
    c.num_blocks = (n_ctx + block_size - 1) / block_size;
    const int64_t local = local_blocks_per_sequence(window, batch_size, block_size);
    if (window > 0 && local < c.num_blocks) {
        c.local_window = window;
        c.local_num_blocks = local;
    }
    return c;
}
}  // namespace

ForwardDriver::ForwardDriver(Model& model, Backend& backend, int64_t n_ctx, int64_t batch_size,
                             KvFormats kv_formats, const EvictionConfig& eviction,
                             int64_t block_size, bool swa_full)
    : model_(model),
      backend_(backend),
      batch_size_(batch_size),
      blocks_(config_for(n_ctx, block_size, batch_size,
                         swa_full ? 0 : model.hparams().sliding_window)) {
    KvLayout layout = model.kv_layout(block_size, blocks_.num_total_blocks(),
                                      blocks_.config().local_num_blocks);
    eviction.validate();
    if (eviction.enabled()) {
        if (model.hparams().sliding_window > 0) {
            fail<InvalidArgument>(
                "KV eviction is not supported for a model with its own sliding "
                "window ({})",
                model.hparams().arch);
        }
        layout.attention_scores = eviction.score_mode() != KvScoreMode::None;
        evictor_ = std::make_unique<KvEvictor>(eviction, layout);
        batch_.kv_scores = eviction.score_mode();
    }
    storage_ = model.make_kv_storage(backend, layout, kv_formats);
    blocks_.add_sequence(kSeq);
}

void ForwardDriver::reset() {
    blocks_.free(kSeq);
    blocks_.add_sequence(kSeq);
    n_seen_ = 0;
}

void ForwardDriver::forward(const int32_t* tokens, int64_t n, bool last_logits, bool all_logits) {
    if (!blocks_.can_append(kSeq, n)) {
        fail<ResourceExhausted>("{} tokens do not fit the context", blocks_.n_tokens(kSeq) + n);
    }
    const std::vector<int64_t> slots = blocks_.append(kSeq, n);
    const BlockTable& table = blocks_.table(kSeq);
    batch_.clear();
    batch_.add_sequence({tokens, static_cast<size_t>(n)}, n_seen_, slots, table.blocks,
                        table.n_tokens, last_logits, all_logits);
    batch_.add_local(table, blocks_.config().block_size);
    batch_.finish();
    storage_->apply(blocks_.take_ops());
    model_.forward(batch_, *storage_, backend_, step_logits_);
    n_seen_ += n;
    if (evictor_ && evictor_->due(blocks_.n_tokens(kSeq), n_seen_)) {
        const std::vector<KeepGroup> keep = evictor_->plan(*storage_, blocks_.table(kSeq), n_seen_);
        // One sequence holds every block: compaction is in place and cannot run short.
        const bool compacted =
            blocks_.compact(kSeq, static_cast<int64_t>(keep.front().indices.size()), keep);
        VELA_ASSERT(compacted);
        storage_->apply(blocks_.take_ops());
    }
}

const std::vector<float>& ForwardDriver::evaluate(const std::vector<int32_t>& tokens,
                                                  bool all_logits) {
    reset();
    logits_.clear();
    const int64_t n = static_cast<int64_t>(tokens.size());
    for (int64_t begin = 0; begin < n; begin += batch_size_) {
        const int64_t len = std::min(batch_size_, n - begin);
        const bool last = begin + len == n;
        forward(tokens.data() + begin, len, last, all_logits);
        logits_.insert(logits_.end(), step_logits_.begin(), step_logits_.end());
    }
    return logits_;
}

const std::vector<float>& ForwardDriver::extend(const std::vector<int32_t>& tokens) {
    forward(tokens.data(), static_cast<int64_t>(tokens.size()), true, false);
    return step_logits_;
}

}  // namespace vela
