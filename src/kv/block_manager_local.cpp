// BlockManager's local group: the KV of sliding-window layers (Gemma 3's local layers), of which
// a sequence keeps only the blocks that its queries can still see. A query at KV index p of
// those layers sees keys (p - local_window, p]; the step's first query is at n_tokens, or at
// n_tokens - 1 when a second append in the step adds draft tokens after its decode token. So
// append() releases the local blocks whose tokens are all before n_tokens - local_window, and a
// sequence holds ceil((local_window + its step's tokens) / block_size) + 1 of them at most.
#include "core/error.h"
#include "kv/block_manager.h"

namespace vela {

int64_t BlockManager::local_keep_from(const BlockTable& t) const {
    const int64_t first_seen = t.n_tokens - config_.local_window;
    if (first_seen <= 0) return t.local_first;
    return std::max(t.local_first, first_seen / config_.block_size);
}

bool BlockManager::local_fits(const BlockTable& t, int64_t n) const {
    if (!local_pool_ || n <= 0) return true;
    const int64_t bs = config_.block_size;
    const int64_t keep_from = local_keep_from(t);
    // Released first: the dropped blocks only this sequence holds become free.
    int64_t freed = 0;
    for (int64_t b = t.local_first; b < keep_from; ++b) {
        freed += local_pool_->ref_count(t.local[static_cast<size_t>(b - t.local_first)]) == 1;
    }
    const int64_t n_blocks = t.local_first + static_cast<int64_t>(t.local.size());
    const int64_t fresh = (t.n_tokens + n + bs - 1) / bs - n_blocks;
    const bool copy = t.n_tokens % bs != 0 && keep_from < n_blocks &&
                      local_pool_->ref_count(t.local.back()) > 1;
    return fresh + (copy ? 1 : 0) <= local_pool_->num_free() + freed;
}

void BlockManager::local_append(BlockTable& t, int64_t n) {
    const int64_t bs = config_.block_size;
    const int64_t keep_from = local_keep_from(t);
    const auto dropped = static_cast<long>(keep_from - t.local_first);
    for (long i = 0; i < dropped; ++i) local_pool_->unref(t.local[static_cast<size_t>(i)]);
    t.local.erase(t.local.begin(), t.local.begin() + dropped);
    t.local_first = keep_from;
    if (t.n_tokens % bs != 0 && !t.local.empty() && local_pool_->ref_count(t.local.back()) > 1) {
        const int32_t copy = local_pool_->allocate();
        emit(BlockOp{BlockOp::Kind::Copy, t.local.back(), copy, -1, -1, 1});
        local_pool_->unref(t.local.back());
        t.local.back() = copy;
    }
    const int64_t n_blocks = (t.n_tokens + n + bs - 1) / bs;
    if (t.local.empty()) t.local_first = std::max(t.local_first, t.n_tokens / bs);
    while (t.local_first + static_cast<int64_t>(t.local.size()) < n_blocks) {
        t.local.push_back(local_pool_->allocate());
    }
}

int64_t BlockManager::local_min_tokens(SeqId id) const {
    const BlockTable& t = table(id);
    if (!local_pool_ || t.local_first == 0) return 0;
    return t.local_first * config_.block_size + config_.local_window - 1;
}

void BlockManager::local_truncate(SeqId id, BlockTable& t, int64_t n_tokens) {
    if (n_tokens > 0 && n_tokens < local_min_tokens(id)) {
        fail<InvalidArgument>(
            "cannot truncate KV sequence {} to {} tokens: the window of its local layers starts "
            "at token {} now",
            id, n_tokens, t.local_first * config_.block_size);
    }
    const int64_t bs = config_.block_size;
    const int64_t keep = n_tokens == 0 ? 0 : (n_tokens + bs - 1) / bs - t.local_first;
    while (static_cast<int64_t>(t.local.size()) > keep) {
        local_pool_->unref(t.local.back());
        t.local.pop_back();
    }
    if (n_tokens == 0) t.local_first = 0;
}

void BlockManager::require_no_local_group(const char* what) const {
    if (local_pool_) {
        fail<InvalidArgument>(
            "{} needs every token's KV, but the sliding-window layers keep only their window "
            "(keep it all: --swa-full)",
            what);
    }
}

}  // namespace vela
