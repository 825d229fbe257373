#include "kv/prefix_cache.h"

#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "core/error.h"

namespace vela {

uint64_t PrefixCache::chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
    // One contiguous buffer: the parent hash, then the token ids.
    std::vector<std::byte> buf(sizeof(parent) + tokens.size_bytes());
    std::memcpy(buf.data(), &parent, sizeof(parent));
    std::memcpy(buf.data() + sizeof(parent), tokens.data(), tokens.size_bytes());
    return XXH3_64bits(buf.data(), buf.size());
}

PrefixCache::PrefixCache(int64_t block_size, HashFn hash) : block_size_(block_size), hash_(hash) {
    if (block_size < 1) fail<InvalidArgument>("prefix cache block size {} < 1", block_size);
    VELA_ASSERT(hash != nullptr);
}

const PrefixCache::Entry* PrefixCache::find(PrefixLink parent, std::span<const int32_t> tokens,
                                            uint64_t hash) const {
    auto it = by_hash_.find(hash);
    if (it == by_hash_.end()) return nullptr;
    const Entry& e = entries_.at(it->second);
    // The hash is only a hint: the tokens and the exact predecessor must match.
    if (e.parent_gen != parent.gen || !std::ranges::equal(e.tokens, tokens)) return nullptr;
    return &e;
}

std::vector<int32_t> PrefixCache::match(std::span<const int32_t> tokens, int64_t max_blocks) const {
    std::vector<int32_t> blocks;
    PrefixLink link;
    const int64_t n =
        std::min<int64_t>(max_blocks, static_cast<int64_t>(tokens.size()) / block_size_);
    for (int64_t i = 0; i < n; ++i) {
        auto block_tokens =
            tokens.subspan(static_cast<size_t>(i * block_size_), static_cast<size_t>(block_size_));
        const uint64_t h = hash_(link.hash, block_tokens);
        const Entry* e = find(link, block_tokens, h);
        if (e == nullptr) break;
        blocks.push_back(by_hash_.at(h));
        link = PrefixLink{e->hash, e->gen};
    }
    return blocks;
}

PrefixLink PrefixCache::link_of(int32_t block) const {
    const Entry& e = entries_.at(block);
    return PrefixLink{e.hash, e.gen};
}

PrefixCache::Insert PrefixCache::insert(PrefixLink parent, int32_t block,
                                        std::span<const int32_t> tokens) {
    VELA_ASSERT(static_cast<int64_t>(tokens.size()) == block_size_);
    const uint64_t h = hash_(parent.hash, tokens);
    if (const Entry* e = find(parent, tokens, h)) {
        return Insert{PrefixLink{e->hash, e->gen}, false, true};  // computed twice; keep the first
    }
    if (by_hash_.count(h) != 0 || entries_.count(block) != 0) return Insert{};
    Entry e;
    e.hash = h;
    e.gen = next_gen_++;
    e.parent_gen = parent.gen;
    e.tokens.assign(tokens.begin(), tokens.end());
    const PrefixLink link{h, e.gen};
    entries_.emplace(block, std::move(e));
    by_hash_.emplace(h, block);
    return Insert{link, true, true};
}

void PrefixCache::mark_evictable(int32_t block) {
    Entry& e = entries_.at(block);
    VELA_ASSERT(!e.evictable);
    e.lru = lru_.insert(lru_.end(), block);
    e.evictable = true;
}

void PrefixCache::mark_in_use(int32_t block) {
    Entry& e = entries_.at(block);
    VELA_ASSERT(e.evictable);
    lru_.erase(e.lru);
    e.evictable = false;
}

int32_t PrefixCache::evict_oldest() {
    VELA_ASSERT(!lru_.empty());
    const int32_t block = lru_.front();
    lru_.pop_front();
    // Blocks chained after this one become unreachable (match walks from the first block) and
    // age out of the LRU in turn.
    by_hash_.erase(entries_.at(block).hash);
    entries_.erase(block);
    return block;
}

void PrefixCache::erase(int32_t block) {
    auto it = entries_.find(block);
    VELA_ASSERT(it != entries_.end() && !it->second.evictable);
    by_hash_.erase(it->second.hash);
    entries_.erase(it);
}

}  // namespace vela
