#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "core/thread_pool.h"

namespace vela {
namespace {

TEST(ThreadPool, EveryThreadRunsOncePerRegion) {
    for (int n : {1, 2, 3, 8}) {
        ThreadPool pool(n);
        for (int region = 0; region < 2000; ++region) {
            std::vector<std::atomic<int>> hits(n);
            pool.run([&](int ith, int nth) {
                ASSERT_EQ(nth, n);
                hits[ith].fetch_add(1);
            });
            for (int i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1);
        }
    }
}

TEST(ThreadPool, ParallelForCoversRangeExactlyOnce) {
    ThreadPool pool(3);
    for (int64_t n : {0, 1, 2, 5, 97, 1000}) {
        std::vector<std::atomic<int>> seen(n);
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) seen[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[i].load(), 1);
    }
}

}  // namespace
}  // namespace vela
