#include <gtest/gtest.h>

#include <numeric>
#include <set>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "kv/kv_cache.h"
#include "kv_test_util.h"

namespace vela {
namespace {

using test::holds_tags;
using test::write_tagged;

class KvCacheTest : public ::testing::TestWithParam<std::tuple<int64_t, KvFormat>> {
  protected:
    int64_t bs() const { return std::get<0>(GetParam()); }
    KvCacheConfig config(int64_t num_blocks) const {
        return KvCacheConfig{2, 3, 8, bs(), num_blocks, std::get<1>(GetParam())};
    }
    // Appends n tokens tagged first, first + 1, ... and records them in `tags`.
    static void append_tagged(KvCache& kv, SeqId id, int64_t n, std::vector<int64_t>& tags) {
        std::vector<int64_t> slots = kv.append(id, n);
        std::vector<int64_t> new_tags(static_cast<size_t>(n));
        std::iota(new_tags.begin(), new_tags.end(), static_cast<int64_t>(tags.size()) + 100 * id);
        write_tagged(kv, slots, new_tags);
        tags.insert(tags.end(), new_tags.begin(), new_tags.end());
    }
};

TEST_P(KvCacheTest, ExactlyAllBlocksUsableThenExhausted) {
    KvCache kv(config(5));
    kv.add_sequence(1);
    int64_t n = 0;
    while (kv.can_append(1, 1)) {
        EXPECT_EQ(kv.num_free_blocks(), 5 - (n + bs() - 1) / bs());  // can_append is pure
        kv.append(1, 1);
        ++n;
    }
    EXPECT_EQ(n, 5 * bs());
    EXPECT_EQ(kv.num_free_blocks(), 0);
    EXPECT_THROW(kv.append(1, 1), ResourceExhausted);
    EXPECT_EQ(kv.n_tokens(1), n);  // a failed append changes nothing
    EXPECT_TRUE(kv.can_append(1, 0));
    kv.free(1);
    EXPECT_EQ(kv.num_free_blocks(), 5);
}

TEST_P(KvCacheTest, SlotsAreDistinctAndFollowTheBlockTable) {
    KvCache kv(config(40));
    kv.add_sequence(1);
    kv.add_sequence(2);
    std::set<int64_t> seen;
    for (int64_t step : {3, 1, 5, 2, 1}) {
        for (SeqId id : {1, 2}) {
            const int64_t before = kv.n_tokens(id);
            for (int64_t i = 0; const int64_t s : kv.append(id, step)) {
                EXPECT_TRUE(seen.insert(s).second) << "slot " << s << " handed out twice";
                const BlockTable& t = kv.table(id);
                const int64_t pos = before + i++;
                EXPECT_EQ(s, int64_t{t.blocks[pos / bs()]} * bs() + pos % bs());
            }
            EXPECT_EQ(static_cast<int64_t>(kv.table(id).blocks.size()),
                      (kv.n_tokens(id) + bs() - 1) / bs());
        }
    }
}

TEST_P(KvCacheTest, ForkSharesAndCopyOnWriteKeepsTheOtherSequenceIntact) {
    KvCache kv(config(12));
    kv.add_sequence(1);
    std::vector<int64_t> a;
    append_tagged(kv, 1, 2 * bs() + (bs() > 1 ? 1 : 0), a);  // partial last block when bs > 1
    const int64_t used = kv.num_total_blocks() - kv.num_free_blocks();
    kv.fork(1, 2);
    EXPECT_EQ(kv.num_total_blocks() - kv.num_free_blocks(), used);  // nothing copied yet
    for (int32_t b : kv.table(1).blocks) EXPECT_EQ(kv.pool().ref_count(b), 2);
    EXPECT_EQ(kv.table(2).blocks, kv.table(1).blocks);

    std::vector<int64_t> b = a;
    const int64_t cow = bs() > 1 ? 1 : 0;
    EXPECT_EQ(kv.blocks_needed(2, 1), 1);  // the copy of the shared block, or a new block
    append_tagged(kv, 2, 1, b);            // writes into the copy, never into 1's block
    EXPECT_EQ(kv.num_total_blocks() - kv.num_free_blocks(), used + 1);
    EXPECT_TRUE(holds_tags(kv, 1, a));
    EXPECT_TRUE(holds_tags(kv, 2, b));
    if (cow) {
        EXPECT_NE(kv.table(2).blocks.back(), kv.table(1).blocks.back());
    }

    // The original's last block is exclusive again: it grows in place.
    EXPECT_EQ(kv.blocks_needed(1, 1), bs() > 1 ? 0 : 1);
    append_tagged(kv, 1, bs() + 2, a);
    EXPECT_TRUE(holds_tags(kv, 1, a));
    EXPECT_TRUE(holds_tags(kv, 2, b));
    kv.free(1);
    kv.free(2);
    EXPECT_EQ(kv.num_free_blocks(), 12);
}

TEST_P(KvCacheTest, TruncateAtEveryPosition) {
    const int64_t n = 3 * bs() + 2;
    for (int64_t cut = 0; cut <= n; ++cut) {
        KvCache kv(config(8));
        kv.add_sequence(1);
        std::vector<int64_t> tags;
        append_tagged(kv, 1, n, tags);
        kv.truncate(1, cut);
        tags.resize(static_cast<size_t>(cut));
        ASSERT_EQ(static_cast<int64_t>(kv.table(1).blocks.size()), (cut + bs() - 1) / bs());
        EXPECT_EQ(kv.num_free_blocks(), 8 - (cut + bs() - 1) / bs());
        EXPECT_TRUE(holds_tags(kv, 1, tags)) << "cut " << cut;
        append_tagged(kv, 1, bs() + 1, tags);  // regrow over the dropped tail
        EXPECT_TRUE(holds_tags(kv, 1, tags)) << "cut " << cut;
        EXPECT_THROW(kv.truncate(1, kv.n_tokens(1) + 1), InvalidArgument);
        EXPECT_THROW(kv.truncate(1, -1), InvalidArgument);
    }
}

TEST_P(KvCacheTest, TruncatingAForkDoesNotTouchTheSource) {
    KvCache kv(config(10));
    kv.add_sequence(1);
    std::vector<int64_t> a;
    append_tagged(kv, 1, 2 * bs() + 1, a);
    kv.fork(1, 2);
    std::vector<int64_t> b = a;
    kv.truncate(2, bs() / 2 + 1);
    b.resize(static_cast<size_t>(bs() / 2 + 1));
    append_tagged(kv, 2, 2 * bs(), b);
    EXPECT_TRUE(holds_tags(kv, 1, a));
    EXPECT_TRUE(holds_tags(kv, 2, b));
}

TEST_P(KvCacheTest, UserErrorsThrowAndChangeNothing) {
    KvCache kv(config(4));
    kv.add_sequence(1);
    EXPECT_THROW(kv.add_sequence(1), InvalidArgument);
    EXPECT_THROW(kv.append(7, 1), InvalidArgument);
    EXPECT_THROW(kv.can_append(7, 1), InvalidArgument);
    EXPECT_THROW(kv.table(7), InvalidArgument);
    EXPECT_THROW(kv.free(7), InvalidArgument);
    EXPECT_THROW(kv.fork(7, 8), InvalidArgument);
    EXPECT_THROW(kv.fork(1, 1), InvalidArgument);
    EXPECT_THROW(kv.append(1, -1), InvalidArgument);
    EXPECT_THROW(kv.append(1, 4 * bs() + 1), ResourceExhausted);
    EXPECT_EQ(kv.n_tokens(1), 0);
    EXPECT_EQ(kv.num_free_blocks(), 4);
    EXPECT_THROW(kv.layer(2), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, KvCacheTest,
                         ::testing::Combine(::testing::Values(1, 7, 16),
                                            ::testing::Values(KvFormat::F32, KvFormat::F16)));

TEST(KvCacheConfig, RejectsBadConfigs) {
    EXPECT_THROW(KvCache(KvCacheConfig{1, 1, 8, 0, 4, KvFormat::F16}), InvalidArgument);
    EXPECT_THROW(KvCache(KvCacheConfig{1, 1, 8, 16, 0, KvFormat::F16}), InvalidArgument);
    EXPECT_THROW(KvCache(KvCacheConfig{0, 1, 8, 16, 4, KvFormat::F16}), InvalidArgument);
}

}  // namespace
}  // namespace vela
