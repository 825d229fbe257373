#pragma once
// A BlockManager and a HostKvStorage together, block operations carried out as they are
// emitted: the paged KV for code that runs without a backend (tests, benchmarks of the
// attention kernels). The engine keeps the two apart: the scheduler's BlockManager, the
// backend's KvStorage, the step's BlockOps handed from one to the other.
#include <cstdint>
#include <span>

#include "core/dtype.h"
#include "kv/block_manager.h"
#include "kv/host_kv_storage.h"

namespace vela {

struct KvCacheConfig {
    int64_t n_layers = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 16;  // tokens per block, any >= 1
    int64_t num_blocks = 0;
    KvFormats formats = KvFormat::F16;
    bool prefix_caching = false;
    bool attention_scores = false;  // KvLayout::attention_scores
};

KvLayout kv_layout(const KvCacheConfig& c);

class KvCache : public BlockManager {
  public:
    explicit KvCache(const KvCacheConfig& config,
                     PrefixCache::HashFn hash = &PrefixCache::chain_hash);

    // Hides BlockManager::config(): the whole configuration, shape and format included.
    const KvCacheConfig& config() const { return config_; }
    HostKvStorage& storage() { return storage_; }
    const HostKvStorage& storage() const { return storage_; }

    // Stores rows k, v (float [slots.size()][n_kv_heads][head_dim]) into their slots, which
    // must be in blocks this sequence owns alone (append() made sure of it).
    void write(int64_t layer, std::span<const int64_t> slots, const float* k, const float* v);
    void read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const {
        storage_.read(layer, slot, kv_head, value, out);
    }
    KvLayerView layer(int64_t layer) const { return storage_.layer(layer); }

  private:
    KvCacheConfig config_;
    HostKvStorage storage_;
};

}  // namespace vela
