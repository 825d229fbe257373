#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kv/block_pool.h"

namespace vela {
namespace {

TEST(BlockPool, ExactlyNumBlocksUsableThenExhausted) {
    for (int64_t n : {1, 7, 16}) {
        BlockPool pool(n);
        std::vector<int32_t> got;
        for (int64_t i = 0; i < n; ++i) {
            ASSERT_TRUE(pool.can_allocate(1));
            ASSERT_TRUE(pool.can_allocate(n - i));
            ASSERT_FALSE(pool.can_allocate(n - i + 1));
            got.push_back(pool.allocate());
        }
        EXPECT_EQ(pool.num_free(), 0);
        EXPECT_FALSE(pool.can_allocate(1));
        EXPECT_EQ(pool.num_free(), 0);  // asking never mutates
        EXPECT_THROW(pool.allocate(), ResourceExhausted);
        std::sort(got.begin(), got.end());
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(got[i], i);  // all distinct, all in range
    }
}

TEST(BlockPool, RefCountingReturnsBlockAtZero) {
    BlockPool pool(3);
    const int32_t a = pool.allocate();
    EXPECT_EQ(pool.ref_count(a), 1);
    pool.ref(a);
    pool.ref(a);
    EXPECT_EQ(pool.ref_count(a), 3);
    pool.unref(a);
    pool.unref(a);
    EXPECT_EQ(pool.num_free(), 2);
    pool.unref(a);
    EXPECT_EQ(pool.ref_count(a), 0);
    EXPECT_EQ(pool.num_free(), 3);
    EXPECT_THROW(pool.unref(a), InvalidArgument);  // double free
    EXPECT_THROW(pool.ref(a), InvalidArgument);    // sharing a free block
    EXPECT_THROW(pool.ref_count(3), InvalidArgument);
    EXPECT_THROW(pool.ref(-1), InvalidArgument);
}

TEST(BlockPool, RejectsEmptyPool) {
    EXPECT_THROW(BlockPool(0), InvalidArgument);
}

}  // namespace
}  // namespace vela
