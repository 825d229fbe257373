// KV eviction: the settings, what each policy keeps (planted attention for h2o and tova), and
// BlockManager::compact on the bytes (rows and scores land where the keep lists say; blocks
// shared with a fork or the prefix cache are never written; no block leaks).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "attention/paged_attention.h"
#include "core/error.h"
#include "kv/eviction.h"
#include "kv_test_util.h"

namespace vela {
namespace {

using test::holds_tags;
using test::write_tagged;

std::vector<int64_t> iota(int64_t begin, int64_t end) {
    std::vector<int64_t> v(static_cast<size_t>(end - begin));
    std::iota(v.begin(), v.end(), begin);
    return v;
}

TEST(Eviction, SettingsAreParsedAndChecked) {
    EXPECT_EQ(parse_eviction_policy("h2o"), EvictionPolicy::H2O);
    EXPECT_EQ(eviction_policy_name(parse_eviction_policy("tova")), "tova");
    EXPECT_THROW(parse_eviction_policy("lru"), InvalidArgument);

    EvictionConfig c;
    c.policy = EvictionPolicy::Sinks;
    EXPECT_THROW(c.validate(), InvalidArgument);  // no budget
    parse_kv_budget("512", c);
    EXPECT_EQ(c.budget_tokens, 512);
    EXPECT_EQ(c.budget(100000), 512);
    parse_kv_budget("0.25", c);
    EXPECT_EQ(c.budget_tokens, 0);
    EXPECT_EQ(c.budget(1000), 250);
    EXPECT_EQ(c.budget(1001), 251);  // rounded up
    EXPECT_EQ(c.budget(4), 5);       // never fewer than sinks + 1
    c.validate();
    for (const char* bad : {"0", "-3", "1.5", "abc", "", "0.25x", "1e400"}) {
        EXPECT_THROW(parse_kv_budget(bad, c), InvalidArgument) << bad;
    }
    c.budget_tokens = 4;  // nothing left beside 4 sinks
    EXPECT_THROW(c.validate(), InvalidArgument);
    EXPECT_EQ(EvictionConfig{}.score_mode(), KvScoreMode::None);
    c.policy = EvictionPolicy::H2O;
    EXPECT_EQ(c.score_mode(), KvScoreMode::Accumulate);
    c.policy = EvictionPolicy::Tova;
    EXPECT_EQ(c.score_mode(), KvScoreMode::Last);
}

KvCacheConfig small_cache(int64_t block_size, int64_t blocks, bool scores = false) {
    KvCacheConfig c{2, 2, 8, block_size, blocks, KvFormats(KvFormat::F16)};
    c.attention_scores = scores;
    return c;
}

TEST(Eviction, WindowAndSinksKeepRecentTokensAndTheFirst) {
    KvCache kv(small_cache(4, 16));
    kv.add_sequence(0);
    kv.append(0, 40);
    EvictionConfig c;
    c.policy = EvictionPolicy::Window;
    c.budget_tokens = 10;
    KvEvictor window(c, kv_layout(kv.config()));
    EXPECT_FALSE(window.due(14, 14));  // over budget by less than a block
    EXPECT_TRUE(window.due(15, 15));
    auto keep = window.plan(kv.storage(), kv.table(0), 40);
    ASSERT_EQ(keep.size(), 1u);
    EXPECT_EQ(keep[0].layer, -1);
    EXPECT_EQ(keep[0].head, -1);
    EXPECT_EQ(keep[0].indices, std::vector<int32_t>({30, 31, 32, 33, 34, 35, 36, 37, 38, 39}));

    c.policy = EvictionPolicy::Sinks;
    c.sinks = 3;
    keep = KvEvictor(c, kv_layout(kv.config())).plan(kv.storage(), kv.table(0), 40);
    EXPECT_EQ(keep[0].indices, std::vector<int32_t>({0, 1, 2, 33, 34, 35, 36, 37, 38, 39}));
}

// With Q4 keys (quantised per block) window and sinks cut whole blocks, and compaction then only
// drops blocks from the table: the kept keys are the very same bytes, no fresh block is needed
// even when every block is shared, and the other side of a fork keeps all of its rows.
TEST(Eviction, Q4KeysAreCutInWholeBlocksThatStayAsTheyAre) {
    const int64_t hd = 32, nh = 2, bs = 4;
    KvCache kv({2, nh, hd, bs, 12, KvFormats(KvFormat::Q4, KvFormat::F16)});
    kv.add_sequence(0);
    const std::vector<int64_t> slots = kv.append(0, 38);
    std::vector<float> k(static_cast<size_t>(38 * nh * hd));
    for (size_t i = 0; i < k.size(); ++i) k[i] = std::sin(0.37f * static_cast<float>(i));
    for (int64_t l = 0; l < 2; ++l) kv.write(l, slots, k.data(), k.data());
    auto read_all = [&](SeqId id, const std::vector<int32_t>& idx) {
        const BlockTable& t = kv.table(id);
        std::vector<float> out(idx.size() * 2 * nh * hd);
        for (size_t j = 0; j < idx.size(); ++j)
            for (int64_t l = 0; l < 2; ++l)
                for (int64_t h = 0; h < nh; ++h)
                    kv.read(l, int64_t{t.blocks[idx[j] / bs]} * bs + idx[j] % bs, h, false,
                            out.data() + ((j * 2 + l) * nh + h) * hd);
        return out;
    };
    EvictionConfig c;
    c.policy = EvictionPolicy::Window;
    c.budget_tokens = 10;
    std::vector<int32_t> want(10);
    std::iota(want.begin(), want.end(), 28);  // 38 - 10 rounded down to blocks: 28 dropped
    EXPECT_EQ(KvEvictor(c, kv_layout(kv.config())).plan(kv.storage(), kv.table(0), 38)[0].indices,
              want);
    c.policy = EvictionPolicy::Sinks;
    c.sinks = 3;  // a block: 0-3
    const std::vector<KeepGroup> keep =
        KvEvictor(c, kv_layout(kv.config())).plan(kv.storage(), kv.table(0), 38);
    // 38 - 10 = 28 dropped after the sinks' block, and 38 % 4 tokens in the last block.
    want = {0, 1, 2, 3, 32, 33, 34, 35, 36, 37};
    ASSERT_EQ(keep[0].indices, want);

    const std::vector<float> before = read_all(0, want);
    const std::vector<int32_t> all = [] {
        std::vector<int32_t> v(38);
        std::iota(v.begin(), v.end(), 0);
        return v;
    }();
    const std::vector<float> whole = read_all(0, all);
    const std::vector<int32_t> blocks = kv.table(0).blocks;
    kv.fork(0, 1);  // every block shared
    kv.add_sequence(2);
    kv.append(2, 4 * kv.num_free_blocks());  // and none free
    ASSERT_TRUE(kv.compact(0, 10, keep));
    EXPECT_EQ(kv.table(0).blocks, std::vector<int32_t>({blocks[0], blocks[8], blocks[9]}));
    EXPECT_EQ(read_all(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}), before);
    EXPECT_EQ(read_all(1, all), whole);
    kv.free(1);
    EXPECT_EQ(kv.num_free_blocks(), 7);  // blocks 1-7 were only the fork's
    kv.free(0);
    kv.free(2);
    EXPECT_EQ(kv.num_used_blocks(), 0);
}

// Planted attention: in every layer, KV head 0's keys are zero except at `heavy` tokens, whose
// keys point along the queries, so every query attends mostly to them; KV head 1's queries
// see only uniform keys. H2O (per head) keeps the heavy tokens in head 0; TOVA (the newest
// query, heads summed) keeps them in every head of the layer.
TEST(Eviction, H2oAndTovaKeepTheTokensAttentionFavours) {
    const int64_t n = 48, hd = 8, nh = 2;
    const std::vector<int64_t> heavy{5, 11, 20, 29};
    for (EvictionPolicy policy : {EvictionPolicy::H2O, EvictionPolicy::Tova}) {
        KvCache kv(small_cache(4, 16, true));
        kv.add_sequence(0);
        const std::vector<int64_t> slots = kv.append(0, n);
        std::vector<float> k(static_cast<size_t>(n * nh * hd), 0.0f), v(k.size(), 0.5f);
        for (int64_t t : heavy) {
            for (int64_t d = 0; d < hd; ++d) k[static_cast<size_t>((t * nh + 0) * hd + d)] = 2.0f;
        }
        std::vector<float> q(static_cast<size_t>(n * nh * hd), 1.0f), out(q.size());
        for (int64_t l = 0; l < 2; ++l) kv.write(l, slots, k.data(), v.data());
        const AttentionSeq seq{0, n, n, kv.table(0).blocks.data()};
        ThreadPool pool(2);
        EvictionConfig c;
        c.policy = policy;
        c.budget_tokens = 12;
        c.sinks = 0;
        for (int64_t l = 0; l < 2; ++l) {
            PagedAttentionParams p;
            p.q = q.data();
            p.out = out.data();
            p.n_heads = nh;
            p.n_kv_heads = nh;
            p.head_dim = hd;
            p.block_size = 4;
            p.scale = 1.0f;
            p.kv = kv.layer(l);
            p.seqs = {&seq, 1};
            p.kv_scores = c.score_mode();
            paged_attention(p, pool);
        }
        const std::vector<KeepGroup> keep =
            KvEvictor(c, kv_layout(kv.config())).plan(kv.storage(), kv.table(0), n);
        const std::string what(eviction_policy_name(policy));
        ASSERT_EQ(keep.size(), policy == EvictionPolicy::H2O ? 4u : 2u) << what;
        for (const KeepGroup& g : keep) {
            ASSERT_EQ(g.indices.size(), 12u) << what;
            EXPECT_TRUE(std::is_sorted(g.indices.begin(), g.indices.end())) << what;
            if (g.head == 1) continue;  // H2O's head 1: no heavy hitters to find
            for (int64_t t : heavy) {
                EXPECT_TRUE(std::count(g.indices.begin(), g.indices.end(), t) == 1)
                    << what << " layer " << g.layer << " head " << g.head << " drops " << t;
            }
            if (policy == EvictionPolicy::H2O) {
                // The recent half of the budget is kept whatever its scores.
                for (int64_t t = n - 6; t < n; ++t) {
                    EXPECT_TRUE(std::count(g.indices.begin(), g.indices.end(), t) == 1) << t;
                }
            }
        }
    }
}

// Per-head keep lists move each head's rows apart; the scores travel with their rows.
TEST(Eviction, CompactMovesRowsAndScoresPerGroupInPlace) {
    KvCache kv(small_cache(4, 8, true));
    kv.add_sequence(0);
    const std::vector<int64_t> slots = kv.append(0, 23);
    write_tagged(kv, slots, iota(0, 23));
    // Give every token a distinct score in every layer and head through attention.
    std::vector<float> q(static_cast<size_t>(23 * 2 * 8));
    for (size_t i = 0; i < q.size(); ++i) q[i] = 0.01f * static_cast<float>(i % 13);
    std::vector<float> out(q.size());
    const AttentionSeq seq{0, 23, 23, kv.table(0).blocks.data()};
    ThreadPool pool(1);
    for (int64_t l = 0; l < 2; ++l) {
        PagedAttentionParams p;
        p.q = q.data();
        p.out = out.data();
        p.n_heads = 2;
        p.n_kv_heads = 2;
        p.head_dim = 8;
        p.block_size = 4;
        p.scale = 0.3f;
        p.kv = kv.layer(l);
        p.seqs = {&seq, 1};
        p.kv_scores = KvScoreMode::Accumulate;
        paged_attention(p, pool);
    }
    auto scores_of = [&](int64_t l) {
        std::vector<int64_t> s;
        const BlockTable& t = kv.table(0);
        for (int64_t j = 0; j < t.n_tokens; ++j) s.push_back(int64_t{t.blocks[j / 4]} * 4 + j % 4);
        std::vector<float> o(s.size() * 2);
        kv.storage().read_scores(l, s, o.data());
        return o;
    };
    const std::vector<float> before[2] = {scores_of(0), scores_of(1)};
    const std::vector<std::vector<int32_t>> lists = {
        {0, 3, 4, 9, 10, 15, 21}, {1, 2, 7, 8, 16, 17, 22}, {0, 1, 2, 3, 4, 5, 6},
        {5, 6, 7, 12, 19, 20, 22}};
    std::vector<KeepGroup> groups;
    for (int32_t l = 0; l < 2; ++l) {
        for (int32_t h = 0; h < 2; ++h) groups.push_back({l, h, lists[static_cast<size_t>(l * 2 + h)]});
    }
    const int64_t free_before = kv.num_free_blocks();
    ASSERT_TRUE(kv.compact(0, 7, groups));
    EXPECT_TRUE(kv.evicted(0));
    EXPECT_EQ(kv.n_tokens(0), 7);
    EXPECT_EQ(kv.num_free_blocks(), free_before + 4);  // 6 blocks -> 2, all in place
    const BlockTable& t = kv.table(0);
    std::vector<float> row(8);
    for (int32_t l = 0; l < 2; ++l) {
        const std::vector<float> after = scores_of(l);
        for (int32_t h = 0; h < 2; ++h) {
            const std::vector<int32_t>& keep = lists[static_cast<size_t>(l * 2 + h)];
            for (int64_t j = 0; j < 7; ++j) {
                const int64_t slot = int64_t{t.blocks[j / 4]} * 4 + j % 4;
                for (bool value : {false, true}) {
                    kv.read(l, slot, h, value, row.data());
                    for (int64_t d = 0; d < 8; ++d) {
                        ASSERT_EQ(row[d], test::kv_value(keep[j], l, h, d, value))
                            << "layer " << l << " head " << h << " index " << j;
                    }
                }
                EXPECT_EQ(after[j * 2 + h], before[l][keep[j] * 2 + h]) << l << h << j;
            }
        }
    }
    kv.free(0);
    EXPECT_EQ(kv.num_free_blocks(), 8);
}

// A fork shares the blocks: compacting one side copies into fresh blocks and leaves the other
// side's rows as they were; the prefix cache's blocks stay intact for later sequences; once
// compacted, a sequence registers nothing more in the cache.
TEST(Eviction, CompactNeverWritesSharedBlocks) {
    KvCacheConfig cfg = small_cache(4, 16);
    cfg.prefix_caching = true;
    KvCache kv(cfg);
    std::vector<int32_t> tokens(18);
    std::iota(tokens.begin(), tokens.end(), 100);
    kv.add_sequence(0);
    write_tagged(kv, kv.append(0, 18), iota(0, 18));
    kv.cache_computed(0, tokens);  // 4 full blocks registered
    kv.fork(0, 1);
    const std::vector<int32_t> keep{0, 1, 13, 14, 15, 16, 17};
    ASSERT_TRUE(kv.compact(0, 7, std::vector<KeepGroup>{{-1, -1, keep}}));
    EXPECT_TRUE(holds_tags(kv, 0, {0, 1, 13, 14, 15, 16, 17}));
    EXPECT_TRUE(holds_tags(kv, 1, iota(0, 18)));
    EXPECT_FALSE(kv.evicted(1));
    const int64_t cached = kv.prefix_stats().cached_blocks;
    kv.cache_computed(0, std::span(tokens).first(7));  // no longer its tokens: ignored
    EXPECT_EQ(kv.prefix_stats().cached_blocks, cached);
    kv.free(1);
    // A new sequence with the same tokens finds the cached blocks unchanged.
    kv.add_sequence(2);
    EXPECT_EQ(kv.acquire_cached_prefix(2, tokens), 16);
    kv.append(2, 2);
    const BlockTable& t2 = kv.table(2);
    std::vector<float> row(8);
    for (int64_t j = 0; j < 16; ++j) {
        kv.read(1, int64_t{t2.blocks[j / 4]} * 4 + j % 4, 1, false, row.data());
        EXPECT_EQ(row[3], test::kv_value(j, 1, 1, 3, false)) << j;
    }
    kv.free(0);
    kv.free(2);
    EXPECT_EQ(kv.num_used_blocks(), 0);
}

TEST(Eviction, CompactWithoutFreeBlocksChangesNothing) {
    KvCache kv(small_cache(4, 6));
    kv.add_sequence(0);
    write_tagged(kv, kv.append(0, 12), iota(0, 12));
    kv.fork(0, 1);
    kv.add_sequence(2);
    kv.append(2, 12);  // the pool is full
    const std::vector<KeepGroup> keep{{-1, -1, {2, 3, 4, 5, 6, 7, 8, 9}}};
    EXPECT_FALSE(kv.compact(0, 8, keep));
    EXPECT_FALSE(kv.evicted(0));
    EXPECT_TRUE(holds_tags(kv, 0, iota(0, 12)));
    // Bad keep lists are refused by name.
    EXPECT_THROW(kv.compact(0, 2, std::vector<KeepGroup>{{-1, -1, {3, 3}}}), InvalidArgument);
    EXPECT_THROW(kv.compact(0, 2, std::vector<KeepGroup>{{-1, -1, {1, 12}}}), InvalidArgument);
    EXPECT_THROW(kv.compact(0, 3, std::vector<KeepGroup>{{-1, -1, {1, 2}}}), InvalidArgument);
    kv.free(2);
    ASSERT_TRUE(kv.compact(0, 8, keep));
    EXPECT_TRUE(holds_tags(kv, 0, iota(2, 10)));
    EXPECT_TRUE(holds_tags(kv, 1, iota(0, 12)));
}

// Short of free blocks, compaction takes the blocks it shares only with the prefix cache out of
// the cache and compacts them in place, rather than failing.
TEST(Eviction, CompactTakesBlocksBackFromThePrefixCacheWhenShort) {
    KvCacheConfig cfg = small_cache(4, 5);
    cfg.prefix_caching = true;
    KvCache kv(cfg);
    std::vector<int32_t> tokens(16);
    std::iota(tokens.begin(), tokens.end(), 7);
    kv.add_sequence(0);
    write_tagged(kv, kv.append(0, 16), iota(0, 16));
    kv.cache_computed(0, tokens);
    kv.add_sequence(1);
    kv.append(1, 4);  // the last free block
    ASSERT_EQ(kv.num_free_blocks(), 0);
    const std::vector<int32_t> keep{0, 1, 2, 9, 10, 11, 12, 13, 14};
    ASSERT_TRUE(kv.compact(0, 9, std::vector<KeepGroup>{{-1, -1, keep}}));
    EXPECT_TRUE(holds_tags(kv, 0, {0, 1, 2, 9, 10, 11, 12, 13, 14}));
    EXPECT_EQ(kv.num_free_blocks(), 1);  // 4 blocks -> 3; the last one was cached: now free
    kv.free(0);
    kv.free(1);
    EXPECT_EQ(kv.num_used_blocks(), 0);
}

// Token-tree verification keeps the accepted branch: rows moved down behind the kept prefix,
// the rest dropped, and the sequence stays cacheable (its rows follow its tokens again).
TEST(KeepTail, MovesTheAcceptedRowsBehindThePrefix) {
    KvCacheConfig cfg = small_cache(4, 8);
    cfg.prefix_caching = true;
    KvCache kv(cfg);
    kv.add_sequence(0);
    write_tagged(kv, kv.append(0, 12), iota(0, 12));
    const std::vector<int64_t> rows{5, 7, 10};
    kv.keep_tail(0, 4, rows);
    EXPECT_TRUE(holds_tags(kv, 0, {0, 1, 2, 3, 5, 7, 10}));
    EXPECT_FALSE(kv.evicted(0));
    std::vector<int32_t> tokens(7, 1);
    kv.cache_computed(0, tokens);
    EXPECT_EQ(kv.prefix_stats().cached_blocks, 1);
    EXPECT_THROW(kv.keep_tail(0, 5, std::vector<int64_t>{4}), InvalidArgument);  // moves up
    EXPECT_THROW(kv.keep_tail(0, 4, std::vector<int64_t>{6, 5}), InvalidArgument);
    kv.free(0);
    EXPECT_EQ(kv.num_used_blocks(), 0);
}

}  // namespace
}  // namespace vela
