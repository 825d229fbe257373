// The split between KV bookkeeping and KV bytes: what BlockManager emits (copy-on-write copies,
// swaps with their host slots, in order), what HostKvStorage does with it in every format, and
// the ForwardBatch layout that carries block tables to the backends.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "kv/block_manager.h"
#include "kv/host_kv_storage.h"
#include "model/forward_batch.h"

namespace vela {
namespace {

using Kind = BlockOp::Kind;

BlockManager manager(int64_t block_size, int64_t blocks) {
    return BlockManager(BlockManagerConfig{block_size, blocks, false});
}

TEST(BlockManager, CopyOnWriteIsOneCopyOpIntoTheNewBlock) {
    BlockManager m = manager(4, 8);
    m.add_sequence(1);
    m.append(1, 6);  // two blocks, the second half full
    EXPECT_TRUE(m.take_ops().empty());
    m.fork(1, 2);
    m.append(2, 1);  // writes into the shared half-full block: copy it first
    const std::vector<BlockOp> ops = m.take_ops();
    ASSERT_EQ(ops.size(), 1u);
    EXPECT_EQ(ops[0].kind, Kind::Copy);
    EXPECT_EQ(ops[0].src, m.table(1).blocks[1]);
    EXPECT_EQ(ops[0].dst, m.table(2).blocks[1]);
    EXPECT_NE(ops[0].src, ops[0].dst);
    EXPECT_TRUE(m.take_ops().empty());  // taken once
    m.append(1, 1);                       // block 1 of seq 1 is its own again: no copy
    EXPECT_TRUE(m.take_ops().empty());
}

TEST(BlockManager, SwapOutAndInPairBlocksWithHostSlotsInOrder) {
    BlockManager m = manager(2, 6);
    m.add_sequence(1);
    m.append(1, 5);  // blocks for tokens 0-1, 2-3, 4
    const std::vector<int32_t> before = m.table(1).blocks;
    m.swap_out(1);
    EXPECT_EQ(m.num_free_blocks(), 6);
    const std::vector<BlockOp> out = m.take_ops();
    ASSERT_EQ(out.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(out[i].kind, Kind::SwapOut);
        EXPECT_EQ(out[i].src, before[i]);
    }
    EXPECT_EQ(m.num_swapped_blocks(), 3);
    // Another sequence takes blocks meanwhile; the swap-in lands wherever is free.
    m.add_sequence(2);
    m.append(2, 4);
    m.swap_in(1);
    const std::vector<BlockOp> in = m.take_ops();
    ASSERT_EQ(in.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(in[i].kind, Kind::SwapIn);
        EXPECT_EQ(in[i].src, out[i].dst) << "block " << i << " comes back from its own slot";
        EXPECT_EQ(in[i].dst, m.table(1).blocks[i]);
    }
    EXPECT_EQ(m.n_tokens(1), 5);
    EXPECT_EQ(m.num_swapped_blocks(), 0);
    // Slots are reused: swapping out again needs no more host slots than before.
    m.swap_out(1);
    EXPECT_EQ(m.num_host_slots(), 3);
    m.free(1);  // freeing a swapped sequence returns its slots too
    m.swap_out(2);
    EXPECT_EQ(m.num_host_slots(), 3);
}

class HostStorageFormats : public ::testing::TestWithParam<KvFormat> {};

// Rows written, copied, swapped out, the device blocks overwritten, swapped back into other
// blocks: every value comes back as written (to the format's precision).
TEST_P(HostStorageFormats, OpsMoveWholeBlocksInEveryLayer) {
    const KvFormat format = GetParam();
    const KvLayout layout{2, 3, 5, 4, 8};  // odd head count and head dim
    HostKvStorage s(layout, format);
    std::mt19937 rng(7);
    std::normal_distribution<float> dist;
    const int64_t row = layout.n_kv_heads * layout.head_dim;
    auto rows_for = [&](int64_t n) {
        std::vector<float> v(static_cast<size_t>(n * row));
        for (float& x : v) x = dist(rng);
        return v;
    };
    const std::vector<int64_t> slots = {0, 1, 2, 3, 4, 5};  // blocks 0 and 1
    std::vector<std::vector<float>> k, v;
    for (int64_t l = 0; l < layout.n_layers; ++l) {
        k.push_back(rows_for(6));
        v.push_back(rows_for(6));
        s.write(l, slots, k[l].data(), v[l].data());
    }
    // Q8: half a step of a group whose largest |value| is at most ~4 (5 normal draws).
    const double tol = format == KvFormat::F32 ? 0
                       : format == KvFormat::F16 ? 1e-3
                       : format == KvFormat::BF16 ? 8e-3
                                                  : 4.0 / 254;
    auto expect_block = [&](int32_t block, int64_t first_token, int64_t n) {
        std::vector<float> got(static_cast<size_t>(layout.head_dim));
        for (int64_t l = 0; l < layout.n_layers; ++l) {
            for (int64_t t = 0; t < n; ++t) {
                for (int64_t h = 0; h < layout.n_kv_heads; ++h) {
                    for (bool value : {false, true}) {
                        s.read(l, block * layout.block_size + t, h, value, got.data());
                        const float* want = (value ? v : k)[l].data() + (first_token + t) * row +
                                            h * layout.head_dim;
                        for (int64_t d = 0; d < layout.head_dim; ++d) {
                            ASSERT_NEAR(got[d], want[d], tol * (1 + std::abs(want[d])))
                                << "block " << block << " layer " << l << " token " << t;
                        }
                    }
                }
            }
        }
    };
    const BlockOp ops1[] = {{Kind::Copy, 0, 5}, {Kind::SwapOut, 0, 3}, {Kind::SwapOut, 1, 0}};
    s.apply(ops1);
    expect_block(5, 0, 4);
    // Overwrite blocks 0 and 1, then bring the swapped copies back elsewhere.
    for (int64_t l = 0; l < layout.n_layers; ++l) {
        const std::vector<float> junk = rows_for(6);
        s.write(l, slots, junk.data(), junk.data());
    }
    const BlockOp ops2[] = {{Kind::SwapIn, 3, 6}, {Kind::SwapIn, 0, 7}};
    s.apply(ops2);
    expect_block(6, 0, 4);
    expect_block(7, 4, 2);
}

INSTANTIATE_TEST_SUITE_P(Formats, HostStorageFormats,
                         ::testing::Values(KvFormat::F32, KvFormat::F16, KvFormat::BF16,
                                           KvFormat::Q8));

TEST(ForwardBatch, LaysOutSequencesAndValidates) {
    ForwardBatch b;
    b.clear();
    const int32_t t1[] = {5, 6, 7};
    const int64_t s1[] = {8, 9, 10};
    const int32_t blocks1[] = {2, 3};
    const int32_t t2[] = {9};
    const int64_t s2[] = {1};
    const int32_t blocks2[] = {0};
    b.add_sequence(t1, 5, s1, blocks1, 8, false);  // a prefill chunk: no logits
    b.add_sequence(t2, 2, s2, blocks2, 3, true);   // a decode row
    b.finish();
    b.validate(4);
    EXPECT_EQ(b.positions, (std::vector<int32_t>{5, 6, 7, 2}));
    EXPECT_EQ(b.query_start, (std::vector<int32_t>{0, 3, 4}));
    EXPECT_EQ(b.kv_len, (std::vector<int32_t>{8, 3}));
    EXPECT_EQ(b.max_blocks, 2);
    EXPECT_EQ(b.block_table, (std::vector<int32_t>{2, 3, 0, -1}));
    EXPECT_EQ(b.logit_rows, (std::vector<int32_t>{3}));

    ForwardBatch bad = b;
    bad.kv_len[1] = 9;  // needs 3 blocks of 4, the table has 2 per sequence
    EXPECT_THROW(bad.validate(4), Error);
    bad = b;
    bad.positions.pop_back();
    EXPECT_THROW(bad.validate(4), Error);
    bad = b;
    bad.logit_rows.push_back(4);
    EXPECT_THROW(bad.validate(4), Error);
}

}  // namespace
}  // namespace vela
