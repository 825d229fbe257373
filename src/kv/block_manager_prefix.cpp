// BlockManager's prefix-cache side: what a new sequence would find in the cache (pure), taking those
// blocks, and registering the blocks a sequence has computed. The index itself is PrefixCache.
#include "core/error.h"
#include "kv/block_manager.h"

namespace vela {

std::vector<int32_t> BlockManager::cached_prefix_blocks(std::span<const int32_t> tokens) const {
    if (!prefix_ || tokens.empty()) return {};
    // At least one token is left to compute.
    const int64_t max_blocks = (static_cast<int64_t>(tokens.size()) - 1) / config_.block_size;
    return prefix_->match(tokens, max_blocks);
}

PrefixHit BlockManager::match_cached_prefix(std::span<const int32_t> tokens) const {
    PrefixHit hit;
    for (int32_t b : cached_prefix_blocks(tokens)) {
        ++hit.n_blocks;
        if (pool_.ref_count(b) == 1) ++hit.n_evictable;  // only the cache's own reference
    }
    hit.n_tokens = hit.n_blocks * config_.block_size;
    return hit;
}

int64_t BlockManager::blocks_to_admit(const PrefixHit& hit, int64_t n) const {
    if (n < 0) fail<InvalidArgument>("cannot admit a KV sequence with {} new tokens", n);
    const int64_t bs = config_.block_size;
    const int64_t fresh = (hit.n_tokens + n + bs - 1) / bs - hit.n_blocks;
    return fresh + hit.n_evictable;
}

int64_t BlockManager::acquire_cached_prefix(SeqId id, std::span<const int32_t> tokens) {
    BlockTable& t = mutable_table(id);
    if (t.n_tokens != 0) fail<InvalidArgument>("KV sequence {} already holds tokens", id);
    if (!prefix_ || tokens.empty()) return 0;
    std::vector<int32_t> hit = cached_prefix_blocks(tokens);
    query_tokens_ += static_cast<int64_t>(tokens.size());
    if (hit.empty()) return 0;
    for (int32_t b : hit) retain_block(b);
    t.blocks = hit;
    t.n_tokens = static_cast<int64_t>(hit.size()) * config_.block_size;
    chains_[id] = CachedChain{static_cast<int64_t>(hit.size()), prefix_->link_of(hit.back())};
    hit_tokens_ += t.n_tokens;
    return t.n_tokens;
}

void BlockManager::cache_computed(SeqId id, std::span<const int32_t> computed) {
    if (!prefix_ || evicted(id)) return;
    const BlockTable& t = table(id);
    if (static_cast<int64_t>(computed.size()) > t.n_tokens) {
        fail<InvalidArgument>("KV sequence {} holds {} tokens, {} claimed computed", id, t.n_tokens,
                              computed.size());
    }
    const int64_t bs = config_.block_size;
    const int64_t n_full = static_cast<int64_t>(computed.size()) / bs;
    CachedChain& chain = chains_[id];
    while (chain.n_blocks < n_full) {
        const int64_t i = chain.n_blocks;
        const int32_t block = t.blocks[static_cast<size_t>(i)];
        const PrefixCache::Insert r =
            prefix_->insert(chain.link, block,
                            computed.subspan(static_cast<size_t>(i * bs), static_cast<size_t>(bs)));
        if (!r.ok) break;  // a colliding hash holds other tokens: this chain is not cacheable
        if (r.added) pool_.ref(block);  // the cache's own reference (the sequence holds one)
        chain.link = r.link;
        ++chain.n_blocks;
    }
}

PrefixCacheStats BlockManager::prefix_stats() const {
    PrefixCacheStats s;
    s.query_tokens = query_tokens_;
    s.hit_tokens = hit_tokens_;
    if (prefix_) {
        s.cached_blocks = prefix_->size();
        s.evictable_blocks = prefix_->num_evictable();
    }
    return s;
}

}  // namespace vela
