// Forked sequences read shared blocks; after copy-on-write each sees only its own new token.
// K/V values are rounded to F16 before the reference sees them, so F16 storage is exact and the
// F32 tolerance (atol 2e-5, rtol 1e-4) applies.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "attention/paged_attention.h"
#include "attention/reference_attention.h"
#include "core/error.h"
#include "core/fp16.h"
#include "kv/kv_cache.h"

namespace vela {
namespace {

constexpr int64_t kHeads = 9, kKvHeads = 3, kDim = 64, kBlock = 16;

std::vector<float> f16_exact(int64_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> dist(0.0f, 1.5f);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& e : x) e = fp16_to_fp32(fp32_to_fp16(dist(rng)));
    return x;
}

struct ForkFixture {
    KvCache kv{{1, kKvHeads, kDim, kBlock, 16, KvFormat::F16}};
    ThreadPool pool{2};

    // Decodes query q (one row) for each sequence in one batched call.
    std::vector<float> decode(const std::vector<SeqId>& ids, const std::vector<float>& q) {
        std::vector<float> qs, out(ids.size() * q.size(), std::numeric_limits<float>::quiet_NaN());
        std::vector<AttentionSeq> seqs;
        for (size_t i = 0; i < ids.size(); ++i) {
            qs.insert(qs.end(), q.begin(), q.end());
            const BlockTable& t = kv.table(ids[i]);
            seqs.push_back({static_cast<int64_t>(i), 1, t.n_tokens, t.blocks.data()});
        }
        PagedAttentionParams p;
        p.q = qs.data();
        p.out = out.data();
        p.n_heads = kHeads;
        p.n_kv_heads = kKvHeads;
        p.head_dim = kDim;
        p.block_size = kBlock;
        p.scale = 0.125f;
        p.kv = kv.layer(0);
        p.seqs = seqs;
        paged_attention(p, pool);
        return out;
    }
};

void expect_matches(const std::vector<float>& out, size_t offset, const std::vector<float>& q,
                    const std::vector<float>& k, const std::vector<float>& v) {
    const int64_t kv_len = static_cast<int64_t>(k.size()) / (kKvHeads * kDim);
    const std::vector<double> ref =
        reference_attention({q, k, v, 1, kv_len, kHeads, kKvHeads, kDim, 0.125, 0});
    for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_NEAR(out[offset + i], ref[i], 2e-5 + 1e-4 * std::abs(ref[i])) << "value " << i;
    }
}

TEST(PagedAttentionFork, SharedBlocksGiveIdenticalResultsAndCowSeparates) {
    std::mt19937_64 rng(99);
    ForkFixture f;
    const int64_t row = kKvHeads * kDim, n = 100;  // 100 % 16 != 0: the last block is partial
    std::vector<float> k = f16_exact(n * row, rng), v = f16_exact(n * row, rng);
    f.kv.add_sequence(0);
    f.kv.write(0, f.kv.append(0, n), k.data(), v.data());
    f.kv.fork(0, 1);
    const std::vector<float> q = f16_exact(kHeads * kDim, rng);

    const std::vector<float> both = f.decode({0, 1}, q);
    ASSERT_EQ(std::memcmp(both.data(), both.data() + q.size(), q.size() * sizeof(float)), 0);
    expect_matches(both, 0, q, k, v);

    // Each sequence appends its own token; 1's lands in a copy of the shared block.
    std::vector<float> k0 = k, v0 = v, k1 = k, v1 = v;
    for (SeqId id : {0, 1}) {
        const std::vector<float> nk = f16_exact(row, rng), nv = f16_exact(row, rng);
        f.kv.write(0, f.kv.append(id, 1), nk.data(), nv.data());
        (id == 0 ? k0 : k1).insert((id == 0 ? k0 : k1).end(), nk.begin(), nk.end());
        (id == 0 ? v0 : v1).insert((id == 0 ? v0 : v1).end(), nv.begin(), nv.end());
    }
    ASSERT_NE(f.kv.table(0).blocks.back(), f.kv.table(1).blocks.back());
    const std::vector<float> after = f.decode({0, 1}, q);
    expect_matches(after, 0, q, k0, v0);
    expect_matches(after, q.size(), q, k1, v1);
}

TEST(PagedAttentionParams, InconsistentShapesThrow) {
    ForkFixture f;
    f.kv.add_sequence(0);
    f.kv.append(0, 3);
    std::vector<float> q(kHeads * kDim), out(q.size());
    AttentionSeq seq{0, 4, 3, f.kv.table(0).blocks.data()};  // q_len > kv_len
    PagedAttentionParams p;
    p.q = q.data();
    p.out = out.data();
    p.n_heads = kHeads;
    p.n_kv_heads = kKvHeads;
    p.head_dim = kDim;
    p.block_size = kBlock;
    p.scale = 0.125f;
    p.kv = f.kv.layer(0);
    p.seqs = {&seq, 1};
    EXPECT_THROW(paged_attention(p, f.pool), InvalidArgument);
    seq.q_len = 1;
    p.n_kv_heads = 2;  // 9 heads cannot share 2 KV heads
    EXPECT_THROW(paged_attention(p, f.pool), InvalidArgument);
    p.n_kv_heads = kKvHeads;
    p.block_size = 8;  // not the cache's block size
    EXPECT_THROW(paged_attention(p, f.pool), InvalidArgument);
    p.block_size = kBlock;
    p.kv.v.format = static_cast<KvFormat>(42);  // no such format
    EXPECT_THROW(paged_attention(p, f.pool), InvalidArgument);
}

}  // namespace
}  // namespace vela
