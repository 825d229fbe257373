#include "kv/kv_cache.h"

#include "core/error.h"

namespace vela {

KvLayout kv_layout(const KvCacheConfig& c) {
    return KvLayout{c.n_layers, c.n_kv_heads, c.head_dim, c.block_size, c.num_blocks,
                    c.attention_scores};
}

// The storage is a member initialised after the base: the sink only runs once an op is
// emitted, by which time both exist.
KvCache::KvCache(const KvCacheConfig& config, PrefixCache::HashFn hash)
    : BlockManager(BlockManagerConfig{config.block_size, config.num_blocks, config.prefix_caching},
                   hash, [this](const BlockOp& op) { storage_.apply({&op, 1}); }),
      config_(config),
      storage_(kv_layout(config), config.formats) {}

void KvCache::write(int64_t layer, std::span<const int64_t> slots, const float* k,
                    const float* v) {
    for (int64_t slot : slots) {
        // Writing into a shared block would change another sequence's KV.
        VELA_ASSERT(pool().ref_count(static_cast<int32_t>(slot / config_.block_size)) == 1);
    }
    storage_.write(layer, slots, k, v);
}

}  // namespace vela
