// Token tree attention (AttentionSeq::tree_mask): each tree row must give, bit for bit, what the
// same query gives as a lone decode row over a cache holding only the prefix, its ancestors and
// itself, in order: the greedy identity of tree speculation rests on it. Also: bad masks refused.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "attention/paged_attention.h"
#include "core/error.h"
#include "kv/kv_cache.h"

namespace vela {
namespace {

constexpr int64_t kHeads = 6, kKvHeads = 2, kHd = 64, kBs = 16;

struct Rows {
    std::vector<float> k, v;  // [n][kKvHeads][kHd]
};

// One paged_attention call over one sequence whose KV rows are `kv`, the last q_len of them new.
std::vector<float> attend(const Rows& kv, int64_t n, const std::vector<float>& q, int64_t q_len,
                          const uint8_t* mask, KvFormat format, AttentionImpl impl,
                          int64_t sinks = 0, int64_t window = 0) {
    KvCache cache({1, kKvHeads, kHd, kBs, (n + kBs - 1) / kBs + 1, KvFormats(format)});
    cache.add_sequence(0);
    const std::vector<int64_t> slots = cache.append(0, n);
    cache.write(0, slots, kv.k.data(), kv.v.data());
    std::vector<float> out(static_cast<size_t>(q_len * kHeads * kHd));
    AttentionSeq seq{0, q_len, n, cache.table(0).blocks.data()};
    seq.tree_mask = mask;
    seq.sparse_sinks = sinks;
    seq.sparse_window = window;
    PagedAttentionParams p;
    p.q = q.data();
    p.out = out.data();
    p.n_heads = kHeads;
    p.n_kv_heads = kKvHeads;
    p.head_dim = kHd;
    p.block_size = kBs;
    p.scale = 0.125f;
    p.kv = cache.layer(0);
    p.seqs = {&seq, 1};
    p.impl = impl;
    ThreadPool pool(2);
    paged_attention(p, pool);
    return out;
}

TEST(AttentionTree, EachRowEqualsItsPathDecodedAlone) {
    std::mt19937 rng(5);
    std::normal_distribution<float> dist(0.0f, 1.5f);
    const int64_t row = kKvHeads * kHd, qrow = kHeads * kHd;
    // Root (the sequence's last token), then a tree of 12 nodes: parents index tree rows.
    const std::vector<int64_t> parent = {-1, 0, 1, 2, 0, 4, 1, 6, 3, 3, 8, 5, 11};
    const auto q_len = static_cast<int64_t>(parent.size());
    for (int64_t prefix : {0, 70, 129}) {
        const int64_t n = prefix + q_len;
        Rows kv;
        kv.k.resize(static_cast<size_t>(n * row));
        kv.v.resize(kv.k.size());
        for (float& x : kv.k) x = dist(rng);
        for (float& x : kv.v) x = dist(rng);
        std::vector<float> q(static_cast<size_t>(q_len * qrow));
        for (float& x : q) x = dist(rng);
        std::vector<uint8_t> mask(static_cast<size_t>(q_len * q_len), 0);
        for (int64_t r = 0; r < q_len; ++r) {
            for (int64_t a = r; a >= 0; a = parent[a]) mask[r * q_len + a] = 1;
        }
        for (KvFormat f : {KvFormat::F32, KvFormat::F16, KvFormat::Q8}) {
            for (AttentionImpl impl : {AttentionImpl::Scalar, AttentionImpl::Avx2}) {
                if (impl == AttentionImpl::Avx2 && !attention_avx2_available()) continue;
                const std::vector<float> tree = attend(kv, n, q, q_len, mask.data(), f, impl);
                for (int64_t r = 0; r < q_len; ++r) {
                    // The path: prefix rows, then the ancestors root-first, then the row.
                    std::vector<int64_t> path;
                    for (int64_t a = r; a >= 0; a = parent[a]) path.insert(path.begin(), a);
                    Rows alone;
                    alone.k.assign(kv.k.begin(), kv.k.begin() + prefix * row);
                    alone.v.assign(kv.v.begin(), kv.v.begin() + prefix * row);
                    for (int64_t a : path) {
                        const auto at = (prefix + a) * row;
                        alone.k.insert(alone.k.end(), kv.k.begin() + at, kv.k.begin() + at + row);
                        alone.v.insert(alone.v.end(), kv.v.begin() + at, kv.v.begin() + at + row);
                    }
                    const std::vector<float> qr(q.begin() + r * qrow, q.begin() + (r + 1) * qrow);
                    const auto m = static_cast<int64_t>(prefix + path.size());
                    const std::vector<float> want = attend(alone, m, qr, 1, nullptr, f, impl);
                    EXPECT_EQ(std::memcmp(want.data(), tree.data() + r * qrow,
                                          sizeof(float) * static_cast<size_t>(qrow)),
                              0)
                        << "prefix " << prefix << " row " << r << " " << kv_format_name(f)
                        << (impl == AttentionImpl::Scalar ? " scalar" : " avx2");
                }
            }
        }
    }
}

// Sparse rows (self-speculative drafting): each equals a lone decode row over the sinks and its
// recent window only.
TEST(AttentionSparse, EachRowEqualsItsKeysDecodedAlone) {
    std::mt19937 rng(9);
    std::normal_distribution<float> dist(0.0f, 1.5f);
    const int64_t row = kKvHeads * kHd, qrow = kHeads * kHd, n = 150, q_len = 5;
    Rows kv;
    kv.k.resize(static_cast<size_t>(n * row));
    kv.v.resize(kv.k.size());
    for (float& x : kv.k) x = dist(rng);
    for (float& x : kv.v) x = dist(rng);
    std::vector<float> q(static_cast<size_t>(q_len * qrow));
    for (float& x : q) x = dist(rng);
    for (auto [sinks, window] : {std::pair<int64_t, int64_t>{4, 20}, {0, 7}, {3, 200}}) {
        for (AttentionImpl impl : {AttentionImpl::Scalar, AttentionImpl::Avx2}) {
            if (impl == AttentionImpl::Avx2 && !attention_avx2_available()) continue;
            const std::vector<float> got =
                attend(kv, n, q, q_len, nullptr, KvFormat::F16, impl, sinks, window);
            for (int64_t r = 0; r < q_len; ++r) {
                const int64_t own = n - q_len + r, recent = std::max<int64_t>(0, own - window + 1);
                Rows alone;
                auto take = [&](int64_t i) {
                    alone.k.insert(alone.k.end(), kv.k.begin() + i * row, kv.k.begin() + (i + 1) * row);
                    alone.v.insert(alone.v.end(), kv.v.begin() + i * row, kv.v.begin() + (i + 1) * row);
                };
                for (int64_t i = 0; i < std::min(sinks, recent); ++i) take(i);
                for (int64_t i = recent; i <= own; ++i) take(i);
                const std::vector<float> qr(q.begin() + r * qrow, q.begin() + (r + 1) * qrow);
                const auto m = static_cast<int64_t>(alone.k.size()) / row;
                const std::vector<float> want =
                    attend(alone, m, qr, 1, nullptr, KvFormat::F16, impl);
                EXPECT_EQ(std::memcmp(want.data(), got.data() + r * qrow,
                                      sizeof(float) * static_cast<size_t>(qrow)),
                          0)
                    << "sinks " << sinks << " window " << window << " row " << r;
            }
        }
    }
}

TEST(AttentionTree, MasksThatAreNotTreesAreRefused) {
    Rows kv;
    kv.k.assign(static_cast<size_t>(3 * kKvHeads * kHd), 0.5f);
    kv.v = kv.k;
    const std::vector<float> q(static_cast<size_t>(3 * kHeads * kHd), 0.1f);
    const std::vector<uint8_t> no_self = {1, 0, 0, 1, 0, 0, 1, 1, 1};
    const std::vector<uint8_t> later = {1, 1, 0, 1, 1, 0, 1, 0, 1};
    EXPECT_THROW(attend(kv, 3, q, 3, no_self.data(), KvFormat::F32, AttentionImpl::Scalar),
                 InvalidArgument);
    EXPECT_THROW(attend(kv, 3, q, 3, later.data(), KvFormat::F32, AttentionImpl::Scalar),
                 InvalidArgument);
}

}  // namespace
}  // namespace vela
