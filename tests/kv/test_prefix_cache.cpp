// PrefixCache alone (chain hash, token/predecessor checks on collisions, LRU order) and through
// KvCache (reference counts, eviction when the pool runs dry, copy-on-write, swap round trip).
#include <gtest/gtest.h>
#include <xxhash.h>

#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "kv/kv_cache.h"
#include "kv/prefix_cache.h"
#include "kv_test_util.h"

namespace vela {
namespace {

using test::holds_tags;
using test::write_tagged;

std::vector<int32_t> random_tokens(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> d(0, 49151);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = d(rng);
    return t;
}

// Registers tokens' full blocks as blocks first_block, first_block + 1, ...
void insert_chain(PrefixCache& pc, std::span<const int32_t> tokens, int32_t first_block) {
    PrefixLink link;
    const int64_t bs = pc.block_size();
    for (size_t i = 0; i + bs <= tokens.size(); i += bs) {
        const auto r =
            pc.insert(link, first_block + static_cast<int32_t>(i / bs), tokens.subspan(i, bs));
        ASSERT_TRUE(r.ok);
        link = r.link;
    }
}

TEST(PrefixCache, ChainHashDependsOnParentAndTokens) {
    const auto t = random_tokens(4, 1);
    const uint64_t h = PrefixCache::chain_hash(0, t);
    EXPECT_NE(h, PrefixCache::chain_hash(1, t));
    auto u = t;
    u[3] ^= 1;
    EXPECT_NE(h, PrefixCache::chain_hash(0, u));
    // Independent recomputation: XXH3-64 over [parent (8 bytes LE), token ids (4 bytes LE each)].
    std::vector<uint8_t> bytes(8, 0);
    for (int32_t x : t) {
        for (int k = 0; k < 4; ++k)
            bytes.push_back(static_cast<uint8_t>(static_cast<uint32_t>(x) >> (8 * k)));
    }
    EXPECT_EQ(h, XXH3_64bits(bytes.data(), bytes.size()));
}

TEST(PrefixCache, MatchesLongestChainOfFullBlocks) {
    PrefixCache pc(5);
    const auto a = random_tokens(23, 2);  // 4 full blocks + 3 tokens
    insert_chain(pc, a, 10);
    EXPECT_EQ(pc.size(), 4);
    EXPECT_EQ(pc.match(a, 100), (std::vector<int32_t>{10, 11, 12, 13}));
    EXPECT_EQ(pc.match(a, 2), (std::vector<int32_t>{10, 11}));
    auto b = a;
    b[12] += 1;  // third block differs
    EXPECT_EQ(pc.match(b, 100), (std::vector<int32_t>{10, 11}));
    auto c = a;
    c[0] += 1;  // first block differs: later equal blocks must not match (different prefix)
    EXPECT_TRUE(pc.match(c, 100).empty());
    EXPECT_TRUE(pc.match(std::span(a).first(4), 100).empty());  // no full block
}

uint64_t constant_hash(uint64_t, std::span<const int32_t>) {
    return 42;
}
uint64_t parentless_hash(uint64_t, std::span<const int32_t> t) {
    return XXH3_64bits(t.data(), t.size_bytes());
}

TEST(PrefixCache, CollidingHashNeverReturnsOtherTokens) {
    PrefixCache pc(4, &constant_hash);  // every block collides
    const auto a = random_tokens(4, 3), b = random_tokens(4, 4);
    ASSERT_TRUE(pc.insert({}, 7, a).added);
    const auto r = pc.insert({}, 8, b);
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.added);
    EXPECT_FALSE(pc.contains(8));
    EXPECT_TRUE(pc.match(b, 10).empty());
    EXPECT_EQ(pc.match(a, 10), std::vector<int32_t>{7});
}

TEST(PrefixCache, CollidingHashWithOtherPredecessorDoesNotMatch) {
    // The hash ignores the parent, so [X, Y] and [Z, Y] give Y the same key: the predecessor
    // check must still tell them apart.
    PrefixCache pc(4, &parentless_hash);
    const auto x = random_tokens(4, 5), y = random_tokens(4, 6), z = random_tokens(4, 7);
    std::vector<int32_t> xy = x, zy = z;
    xy.insert(xy.end(), y.begin(), y.end());
    zy.insert(zy.end(), y.begin(), y.end());
    insert_chain(pc, xy, 0);
    EXPECT_EQ(pc.match(xy, 10), (std::vector<int32_t>{0, 1}));
    const auto rz = pc.insert({}, 2, z);
    ASSERT_TRUE(rz.added);
    EXPECT_FALSE(pc.insert(rz.link, 3, y).ok);  // Y's key is taken by the X chain's Y
    EXPECT_EQ(pc.match(zy, 10), std::vector<int32_t>{2});
}

TEST(PrefixCache, DuplicateBlockContinuesThroughCachedEntry) {
    PrefixCache pc(3);
    const auto a = random_tokens(6, 8);
    insert_chain(pc, a, 0);
    const auto r = pc.insert({}, 5, std::span(a).first(3));  // same content computed again
    EXPECT_TRUE(r.ok);
    EXPECT_FALSE(r.added);
    EXPECT_EQ(r.link.gen, pc.link_of(0).gen);
    EXPECT_FALSE(pc.contains(5));
}

TEST(PrefixCache, EvictsOldestReleasedFirst) {
    PrefixCache pc(2);
    const auto a = random_tokens(8, 9);
    insert_chain(pc, a, 0);  // blocks 0..3
    for (int32_t b : {2, 0, 3, 1}) pc.mark_evictable(b);
    pc.mark_in_use(0);
    EXPECT_EQ(pc.num_evictable(), 3);
    EXPECT_EQ(pc.evict_oldest(), 2);
    EXPECT_EQ(pc.evict_oldest(), 3);
    pc.mark_evictable(0);
    EXPECT_EQ(pc.evict_oldest(), 1);
    EXPECT_EQ(pc.evict_oldest(), 0);
    EXPECT_EQ(pc.size(), 0);
    EXPECT_TRUE(pc.match(a, 10).empty());
}

class KvPrefix : public ::testing::Test {
  protected:
    static KvCacheConfig config(int64_t num_blocks, int64_t bs = 4) {
        KvCacheConfig c{2, 3, 8, bs, num_blocks, KvFormat::F16};
        c.prefix_caching = true;
        return c;
    }
    // Appends and writes the tokens of `id` from its current length to tokens.size(), tagging
    // each slot with its token id, then registers the computed blocks.
    static void compute(KvCache& kv, SeqId id, const std::vector<int32_t>& tokens) {
        const int64_t from = kv.n_tokens(id);
        const auto slots = kv.append(id, static_cast<int64_t>(tokens.size()) - from);
        std::vector<int64_t> tags(tokens.begin() + from, tokens.end());
        write_tagged(kv, slots, tags);
        kv.cache_computed(id, tokens);
    }
    static std::vector<int64_t> tags_of(const std::vector<int32_t>& t, size_t n) {
        return std::vector<int64_t>(t.begin(), t.begin() + static_cast<long>(n));
    }
};

TEST_F(KvPrefix, SharedBlocksAreRefCountedAndFreeWhenOnlyCached) {
    KvCache kv(config(10));
    const auto p = random_tokens(10, 10);  // 2 full blocks + 2
    kv.add_sequence(1);
    EXPECT_EQ(kv.acquire_cached_prefix(1, p), 0);
    compute(kv, 1, p);
    const auto& t1 = kv.table(1);
    EXPECT_EQ(kv.pool().ref_count(t1.blocks[0]), 2);  // sequence + cache
    EXPECT_EQ(kv.pool().ref_count(t1.blocks[2]), 1);  // partial: not cached

    kv.add_sequence(2);
    EXPECT_EQ(kv.acquire_cached_prefix(2, p), 8);
    EXPECT_EQ(kv.table(2).blocks, std::vector<int32_t>(t1.blocks.begin(), t1.blocks.begin() + 2));
    EXPECT_EQ(kv.pool().ref_count(t1.blocks[0]), 3);
    EXPECT_TRUE(holds_tags(kv, 2, tags_of(p, 8)));
    EXPECT_EQ(kv.prefix_stats().query_tokens, 20);
    EXPECT_EQ(kv.prefix_stats().hit_tokens, 8);

    kv.free(1);
    kv.free(2);
    EXPECT_EQ(kv.num_used_blocks(), 0);  // two cached blocks, both evictable
    EXPECT_EQ(kv.num_free_blocks(), 10);
    EXPECT_EQ(kv.prefix_stats().cached_blocks, 2);
    EXPECT_EQ(kv.prefix_stats().evictable_blocks, 2);
}

TEST_F(KvPrefix, MatchIsPureAndCountsEvictableHitsAsTaken) {
    // 6 blocks of 4. Sequence 1 computes p (3 full blocks + 1 token) and releases it: its three
    // full blocks stay cached, evictable, counted free.
    KvCache kv(config(6));
    const auto p = random_tokens(13, 16);
    kv.add_sequence(1);
    compute(kv, 1, p);
    kv.free(1);
    kv.add_sequence(2);  // holds the first cached block, so only two of the hit are evictable
    EXPECT_EQ(kv.acquire_cached_prefix(2, std::vector<int32_t>(p.begin(), p.begin() + 5)), 4);
    const PrefixCacheStats before = kv.prefix_stats();
    const PrefixHit hit = kv.match_cached_prefix(p);
    EXPECT_EQ(hit.n_tokens, 12);
    EXPECT_EQ(hit.n_blocks, 3);
    EXPECT_EQ(hit.n_evictable, 2);
    EXPECT_EQ(kv.prefix_stats().query_tokens, before.query_tokens);  // asking counts nothing
    EXPECT_EQ(kv.prefix_stats().hit_tokens, before.hit_tokens);
    EXPECT_EQ(kv.num_free_blocks(), 5);
    // 12 cached + 1 + 7 more tokens = 5 blocks, 3 of them hits: 2 fresh + 2 evictable hits.
    EXPECT_EQ(kv.blocks_to_admit(hit, 8), 4);
    EXPECT_EQ(kv.blocks_to_admit(hit, 12), 5);
    EXPECT_EQ(kv.blocks_to_admit(hit, 13), 6);  // one more than is free: acquiring would strand
    // The check is exact: at the limit, acquire + append succeed and use up the pool.
    kv.add_sequence(3);
    EXPECT_EQ(kv.acquire_cached_prefix(3, p), 12);
    kv.append(3, 12);
    EXPECT_EQ(kv.num_free_blocks(), 0);
    EXPECT_EQ(kv.match_cached_prefix(p).n_evictable, 0);
    KvCache off(KvCacheConfig{2, 3, 8, 4, 6, KvFormat::F16});
    EXPECT_EQ(off.match_cached_prefix(p).n_blocks, 0);
    EXPECT_EQ(off.blocks_to_admit(PrefixHit{}, 13), 4);
}

TEST_F(KvPrefix, AlwaysLeavesOneTokenToCompute) {
    KvCache kv(config(10));
    const auto p = random_tokens(8, 11);  // exactly 2 blocks
    kv.add_sequence(1);
    compute(kv, 1, p);
    kv.add_sequence(2);
    EXPECT_EQ(kv.acquire_cached_prefix(2, p), 4);
}

TEST_F(KvPrefix, PoolEvictsCachedBlocksOldestFirstWhenDry) {
    KvCache kv(config(4, 2));
    const auto a = random_tokens(4, 12), b = random_tokens(4, 13);
    kv.add_sequence(1);
    compute(kv, 1, a);
    kv.add_sequence(2);
    compute(kv, 2, b);
    kv.free(2);  // b's blocks enter the LRU first (tail first), then a's
    kv.free(1);
    EXPECT_EQ(kv.num_free_blocks(), 4);
    kv.add_sequence(3);
    kv.append(3, 4);  // both blocks must come from evicting b (released first)
    kv.add_sequence(4);
    EXPECT_EQ(kv.acquire_cached_prefix(4, std::vector<int32_t>{a[0], a[1], a[2], a[3], 7}), 4);
    EXPECT_TRUE(holds_tags(kv, 4, tags_of(a, 4)));
    kv.add_sequence(5);
    EXPECT_EQ(kv.acquire_cached_prefix(5, std::vector<int32_t>{b[0], b[1], b[2], b[3], 7}), 0);
    kv.free(5);
    // Tail before head: a's second block goes before a's first.
    KvCache kv2(config(3, 2));
    kv2.add_sequence(1);
    compute(kv2, 1, a);
    kv2.free(1);
    kv2.add_sequence(2);
    kv2.append(2, 4);  // one free block + evicts a's tail block
    kv2.add_sequence(3);
    EXPECT_EQ(kv2.acquire_cached_prefix(3, a), 2);
}

TEST_F(KvPrefix, WritingAfterTruncatingIntoCachedBlockCopiesIt) {
    KvCache kv(config(10));
    const auto p = random_tokens(8, 14);
    kv.add_sequence(1);
    compute(kv, 1, p);
    const int32_t cached = kv.table(1).blocks[1];
    kv.truncate(1, 6);
    std::vector<int32_t> q(p.begin(), p.begin() + 6);
    q.push_back(1);
    q.push_back(2);
    compute(kv, 1, q);
    EXPECT_NE(kv.table(1).blocks[1], cached);
    EXPECT_TRUE(holds_tags(kv, 1, tags_of(q, 8)));
    kv.add_sequence(2);
    EXPECT_EQ(kv.acquire_cached_prefix(2, p), 4);  // 8 tokens: the last block stays uncached
    kv.free(2);
    kv.add_sequence(3);
    std::vector<int32_t> p9 = p;
    p9.push_back(0);
    EXPECT_EQ(kv.acquire_cached_prefix(3, p9), 8);
    EXPECT_TRUE(holds_tags(kv, 3, tags_of(p, 8)));  // the original block is untouched
}

TEST_F(KvPrefix, SwapRoundTripRestoresKv) {
    KvCache kv(config(6));
    const auto p = random_tokens(11, 15);
    kv.add_sequence(1);
    compute(kv, 1, p);
    kv.swap_out(1);
    EXPECT_FALSE(kv.has_sequence(1));
    EXPECT_TRUE(kv.is_swapped(1));
    EXPECT_EQ(kv.blocks_to_swap_in(1), 3);
    EXPECT_EQ(kv.num_swapped_blocks(), 3);
    EXPECT_EQ(kv.num_used_blocks(), 0);
    kv.add_sequence(2);
    // Overwrite what the swapped sequence had (its cached blocks are evicted for this).
    const auto slots = kv.append(2, 24);
    write_tagged(kv, slots, std::vector<int64_t>(slots.size(), 63));
    EXPECT_FALSE(kv.can_swap_in(1));
    EXPECT_THROW(kv.swap_in(1), ResourceExhausted);
    kv.free(2);
    kv.swap_in(1);
    EXPECT_TRUE(holds_tags(kv, 1, tags_of(p, 11)));
    kv.free(1);
    EXPECT_EQ(kv.num_used_blocks(), 0);
    kv.add_sequence(3);
    kv.swap_out(3);
    kv.free(3);  // dropping a swapped copy
    EXPECT_FALSE(kv.is_swapped(3));
}

}  // namespace
}  // namespace vela
