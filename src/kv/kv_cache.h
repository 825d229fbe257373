#pragma once
// Paged KV memory of one model: K and V storage of every layer, the BlockPool that hands out
// blocks, and the BlockTable of each live sequence.
//
// Storage per layer: K and V each [num_blocks][n_kv_heads][block_size][head_dim], so the keys
// of one head in one block are contiguous. A token's flat slot is block * block_size + offset.
//
// Blocks are shared by fork() and freed by reference count. append() allocates the blocks new
// tokens need and copies a shared, partially filled last block first (copy-on-write), so that
// writing into the returned slots never changes another sequence's KV.
//
// Prefix caching (config.prefix_caching): full blocks whose tokens are computed are registered
// in a PrefixCache, which holds one reference of its own to each. A new sequence starts with the
// longest cached chain matching its tokens (acquire_cached_prefix). A cached block referenced
// only by the cache counts as free: the pool evicts it (oldest released first) when it runs dry.
//
// Swap (swap_out/swap_in): a preempted sequence's KV is copied to host memory and its blocks
// released; swap_in copies it back into fresh blocks.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "kv/block_pool.h"
#include "kv/block_table.h"
#include "kv/prefix_cache.h"

namespace vela {

using SeqId = int64_t;

struct KvCacheConfig {
    int64_t n_layers = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 16;  // tokens per block, any >= 1
    int64_t num_blocks = 0;
    DType dtype = DType::F16;  // F32 or F16
    bool prefix_caching = false;
};

// Prefix-cache counters, in tokens (as vLLM's /metrics reports them) and blocks.
struct PrefixCacheStats {
    int64_t query_tokens = 0;      // tokens of the sequences looked up
    int64_t hit_tokens = 0;        // of those, found in the cache
    int64_t cached_blocks = 0;     // blocks indexed now
    int64_t evictable_blocks = 0;  // of those, referenced by no sequence (count as free)
};

// What acquire_cached_prefix would take for some tokens, asked without taking it (admission
// checks whether a sequence fits before it acquires anything).
struct PrefixHit {
    int64_t n_tokens = 0;  // tokens the hit covers (whole blocks)
    int64_t n_blocks = 0;
    // Of those blocks, the ones only the cache references: they count as free now and stop
    // being free once acquired.
    int64_t n_evictable = 0;
};

// One layer's K/V storage as the attention kernels see it; the shape lets them check that the
// caller's parameters describe this cache.
struct KvLayerView {
    const void* k = nullptr;
    const void* v = nullptr;
    DType dtype = DType::F16;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 0;
};

class KvCache {
  public:
    // `hash` is a test hook for the prefix cache (forcing collisions).
    explicit KvCache(const KvCacheConfig& config,
                     PrefixCache::HashFn hash = &PrefixCache::chain_hash);
    ~KvCache();
    KvCache(const KvCache&) = delete;
    KvCache& operator=(const KvCache&) = delete;

    const KvCacheConfig& config() const { return config_; }

    // Sequences. Unknown ids (or an id added twice) throw InvalidArgument.
    void add_sequence(SeqId id);
    bool has_sequence(SeqId id) const { return tables_.count(id) != 0; }
    // dst (new) shares all of src's blocks.
    void fork(SeqId src, SeqId dst);
    // Drops tokens >= n_tokens and releases the blocks no longer needed.
    void truncate(SeqId id, int64_t n_tokens);
    // Releases all blocks of the sequence (or its swapped-out copy) and forgets it.
    void free(SeqId id);
    const BlockTable& table(SeqId id) const;
    int64_t n_tokens(SeqId id) const { return table(id).n_tokens; }

    // Blocks that append(id, n) would take from the pool (incl. a copy-on-write copy).
    int64_t blocks_needed(SeqId id, int64_t n) const;
    // Pure: whether append(id, n) would succeed now.
    bool can_append(SeqId id, int64_t n) const { return blocks_needed(id, n) <= num_free_blocks(); }
    // Reserves n more tokens; returns their flat slots. Throws ResourceExhausted (and changes
    // nothing) when the blocks are not available.
    std::vector<int64_t> append(SeqId id, int64_t n);

    // Stores rows k, v (float [slots.size()][n_kv_heads][head_dim]) into their slots.
    void write(int64_t layer, std::span<const int64_t> slots, const float* k, const float* v);
    // Reads one token's K or V row of one head back as float (tests, debugging, swap-out).
    void read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const;

    KvLayerView layer(int64_t layer) const;
    const void* k_data(int64_t layer) const { return this->layer(layer).k; }
    const void* v_data(int64_t layer) const { return this->layer(layer).v; }

    // Prefix cache. acquire_cached_prefix: `id` must have no tokens yet; it takes the longest
    // cached chain of full blocks equal to the start of `tokens`, always leaving at least one
    // token uncached (the model has to compute something to produce logits), and returns the
    // number of tokens it now holds. 0 when prefix caching is off.
    int64_t acquire_cached_prefix(SeqId id, std::span<const int32_t> tokens);
    // Pure: what acquire_cached_prefix(., tokens) would take now (empty when prefix caching is
    // off). No hit counters move.
    PrefixHit match_cached_prefix(std::span<const int32_t> tokens) const;
    // Pure: free blocks that a new sequence takes by acquiring `hit` and then appending n
    // tokens (its fresh blocks plus the evictable hit blocks). The check of a check/act
    // admission: blocks_to_admit(...) <= num_free_blocks() means both calls succeed.
    int64_t blocks_to_admit(const PrefixHit& hit, int64_t n) const;
    // Registers the sequence's full blocks among tokens[0, computed.size()), whose KV has been
    // written. Idempotent; no-op when prefix caching is off.
    void cache_computed(SeqId id, std::span<const int32_t> computed);
    bool prefix_caching() const { return prefix_ != nullptr; }
    PrefixCacheStats prefix_stats() const;

    // Swap to host memory. swap_out copies the sequence's KV to host memory and releases its
    // blocks; the id is then swapped (has_sequence false) until swap_in (which needs
    // blocks_to_swap_in free blocks) or free.
    void swap_out(SeqId id);
    bool is_swapped(SeqId id) const { return swapped_.count(id) != 0; }
    int64_t blocks_to_swap_in(SeqId id) const;
    bool can_swap_in(SeqId id) const { return blocks_to_swap_in(id) <= num_free_blocks(); }
    void swap_in(SeqId id);
    int64_t num_swapped_blocks() const;

    // Free blocks include cached blocks that no sequence references (they are evicted on
    // demand); used = total - free.
    int64_t num_free_blocks() const;
    int64_t num_used_blocks() const { return num_total_blocks() - num_free_blocks(); }
    int64_t num_total_blocks() const { return pool_.num_total(); }
    const BlockPool& pool() const { return pool_; }
    int64_t num_sequences() const { return static_cast<int64_t>(tables_.size()); }

  private:
    BlockTable& mutable_table(SeqId id);
    size_t block_bytes() const;  // one block of one layer's K (or V)
    std::byte* block_ptr(int64_t layer, bool value, int32_t block) const;
    void copy_block(int32_t from, int32_t to);
    bool last_block_shared(const BlockTable& t) const;
    // The longest cached chain for tokens, leaving at least one token to compute.
    std::vector<int32_t> cached_prefix_blocks(std::span<const int32_t> tokens) const;
    // Pool access that keeps the prefix cache's LRU in step with reference counts.
    int32_t allocate_block();
    void retain_block(int32_t b);
    void release_block(int32_t b);
    void release_all(std::vector<int32_t>& blocks);

    KvCacheConfig config_;
    size_t elem_size_;
    BlockPool pool_;
    std::unordered_map<SeqId, BlockTable> tables_;

    // Per sequence: how many leading blocks are registered, and where their chain ends.
    struct CachedChain {
        int64_t n_blocks = 0;
        PrefixLink link;
    };
    std::unique_ptr<PrefixCache> prefix_;
    std::unordered_map<SeqId, CachedChain> chains_;
    int64_t query_tokens_ = 0;
    int64_t hit_tokens_ = 0;

    struct Swapped {
        int64_t n_tokens = 0;
        int64_t n_blocks = 0;
        std::vector<std::byte> data;  // [block][layer][K, V] of block_bytes() each
    };
    std::unordered_map<SeqId, Swapped> swapped_;
    // Per layer: K at 2 * layer, V at 2 * layer + 1.
    struct AlignedFree {
        void operator()(std::byte* p) const;
    };
    std::vector<std::unique_ptr<std::byte[], AlignedFree>> storage_;
};

}  // namespace vela
