#pragma once
// Index of full KV blocks by content, so that a new sequence whose prompt starts with tokens
// already computed can take their blocks instead of recomputing them.
//
// A block's key is a chained hash: hash(parent block's hash, the block's token ids), so a key
// stands for the whole prefix up to the end of the block. A hash is never trusted alone: every
// hit compares the block's tokens, and the entry must have been registered right after the
// entry matched for the previous block (by a never-reused generation number), so a hit is exact
// even if two prefixes collide.
//
// The index only tracks ids; KvCache owns the reference counts. A cached block whose only
// reference is the cache's own is "evictable": it stays indexed in an LRU list until the pool
// runs dry, then the oldest one is evicted first.
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace vela {

// Where a sequence's chain of cached blocks ends: the last registered block's hash and
// generation (both 0 before the first block).
struct PrefixLink {
    uint64_t hash = 0;
    uint64_t gen = 0;
};

class PrefixCache {
  public:
    using HashFn = uint64_t (*)(uint64_t parent, std::span<const int32_t> tokens);
    // XXH3-64 of the parent hash followed by the token ids.
    static uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens);

    // `hash` is a test hook (forcing collisions); production uses chain_hash.
    explicit PrefixCache(int64_t block_size, HashFn hash = &chain_hash);

    int64_t block_size() const { return block_size_; }

    // The longest chain of cached blocks equal to tokens' leading full blocks, at most
    // max_blocks long. Pure.
    std::vector<int32_t> match(std::span<const int32_t> tokens, int64_t max_blocks) const;
    // The link after a block returned by match() (to continue registering after it).
    PrefixLink link_of(int32_t block) const;

    // Registers `block`, holding `tokens` (exactly one block), after `parent`. Returns the link
    // to continue the chain with, and whether `block` itself was added (false when an equal
    // block is already cached, or a different one holds the same hash: the chain then goes on
    // through the cached entry, or stops, see `ok`).
    struct Insert {
        PrefixLink link;
        bool added = false;  // the caller must hold a reference for the cache
        bool ok = false;     // false: the chain cannot continue (hash taken by other tokens)
    };
    Insert insert(PrefixLink parent, int32_t block, std::span<const int32_t> tokens);

    bool contains(int32_t block) const { return entries_.count(block) != 0; }
    int64_t size() const { return static_cast<int64_t>(entries_.size()); }

    // LRU of evictable blocks (only the cache references them).
    void mark_evictable(int32_t block);
    void mark_in_use(int32_t block);
    int64_t num_evictable() const { return static_cast<int64_t>(lru_.size()); }
    // Forgets the least recently released evictable block and returns its id; the caller drops
    // the cache's reference. Requires num_evictable() > 0.
    int32_t evict_oldest();
    // Forgets a block in use (not evictable); the caller drops the cache's reference. Blocks
    // chained after it become unreachable, as after evict_oldest.
    void erase(int32_t block);

  private:
    struct Entry {
        uint64_t hash = 0;
        uint64_t gen = 0;
        uint64_t parent_gen = 0;
        std::vector<int32_t> tokens;
        std::list<int32_t>::iterator lru;  // valid iff evictable
        bool evictable = false;
    };
    const Entry* find(PrefixLink parent, std::span<const int32_t> tokens, uint64_t hash) const;

    int64_t block_size_;
    HashFn hash_;
    uint64_t next_gen_ = 1;
    std::unordered_map<uint64_t, int32_t> by_hash_;
    std::unordered_map<int32_t, Entry> entries_;
    std::list<int32_t> lru_;  // front: released longest ago
};

}  // namespace vela
