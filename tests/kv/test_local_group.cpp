// BlockManager's local group (sliding-window layers' KV, block_manager_local.cpp): a sequence
// keeps only the local blocks its queries can still see, released blocks return to the pool,
// forks share and copy on write, truncation below the window is refused; HostKvStorage applies
// each group's ops to its own layers; ForwardBatch carries the local slots and table.
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "kv/block_manager.h"
#include "kv/host_kv_storage.h"
#include "model/forward_batch.h"

namespace vela {
namespace {

using Kind = BlockOp::Kind;

BlockManager local_manager(int64_t bs, int64_t blocks, int64_t window, int64_t local_blocks) {
    BlockManagerConfig c;
    c.block_size = bs;
    c.num_blocks = blocks;
    c.local_window = window;
    c.local_num_blocks = local_blocks;
    return BlockManager(c);
}

// Every key a query at index `first_query` or later can see, (first_query - window, ...), is in
// a local block the sequence holds, and the two tables are in step.
::testing::AssertionResult window_held(const BlockManager& m, SeqId id, int64_t first_query) {
    const BlockTable& t = m.table(id);
    const int64_t bs = m.config().block_size, w = m.config().local_window;
    if (t.local_first + static_cast<int64_t>(t.local.size()) !=
        static_cast<int64_t>(t.blocks.size())) {
        return ::testing::AssertionFailure() << "local tables out of step at " << t.n_tokens;
    }
    const int64_t first_seen = std::max<int64_t>(0, first_query - w + 1);
    if (t.local_first * bs > first_seen) {
        return ::testing::AssertionFailure() << "key " << first_seen << " released (local_first "
                                             << t.local_first << ") at " << t.n_tokens;
    }
    return ::testing::AssertionSuccess();
}

TEST(LocalGroup, ASequenceKeepsAboutItsWindowAsItGrows) {
    const int64_t bs = 4, w = 10;
    BlockManager m = local_manager(bs, 64, w, local_blocks_per_sequence(w, 3, bs));
    m.add_sequence(1);
    // Steps of 1 to 3 tokens (decode, drafts, small chunks); a second append in a step (draft
    // tokens after the decode token) leaves the step's first query at n_tokens - 1.
    int64_t step = 0;
    while (m.n_tokens(1) < 200) {
        const int64_t first_query = m.n_tokens(1);
        const int64_t n = 1 + step++ % 3;
        m.append(1, n);
        EXPECT_TRUE(window_held(m, 1, first_query));
        EXPECT_LE(static_cast<int64_t>(m.table(1).local.size()),
                  local_blocks_per_sequence(w, 3, bs));
        EXPECT_EQ(m.local_pool().num_total() - m.local_pool().num_free(),
                  static_cast<int64_t>(m.table(1).local.size()));
    }
    EXPECT_GT(m.table(1).local_first, 0);
    EXPECT_TRUE(m.take_ops().empty());  // releasing needs no op
    m.free(1);
    EXPECT_EQ(m.local_pool().num_free(), m.local_pool().num_total());
    EXPECT_EQ(m.num_free_blocks(), m.num_total_blocks());
}

TEST(LocalGroup, SequencesTakeTurnsInAPoolOfTheirWindows) {
    const int64_t bs = 4, w = 8, step = 4;
    const int64_t per_seq = local_blocks_per_sequence(w, step, bs);
    BlockManager m = local_manager(bs, 200, w, 2 * per_seq);
    m.add_sequence(1);
    m.add_sequence(2);
    for (int i = 0; i < 50; ++i) {
        for (SeqId id : {1, 2}) {
            ASSERT_TRUE(m.can_append(id, step)) << "step " << i;
            m.append(id, step);
            EXPECT_TRUE(window_held(m, id, m.n_tokens(id) - step));
        }
    }
    // The main pool is the limit now: 2 x 200 tokens of 800.
    EXPECT_EQ(m.num_used_blocks(), 100);
    // A third sequence finds no local blocks left beyond what the two hold.
    m.add_sequence(3);
    const int64_t free_local = m.local_pool().num_free();
    EXPECT_EQ(m.can_append(3, (free_local + 1) * bs), false);
    EXPECT_THROW(m.append(3, (free_local + 1) * bs), ResourceExhausted);
    EXPECT_EQ(m.n_tokens(3), 0);  // unchanged
    m.free(1);
    m.free(2);
    m.free(3);
    EXPECT_EQ(m.local_pool().num_free(), 2 * per_seq);
}

TEST(LocalGroup, ForksShareLocalBlocksAndCopyTheLastOnWrite) {
    const int64_t bs = 4, w = 6;
    BlockManager m = local_manager(bs, 32, w, 16);
    m.add_sequence(1);
    m.append(1, 9);
    m.append(1, 9);  // 18 tokens: local blocks from token 12 - 6 = ... on
    m.take_ops();
    m.fork(1, 2);
    EXPECT_EQ(m.table(2).local, m.table(1).local);
    EXPECT_EQ(m.table(2).local_first, m.table(1).local_first);
    m.append(2, 1);  // both last blocks are shared and half full: one copy in each group
    const std::vector<BlockOp> ops = m.take_ops();
    ASSERT_EQ(ops.size(), 2u);
    const BlockOp main{Kind::Copy, m.table(1).blocks.back(), m.table(2).blocks.back()};
    const BlockOp local{Kind::Copy, m.table(1).local.back(), m.table(2).local.back(), -1, -1, 1};
    EXPECT_TRUE((ops[0] == main && ops[1] == local) || (ops[0] == local && ops[1] == main));
    EXPECT_TRUE(window_held(m, 2, 18));
    m.free(1);
    m.free(2);
    EXPECT_EQ(m.local_pool().num_free(), 16);
}

TEST(LocalGroup, TruncationBelowTheWindowIsRefusedAndChangesNothing) {
    const int64_t bs = 4, w = 6;
    BlockManager m = local_manager(bs, 32, w, 16);
    m.add_sequence(1);
    for (int i = 0; i < 30; ++i) m.append(1, 1);
    const int64_t min = m.local_min_tokens(1);
    ASSERT_GT(min, 0);
    EXPECT_EQ(min, m.table(1).local_first * bs + w - 1);
    const BlockTable before = m.table(1);
    EXPECT_THROW(m.truncate(1, min - 1), InvalidArgument);
    EXPECT_EQ(m.table(1).local, before.local);
    EXPECT_EQ(m.table(1).n_tokens, 30);
    m.truncate(1, min);  // speculation's rollback is never below the step's first query
    EXPECT_TRUE(window_held(m, 1, min));
    m.append(1, 3);
    EXPECT_TRUE(window_held(m, 1, min));
    m.truncate(1, 0);  // all of it: starts again from nothing
    EXPECT_EQ(m.table(1).local_first, 0);
    EXPECT_TRUE(m.table(1).local.empty());
    EXPECT_EQ(m.local_pool().num_free(), 16);
}

TEST(LocalGroup, WhatNeedsEveryTokensKvIsRefused) {
    BlockManagerConfig c;
    c.block_size = 4;
    c.num_blocks = 8;
    c.local_window = 4;
    c.local_num_blocks = 4;
    c.prefix_caching = true;
    EXPECT_THROW(BlockManager{c}, InvalidArgument);
    BlockManager m = local_manager(4, 8, 4, 4);
    m.add_sequence(1);
    m.append(1, 5);
    EXPECT_THROW(m.swap_out(1), InvalidArgument);
    const KeepGroup keep{-1, -1, {0, 1}};
    EXPECT_THROW(m.compact(1, 2, std::span(&keep, 1)), InvalidArgument);
    EXPECT_EQ(m.n_tokens(1), 5);
}

TEST(LocalGroup, HostStorageAppliesEachGroupsOpsToItsOwnLayers) {
    // Layers 0 and 2 main (8 blocks), layer 1 local (3 blocks), blocks of 2 tokens.
    KvLayout l{3, 1, 4, 2, 8};
    l.local_layers = {0, 1, 0};
    l.local_num_blocks = 3;
    HostKvStorage s(l, KvFormat::F16);
    EXPECT_EQ(s.bytes_per_token(), 2u * 2 * 4 * 2);  // two main layers, K and V in f16
    const std::vector<float> k{1, 2, 3, 4}, v{5, 6, 7, 8};
    const int64_t local_slot = 5;  // block 2, offset 1: the local layer's last slot
    for (int64_t layer : {0, 1, 2}) s.write(layer, std::vector<int64_t>{local_slot}, k.data(), v.data());
    s.apply(std::vector<BlockOp>{{Kind::Copy, 2, 0, -1, -1, 1}});  // local group: layer 1 only
    std::vector<float> out(4);
    s.read(1, 1, 0, false, out.data());  // block 0, offset 1
    EXPECT_EQ(out, k);
    s.read(0, 1, 0, false, out.data());
    EXPECT_EQ(out, std::vector<float>(4, 0.0f));
    s.apply(std::vector<BlockOp>{{Kind::Copy, 2, 7, -1, -1, 0}});  // main group: layers 0, 2
    s.read(2, 15, 0, true, out.data());
    EXPECT_EQ(out, v);
}

TEST(LocalGroup, ForwardBatchCarriesLocalSlotsAndTable) {
    BlockTable t;
    t.blocks = {7, 8, 9, 10};
    t.n_tokens = 14;  // blocks of 4
    t.local = {2, 0};
    t.local_first = 2;
    ForwardBatch b;
    b.clear();
    const std::vector<int32_t> tokens{1, 2, 3};
    const std::vector<int64_t> slots{41, 42, 43};  // main slots of tokens 11, 12, 13
    b.add_sequence(tokens, 11, slots, t.blocks, t.n_tokens, true);
    b.add_local(t, 4);
    b.finish();
    EXPECT_EQ(b.local_slot_mapping, (std::vector<int64_t>{2 * 4 + 3, 0 * 4 + 0, 0 * 4 + 1}));
    EXPECT_EQ(b.local_block_table, (std::vector<int32_t>{2, 2, 2, 0}));
    EXPECT_NO_THROW(b.validate(4));
    EXPECT_EQ(b.slots_of(1), b.local_slot_mapping);
    EXPECT_EQ(b.table_of(0), b.block_table);
}

}  // namespace
}  // namespace vela
