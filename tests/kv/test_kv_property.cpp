// Random operation sequences on a KvCache, checked after every step against a trivial model:
// each sequence is a vector of token tags; ref counts must equal the number of tables holding
// a block, and every token must read back its own tag in every layer and head.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "kv/kv_cache.h"
#include "kv_test_util.h"

namespace vela {
namespace {

class KvProperty : public ::testing::TestWithParam<std::tuple<int64_t, KvFormat>> {};

void check_invariants(const KvCache& kv, const std::map<SeqId, std::vector<int64_t>>& model) {
    const int64_t bs = kv.config().block_size;
    std::map<int32_t, int32_t> holders;
    ASSERT_EQ(kv.num_sequences(), static_cast<int64_t>(model.size()));
    for (const auto& [id, tags] : model) {
        ASSERT_TRUE(test::holds_tags(kv, id, tags));
        const BlockTable& t = kv.table(id);
        ASSERT_EQ(static_cast<int64_t>(t.blocks.size()), (t.n_tokens + bs - 1) / bs);
        for (int32_t b : t.blocks) ++holders[b];
    }
    for (const auto& [block, n] : holders) ASSERT_EQ(kv.pool().ref_count(block), n);
    ASSERT_EQ(kv.num_free_blocks(), kv.num_total_blocks() - static_cast<int64_t>(holders.size()));
}

TEST_P(KvProperty, RandomOperationsMatchModel) {
    const auto [bs, dtype] = GetParam();
    const int64_t num_blocks = 12;
    KvCache kv(KvCacheConfig{2, 2, 4, bs, num_blocks, dtype});
    std::map<SeqId, std::vector<int64_t>> model;
    std::mt19937_64 rng(1234 + bs);
    auto pick = [&]() {
        auto it = model.begin();
        std::advance(it, std::uniform_int_distribution<size_t>(0, model.size() - 1)(rng));
        return it->first;
    };
    SeqId next_id = 0;
    int64_t next_tag = 0;
    for (int step = 0; step < 1500; ++step) {
        const int op = model.empty() ? 0 : std::uniform_int_distribution<int>(0, 9)(rng);
        if (op == 0 && model.size() < 6) {
            kv.add_sequence(next_id);
            model[next_id++];
        } else if (op <= 5) {
            const SeqId id = pick();
            const int64_t n = std::uniform_int_distribution<int64_t>(0, 2 * bs + 2)(rng);
            const int64_t free_before = kv.num_free_blocks();
            const bool fits = kv.blocks_needed(id, n) <= free_before;
            ASSERT_EQ(kv.can_append(id, n), fits);
            ASSERT_EQ(kv.num_free_blocks(), free_before);  // asking is pure
            if (fits) {
                const std::vector<int64_t> slots = kv.append(id, n);
                std::vector<int64_t> tags(slots.size());
                for (int64_t& t : tags) t = next_tag++;
                test::write_tagged(kv, slots, tags);
                model[id].insert(model[id].end(), tags.begin(), tags.end());
            } else {
                ASSERT_THROW(kv.append(id, n), ResourceExhausted);
            }
        } else if (op == 6 && model.size() < 6) {
            const SeqId src = pick();
            kv.fork(src, next_id);
            model[next_id++] = model[src];
        } else if (op == 7 || op == 6) {
            const SeqId id = pick();
            const auto n = std::uniform_int_distribution<int64_t>(
                0, static_cast<int64_t>(model[id].size()))(rng);
            kv.truncate(id, n);
            model[id].resize(static_cast<size_t>(n));
        } else {
            const SeqId id = pick();
            kv.free(id);
            model.erase(id);
        }
        ASSERT_NO_FATAL_FAILURE(check_invariants(kv, model)) << "step " << step;
    }
    for (const auto& [id, tags] : model) kv.free(id);
    EXPECT_EQ(kv.num_free_blocks(), num_blocks);
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, KvProperty,
                         ::testing::Combine(::testing::Values(1, 7, 16),
                                            ::testing::Values(KvFormat::F32, KvFormat::F16)));

}  // namespace
}  // namespace vela
