#pragma once
// KV bookkeeping: the BlockPool that hands out blocks, the BlockTable of each live sequence, the
// prefix cache and the swap space's slots. It knows nothing about bytes: what must happen to the
// memory (a copy-on-write copy, a swap out or in) is emitted as BlockOps, which the backend's
// KvStorage carries out before the next forward (kv/kv_storage.h).
//
// Blocks are shared by fork() and freed by reference count. append() allocates the blocks new
// tokens need and, when the last block is shared and partially filled, moves the sequence to a
// fresh copy first (a Copy op), so that writing into the returned slots never changes another
// sequence's KV.
//
// Prefix caching (config.prefix_caching): full blocks whose tokens are computed are registered
// in a PrefixCache, which holds one reference of its own to each. A new sequence starts with the
// longest cached chain matching its tokens (acquire_cached_prefix). A cached block referenced
// only by the cache counts as free: the pool evicts it (oldest released first) when it runs dry.
//
// Swap (swap_out/swap_in): a preempted sequence's blocks are released after SwapOut ops copy
// them to host slots; swap_in takes fresh blocks and emits SwapIn ops to copy them back.
//
// Local group (config.local_window > 0; block_manager_local.cpp): models whose sliding-window
// layers see only the last local_window keys (Gemma 3) keep those layers' KV in a second pool.
// Each sequence has a second table (BlockTable::local) in step with the first, except that
// append() first releases the local blocks whose tokens no query from then on can see: a
// sequence holds about (local_window + its step's tokens) / block_size local blocks however
// long it grows. Local ops carry BlockOp::group 1. Prefix caching, swap and compaction
// (eviction) need every token's KV and are refused with a local group.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kv/block_pool.h"
#include "kv/block_table.h"
#include "kv/kv_storage.h"
#include "kv/prefix_cache.h"

namespace vela {

using SeqId = int64_t;

struct BlockManagerConfig {
    int64_t block_size = 16;  // tokens per block, any >= 1
    int64_t num_blocks = 0;
    bool prefix_caching = false;
    // The local group: a query at KV index p of the local layers sees keys (p - local_window,
    // p]; they have a pool of local_num_blocks blocks. 0: no local group.
    int64_t local_window = 0;
    int64_t local_num_blocks = 0;
};

// Tokens a sequence keeps when eviction compacts it (kv/eviction.h): their indices in its KV,
// ascending, for the rows of one layer and KV head (-1: all layers / all heads).
struct KeepGroup {
    int32_t layer = -1;
    int32_t head = -1;
    std::vector<int32_t> indices;
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

// Local blocks a sequence holds at most (BlockManager's local group) when it feeds up to
// step_tokens tokens a step: its window's and its step's, one more where they straddle a block
// boundary, and a copy-on-write copy.
inline int64_t local_blocks_per_sequence(int64_t window, int64_t step_tokens, int64_t block_size) {
    return (window + step_tokens + block_size - 1) / block_size + 2;
}
// A local pool for up to `sequences` running sequences that feed up to step_tokens tokens a
// step together (llama.cpp sizes its SWA cache alike: window x sequences + ubatch): each one's
// window, and one step's tokens. A sequence alone always fits (local_blocks_per_sequence); when
// several hold large chunks at once, appends that do not fit preempt as the main pool's do.
inline int64_t local_pool_blocks(int64_t window, int64_t step_tokens, int64_t block_size,
                                 int64_t sequences) {
    return sequences * ((window + block_size - 1) / block_size + 2) +
           (step_tokens + block_size - 1) / block_size + 1;
}

class BlockManager {
  public:
    // Receives block operations as they are emitted (KvCache applies them at once); without a
    // sink they queue until take_ops().
    using OpSink = std::function<void(const BlockOp&)>;

    // `hash` is a test hook for the prefix cache (forcing collisions).
    explicit BlockManager(const BlockManagerConfig& config,
                          PrefixCache::HashFn hash = &PrefixCache::chain_hash, OpSink sink = {});
    ~BlockManager();
    BlockManager(const BlockManager&) = delete;
    BlockManager& operator=(const BlockManager&) = delete;

    const BlockManagerConfig& config() const { return config_; }

    // Sequences. Unknown ids (or an id added twice) throw InvalidArgument.
    void add_sequence(SeqId id);
    bool has_sequence(SeqId id) const { return tables_.count(id) != 0; }
    // dst (new) shares all of src's blocks.
    void fork(SeqId src, SeqId dst);
    // Drops tokens >= n_tokens and releases the blocks no longer needed. With a local group,
    // InvalidArgument when the local blocks a query at n_tokens would see are released already
    // (n_tokens < local_min_tokens(id), n_tokens > 0).
    void truncate(SeqId id, int64_t n_tokens);
    // The fewest tokens truncate() can keep (besides 0): queries from there on see only local
    // blocks the sequence still holds. 0 without a local group or before any was released.
    int64_t local_min_tokens(SeqId id) const;
    // Releases all blocks of the sequence (or its swapped-out copy) and forgets it.
    void free(SeqId id);
    const BlockTable& table(SeqId id) const;
    int64_t n_tokens(SeqId id) const { return table(id).n_tokens; }

    // Blocks that append(id, n) would take from the pool (incl. a copy-on-write copy).
    int64_t blocks_needed(SeqId id, int64_t n) const;
    // Pure: whether append(id, n) would succeed now.
    bool can_append(SeqId id, int64_t n) const {
        return blocks_needed(id, n) <= num_free_blocks() && local_fits(table(id), n);
    }
    // Reserves n more tokens; returns their flat slots. Throws ResourceExhausted (and changes
    // nothing) when the blocks are not available.
    std::vector<int64_t> append(SeqId id, int64_t n);

    // Eviction: keeps n_keep tokens of the sequence, per group the rows at its indices (every
    // group lists n_keep of them), moved to indices [0, n_keep) by MoveRow ops; releases the
    // blocks no longer needed. Blocks the sequence alone holds are compacted in place; shared
    // ones (prefix cache, fork) are left to their other users and replaced by fresh blocks.
    // Returns false, changing nothing, when those fresh blocks are not free. When the kept rows
    // are whole blocks at their own offsets (the last one the sequence's last), the table just
    // drops the other blocks: no row moves. From then on the sequence's blocks never enter the
    // prefix cache (their rows no longer follow its tokens).
    bool compact(SeqId id, int64_t n_keep, std::span<const KeepGroup> groups);
    // Whether the sequence has been compacted.
    bool evicted(SeqId id) const { return evicted_.count(id) != 0; }
    // Token-tree verification: keeps tokens [0, from), then the tokens at `rows` (ascending,
    // >= from, in blocks this sequence alone holds) moved down to indices from, from + 1, ...
    // (MoveRow ops), and drops the rest. The sequence stays cacheable: its rows follow its
    // tokens again.
    void keep_tail(SeqId id, int64_t from, std::span<const int64_t> rows);

    // The block operations emitted since the last call, in order; the storage must carry them
    // out before the next forward writes or reads KV.
    std::vector<BlockOp> take_ops();

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
    // Pure: whether a new sequence can take `hit` and then append n tokens, in both groups.
    bool can_admit(const PrefixHit& hit, int64_t n) const {
        return blocks_to_admit(hit, n) <= num_free_blocks() && local_fits(BlockTable{}, n);
    }
    // Registers the sequence's full blocks among tokens[0, computed.size()), whose KV has been
    // written. Idempotent; no-op when prefix caching is off.
    void cache_computed(SeqId id, std::span<const int32_t> computed);
    bool prefix_caching() const { return prefix_ != nullptr; }
    PrefixCacheStats prefix_stats() const;

    // Swap to host memory. swap_out moves the sequence's KV to host slots (SwapOut ops) and
    // releases its blocks; the id is then swapped (has_sequence false) until swap_in (which
    // needs blocks_to_swap_in free blocks; SwapIn ops) or free.
    void swap_out(SeqId id);
    bool is_swapped(SeqId id) const { return swapped_.count(id) != 0; }
    int64_t blocks_to_swap_in(SeqId id) const;
    bool can_swap_in(SeqId id) const { return blocks_to_swap_in(id) <= num_free_blocks(); }
    void swap_in(SeqId id);
    int64_t num_swapped_blocks() const;
    // Host slots ever used at once: the swap space the storage has to hold.
    int64_t num_host_slots() const { return next_host_slot_; }

    // Free blocks include cached blocks that no sequence references (they are evicted on
    // demand); used = total - free.
    int64_t num_free_blocks() const;
    int64_t num_used_blocks() const { return num_total_blocks() - num_free_blocks(); }
    int64_t num_total_blocks() const { return pool_.num_total(); }
    const BlockPool& pool() const { return pool_; }
    bool has_local_group() const { return local_pool_ != nullptr; }
    const BlockPool& local_pool() const { return *local_pool_; }  // has_local_group() only
    int64_t num_sequences() const { return static_cast<int64_t>(tables_.size()); }

  private:
    BlockTable& mutable_table(SeqId id);
    // compact()'s row moves: the new table into `blocks` (fresh blocks for shared ones), the
    // MoveRow ops emitted; false, changing nothing, when the fresh blocks are not free.
    bool move_kept_rows(const BlockTable& t, int64_t bs, int64_t n_keep,
                        std::span<const KeepGroup> groups, std::vector<int32_t>& blocks);
    void emit(BlockOp op);
    int32_t allocate_host_slot();
    bool last_block_shared(const BlockTable& t) const;
    // The longest cached chain for tokens, leaving at least one token to compute.
    std::vector<int32_t> cached_prefix_blocks(std::span<const int32_t> tokens) const;
    // Pool access that keeps the prefix cache's LRU in step with reference counts.
    int32_t allocate_block();
    void retain_block(int32_t b);
    void release_block(int32_t b);
    void release_all(std::vector<int32_t>& blocks);
    // The local group (block_manager_local.cpp). The first block a sequence of `t` keeps once
    // n more tokens are appended: queries from t.n_tokens - 1 on see nothing before it.
    int64_t local_keep_from(const BlockTable& t) const;
    bool local_fits(const BlockTable& t, int64_t n) const;
    // append()'s local half: releases the blocks before local_keep_from, copies a shared last
    // block, allocates blocks up to n_tokens + n tokens (t.n_tokens not yet advanced).
    void local_append(BlockTable& t, int64_t n);
    void local_truncate(SeqId id, BlockTable& t, int64_t n_tokens);
    void require_no_local_group(const char* what) const;

    BlockManagerConfig config_;
    OpSink sink_;
    std::vector<BlockOp> ops_;
    BlockPool pool_;
    std::unique_ptr<BlockPool> local_pool_;  // with a local group
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
        std::vector<int32_t> host_slots;  // in block order
    };
    std::unordered_map<SeqId, Swapped> swapped_;
    std::unordered_set<SeqId> evicted_;
    std::vector<int32_t> free_host_slots_;
    int32_t next_host_slot_ = 0;
};

}  // namespace vela
