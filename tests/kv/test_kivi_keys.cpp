// K in Q4 (KIVI's per-channel keys, kv/kivi_keys.h) in HostKvStorage: a full block holds
// exactly the per-channel quantisation of its keys rounded to fp16, however its rows were
// written; the block still filling reads back its fp16 keys; both follow copies, swaps and
// eviction's row moves.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kv/host_kv_storage.h"
#include "kv/kv_cache.h"
#include "kv/kv_quant.h"

namespace vela {
namespace {

using Kind = BlockOp::Kind;

float f16(float x) {
    return fp16_to_fp32(fp32_to_fp16(x));
}

std::vector<float> random_rows(int64_t n, int64_t width, std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.5f);
    std::vector<float> v(static_cast<size_t>(n * width));
    for (float& x : v) x = dist(rng);
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i * width + 3 % width)] *= 20.0f;
    return v;
}

// The keys of one head of a full block as the format defines them: the fp16-rounded keys
// `rows(t)` (head_dim floats of token t) quantised per channel and read back.
template <class Rows>
std::vector<float> quantised_block(int64_t bs, int64_t hd, Rows rows) {
    std::vector<float> x(static_cast<size_t>(bs * hd));
    for (int64_t t = 0; t < bs; ++t) {
        const float* r = rows(t);
        for (int64_t c = 0; c < hd; ++c) x[static_cast<size_t>(t * hd + c)] = f16(r[c]);
    }
    std::vector<uint8_t> q(static_cast<size_t>(bs * q4_row_bytes(hd)));
    std::vector<uint16_t> sm(static_cast<size_t>(2 * hd));
    quantize_q4_channels(x.data(), bs, hd, q.data(), sm.data());
    for (int64_t t = 0; t < bs; ++t) {
        dequantize_q4_channels_row(q.data() + t * q4_row_bytes(hd), sm.data(), hd,
                                   x.data() + t * hd);
    }
    return x;
}

::testing::AssertionResult same_block_bytes(const HostKvStorage& a, int32_t block_a,
                                            const HostKvStorage& b, int32_t block_b,
                                            int64_t layer) {
    const KvSideView ka = a.layer(layer).k, kb = b.layer(layer).k;
    if (std::memcmp(ka.data + block_a * ka.block_bytes, kb.data + block_b * kb.block_bytes,
                    ka.block_bytes) != 0) {
        return ::testing::AssertionFailure()
               << "layer " << layer << " block " << block_a << " != block " << block_b;
    }
    return ::testing::AssertionSuccess();
}

class KiviKeys : public ::testing::Test {
  protected:
    static constexpr int64_t kLayers = 2, kHeads = 3, kDim = 40, kBlock = 16;
    const KvLayout layout_{kLayers, kHeads, kDim, kBlock, 6};
    const int64_t width_ = kHeads * kDim;

    void write(HostKvStorage& s, int64_t first_slot, int64_t n, const std::vector<float>& k,
               int64_t first_row = 0) {
        std::vector<int64_t> slots(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) slots[static_cast<size_t>(i)] = first_slot + i;
        for (int64_t l = 0; l < kLayers; ++l) {
            s.write(l, slots, k.data() + first_row * width_, k.data() + first_row * width_);
        }
    }
    // Token t (of a block starting at `first`) in every layer and head reads back `want(h, t)`.
    template <class Want>
    void expect_keys(const HostKvStorage& s, int64_t first, int64_t n, Want want) {
        std::vector<float> got(static_cast<size_t>(kDim));
        for (int64_t l = 0; l < kLayers; ++l) {
            for (int64_t h = 0; h < kHeads; ++h) {
                for (int64_t t = 0; t < n; ++t) {
                    s.read(l, first + t, h, false, got.data());
                    const std::vector<float> w = want(h, t);
                    for (int64_t c = 0; c < kDim; ++c) {
                        ASSERT_EQ(got[c], w[static_cast<size_t>(c)])
                            << "layer " << l << " head " << h << " token " << t << " dim " << c;
                    }
                }
            }
        }
    }
    // Keys of head h of a full block whose token t is k[(first_row + t) * width].
    std::vector<float> full(const std::vector<float>& k, int64_t first_row, int64_t h,
                            int64_t t) const {
        const std::vector<float> b = quantised_block(kBlock, kDim, [&](int64_t i) {
            return k.data() + (first_row + i) * width_ + h * kDim;
        });
        return {b.begin() + t * kDim, b.begin() + (t + 1) * kDim};
    }
    std::vector<float> fp16_row(const std::vector<float>& k, int64_t row, int64_t h) const {
        std::vector<float> r(static_cast<size_t>(kDim));
        for (int64_t c = 0; c < kDim; ++c)
            r[c] = f16(k[static_cast<size_t>(row * width_ + h * kDim + c)]);
        return r;
    }
};

TEST_F(KiviKeys, RowsOneAtATimeInChunksOrAtOnceGiveTheSameBlock) {
    std::mt19937 rng(11);
    const std::vector<float> k = random_rows(21, width_, rng);
    HostKvStorage at_once(layout_, KvFormat::Q4), one_by_one(layout_, KvFormat::Q4),
        chunks(layout_, KvFormat::Q4);
    write(at_once, 0, 21, k);
    for (int64_t i = 0; i < 21; ++i) write(one_by_one, i, 1, k, i);
    for (int64_t i = 0; i < 21; i += 5) write(chunks, i, std::min<int64_t>(5, 21 - i), k, i);
    for (int64_t l = 0; l < kLayers; ++l) {
        EXPECT_TRUE(same_block_bytes(at_once, 0, one_by_one, 0, l));
        EXPECT_TRUE(same_block_bytes(at_once, 0, chunks, 0, l));
    }
    for (const HostKvStorage* s : {&at_once, &one_by_one, &chunks}) {
        expect_keys(*s, 0, kBlock, [&](int64_t h, int64_t t) { return full(k, 0, h, t); });
        // The open block reads back its keys in fp16.
        expect_keys(*s, kBlock, 5,
                    [&](int64_t h, int64_t t) { return fp16_row(k, kBlock + t, h); });
    }
    EXPECT_EQ(at_once.bytes_per_token(),
              static_cast<size_t>(kLayers * kHeads) *
                  (kDim / 2 + 4 * kDim / kBlock + kv_row_bytes(KvFormat::Q4, kDim, kKvGroup)));
}

TEST_F(KiviKeys, OpenBlockFollowsCopyAndSwap) {
    std::mt19937 rng(12);
    const std::vector<float> k = random_rows(2 * kBlock, width_, rng);
    HostKvStorage s(layout_, KvFormat::Q4), want(layout_, KvFormat::Q4);
    write(s, 0, 10, k);  // block 0 open with 10 keys
    const BlockOp copy[] = {{Kind::Copy, 0, 2}, {Kind::SwapOut, 0, 1}};
    s.apply(copy);
    // Block 0 is reused by someone else meanwhile (and filled, so quantised).
    write(s, 0, kBlock, k, kBlock);
    const BlockOp in[] = {{Kind::SwapIn, 1, 4}};
    s.apply(in);
    expect_keys(s, 2 * kBlock, 10, [&](int64_t h, int64_t t) { return fp16_row(k, t, h); });
    expect_keys(s, 4 * kBlock, 10, [&](int64_t h, int64_t t) { return fp16_row(k, t, h); });
    expect_keys(s, 0, kBlock, [&](int64_t h, int64_t t) { return full(k, kBlock, h, t); });
    // Both fill up: each is the quantisation of its own 16 keys.
    write(s, 2 * kBlock + 10, 6, k, 10);
    write(s, 4 * kBlock + 10, 6, k, 10);
    write(want, 0, kBlock, k);
    for (int64_t l = 0; l < kLayers; ++l) {
        EXPECT_TRUE(same_block_bytes(s, 2, want, 0, l));
        EXPECT_TRUE(same_block_bytes(s, 4, want, 0, l));
    }
}

// A full block written again (a prefix-cache hit recomputing a block's last token copies the
// block and writes that token) keeps its bytes when the key is the same, after its fp16 keys
// are gone; a different key requantises it, within half a step.
TEST_F(KiviKeys, FullBlockWrittenAgainKeepsItsCodesForTheSameKey) {
    std::mt19937 rng(13);
    const std::vector<float> k = random_rows(2 * kBlock, width_, rng);
    HostKvStorage s(layout_, KvFormat::Q4);
    write(s, 0, kBlock, k);
    write(s, 5 * kBlock, 1, k, kBlock);  // a later write: block 0's fp16 keys go
    const BlockOp copy[] = {{Kind::Copy, 0, 2}};
    s.apply(copy);
    write(s, 2 * kBlock + kBlock - 1, 1, k, kBlock - 1);
    for (int64_t l = 0; l < kLayers; ++l) EXPECT_TRUE(same_block_bytes(s, 0, s, 2, l));
    s.apply(copy);
    write(s, 2 * kBlock + kBlock - 1, 1, k, kBlock);  // another key
    std::vector<float> got(static_cast<size_t>(kDim));
    for (int64_t h = 0; h < kHeads; ++h) {
        s.read(0, 3 * kBlock - 1, h, false, got.data());
        const std::vector<float> want = fp16_row(k, kBlock, h);
        const uint16_t* scales = s.layer(0).k.channel_scales(2, h);
        for (int64_t c = 0; c < kDim; ++c) {
            EXPECT_LE(std::abs(got[c] - want[c]), 0.5f * fp16_to_fp32(scales[c]) * (1 + 1e-5f))
                << "head " << h << " dim " << c;
        }
    }
}

// Eviction compacts rows down (MoveRow): full blocks are the quantisation of the keys they
// hold now, the new last block is open and reads back those keys in fp16, and fills up as usual.
TEST(KiviKeysCompact, MovedRowsAreRequantisedAndTheTailStaysOpen) {
    for (bool per_head : {false, true}) {
        const int64_t bs = 8, hd = 40, nh = 2;
        KvCache kv({2, nh, hd, bs, 8, KvFormats(KvFormat::Q4, KvFormat::F16)});
        kv.add_sequence(0);
        std::mt19937 rng(14);
        const std::vector<float> k = random_rows(24, nh * hd, rng);
        const std::vector<int64_t> slots = kv.append(0, 21);
        for (int64_t l = 0; l < 2; ++l) kv.write(l, slots, k.data(), k.data());
        // What each token's keys read now (quantised or fp16), per layer and head.
        auto slot_of = [&](int64_t j) {
            return int64_t{kv.table(0).blocks[static_cast<size_t>(j / bs)]} * bs + j % bs;
        };
        std::vector<float> before(static_cast<size_t>(2 * nh * 21 * hd));
        auto at = [&](int64_t l, int64_t h, int64_t j) {
            return before.data() + ((l * nh + h) * 21 + j) * hd;
        };
        for (int64_t l = 0; l < 2; ++l)
            for (int64_t h = 0; h < nh; ++h)
                for (int64_t j = 0; j < 21; ++j) kv.read(l, slot_of(j), h, false, at(l, h, j));
        const std::vector<int32_t> a = {0, 2, 3, 5, 7, 8, 9, 11, 12, 14, 15, 17, 19};
        const std::vector<int32_t> b = {1, 2, 4, 5, 6, 8, 10, 11, 13, 16, 18, 19, 20};
        std::vector<KeepGroup> groups;
        if (per_head) {
            for (int32_t l = 0; l < 2; ++l)
                for (int32_t h = 0; h < nh; ++h) groups.push_back({l, h, (l + h) % 2 == 0 ? a : b});
        } else {
            groups.push_back({-1, -1, a});
        }
        ASSERT_TRUE(kv.compact(0, 13, groups));
        auto kept = [&](int64_t l, int64_t h) { return per_head && (l + h) % 2 == 1 ? b : a; };
        std::vector<float> got(static_cast<size_t>(hd));
        for (int64_t l = 0; l < 2; ++l) {
            for (int64_t h = 0; h < nh; ++h) {
                const std::vector<int32_t> idx = kept(l, h);
                const std::vector<float> block0 =
                    quantised_block(bs, hd, [&](int64_t t) { return at(l, h, idx[t]); });
                for (int64_t j = 0; j < 13; ++j) {
                    kv.read(l, slot_of(j), h, false, got.data());
                    for (int64_t c = 0; c < hd; ++c) {
                        const float want = j < bs ? block0[j * hd + c] : f16(at(l, h, idx[j])[c]);
                        ASSERT_EQ(got[c], want) << "per head " << per_head << " layer " << l
                                                << " head " << h << " token " << j << " dim " << c;
                    }
                }
            }
        }
        // Three more tokens fill the open block: the quantisation of its 8 keys.
        const std::vector<int64_t> more = kv.append(0, 3);
        for (int64_t l = 0; l < 2; ++l) kv.write(l, more, k.data() + 21 * nh * hd, k.data());
        for (int64_t l = 0; l < 2; ++l) {
            for (int64_t h = 0; h < nh; ++h) {
                const std::vector<int32_t> idx = kept(l, h);
                const std::vector<float> block1 = quantised_block(bs, hd, [&](int64_t t) {
                    return t < 5 ? at(l, h, idx[bs + t])
                                 : k.data() + (21 + t - 5) * nh * hd + h * hd;
                });
                for (int64_t t = 0; t < bs; ++t) {
                    kv.read(l, slot_of(bs + t), h, false, got.data());
                    for (int64_t c = 0; c < hd; ++c) {
                        ASSERT_EQ(got[c], block1[t * hd + c])
                            << "per head " << per_head << " layer " << l << " head " << h
                            << " token " << bs + t;
                    }
                }
            }
        }
    }
}

}  // namespace
}  // namespace vela
