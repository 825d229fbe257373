#pragma once
// Helpers shared by the KV cache tests: rows whose values identify (token, head, dim) exactly
// in F16 (small integers), so a read-back pinpoints any mix-up of slots, heads or sequences.
#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <vector>

#include "kv/kv_cache.h"

namespace vela::test {

// Value of element d of head h in layer l for token `tag` (K), or its negation (V). Integers
// below 1024 are exact in F16; assumes n_kv_heads <= 4 and n_layers <= 2.
inline float kv_value(int64_t tag, int64_t l, int64_t h, int64_t d, bool value) {
    const float x = static_cast<float>((((tag % 64) * 4 + h) * 2 + l) * 2 + d % 2);
    return value ? -x : x;
}

inline void write_tagged(KvCache& kv, std::span<const int64_t> slots,
                         std::span<const int64_t> tags) {
    const KvCacheConfig& c = kv.config();
    const int64_t row = c.n_kv_heads * c.head_dim;
    std::vector<float> k(slots.size() * row), v(slots.size() * row);
    for (int64_t l = 0; l < c.n_layers; ++l) {
        for (size_t r = 0; r < slots.size(); ++r) {
            for (int64_t h = 0; h < c.n_kv_heads; ++h) {
                for (int64_t d = 0; d < c.head_dim; ++d) {
                    k[r * row + h * c.head_dim + d] = kv_value(tags[r], l, h, d, false);
                    v[r * row + h * c.head_dim + d] = kv_value(tags[r], l, h, d, true);
                }
            }
        }
        kv.write(l, slots, k.data(), v.data());
    }
}

// Checks that token t of `id` holds tags[t] in every layer/head/dim, K and V.
inline ::testing::AssertionResult holds_tags(const KvCache& kv, SeqId id,
                                             const std::vector<int64_t>& tags) {
    const KvCacheConfig& c = kv.config();
    const BlockTable& t = kv.table(id);
    if (t.n_tokens != static_cast<int64_t>(tags.size())) {
        return ::testing::AssertionFailure() << "n_tokens " << t.n_tokens << " != " << tags.size();
    }
    std::vector<float> row(c.head_dim);
    for (int64_t p = 0; p < t.n_tokens; ++p) {
        const int64_t slot = int64_t{t.blocks[p / c.block_size]} * c.block_size + p % c.block_size;
        for (int64_t l = 0; l < c.n_layers; ++l) {
            for (int64_t h = 0; h < c.n_kv_heads; ++h) {
                for (bool value : {false, true}) {
                    kv.read(l, slot, h, value, row.data());
                    for (int64_t d = 0; d < c.head_dim; ++d) {
                        const float want = kv_value(tags[p], l, h, d, value);
                        if (row[d] != want) {
                            return ::testing::AssertionFailure()
                                   << "seq " << id << " token " << p << " layer " << l << " head "
                                   << h << " dim " << d << (value ? " V " : " K ") << row[d]
                                   << " != " << want;
                        }
                    }
                }
            }
        }
    }
    return ::testing::AssertionSuccess();
}

}  // namespace vela::test
