// Paged flash attention against the double reference. Tolerances (|out - ref| <= atol +
// rtol |ref|, inputs ~ N(0, 1.5^2)): F32 KV atol 2e-5, rtol 1e-4 (float accumulation and a
// 1-ulp exp); F16 KV atol 5e-3, rtol 2e-3 (K and V are rounded to 11-bit mantissas on store,
// the reference sees the unrounded values).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <tuple>

#include "attention_problem.h"
#include "core/error.h"

namespace vela {
namespace {

using test::AttentionProblem;
using test::KernelRun;
using test::SeqShape;

std::vector<AttentionImpl> impls() {
    std::vector<AttentionImpl> v{AttentionImpl::Scalar};
    if (attention_avx2_available()) v.push_back(AttentionImpl::Avx2);
    return v;
}

// Storage rounding sets the bound: F16 keeps 11 significant bits, BF16 8, Q8 a step of
// max|x| / 127 per 32 values (Q8: measured worst error ratio 0.8 with these, at head_dim 128).
double atol(KvFormat f) {
    switch (f) {
        case KvFormat::F32:
            return 2e-5;
        case KvFormat::F16:
            return 5e-3;
        case KvFormat::BF16:
            return 4e-2;
        case KvFormat::Q8:
            return 7e-2;
        case KvFormat::Q4:
            break;  // V only: this test stores K and V in one format
        case KvFormat::FP8:
            break;  // GPU only
    }
    return 0.0;
}
double rtol(KvFormat f) {
    switch (f) {
        case KvFormat::F32:
            return 1e-4;
        case KvFormat::F16:
            return 2e-3;
        case KvFormat::BF16:
            return 1.6e-2;
        case KvFormat::Q8:
            return 2e-2;
        case KvFormat::Q4:
            break;  // V only: this test stores K and V in one format
        case KvFormat::FP8:
            break;  // GPU only
    }
    return 0.0;
}
constexpr KvFormat kFormats[] = {KvFormat::F32, KvFormat::F16, KvFormat::BF16, KvFormat::Q8};

// A batch mixing decode rows, a whole prompt, and prefill chunks over earlier context.
std::vector<SeqShape> mixed_batch() {
    return {{1, 1}, {17, 17}, {97, 40}, {1000, 33}, {1000, 1}, {97, 1}, {17, 5}};
}

class PagedAttentionSweep : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {
  protected:
    // One problem (and its reference) per (head_dim, group), shared by all kernel variants.
    static const AttentionProblem& problem(int64_t head_dim, int64_t group) {
        static std::map<std::pair<int64_t, int64_t>, AttentionProblem> cache;
        auto key = std::make_pair(head_dim, group);
        auto it = cache.find(key);
        if (it == cache.end()) {
            const int64_t kv_heads = group == 3 ? 3 : 2;
            it = cache
                     .emplace(key,
                              AttentionProblem::random(mixed_batch(), kv_heads * group, kv_heads,
                                                       head_dim, 42 + head_dim + group))
                     .first;
        }
        return it->second;
    }
};

TEST_P(PagedAttentionSweep, MatchesReference) {
    const auto [head_dim, group] = GetParam();
    const AttentionProblem& pr = problem(head_dim, group);
    for (int64_t bs : {1, 16}) {
        for (KvFormat dt : kFormats) {
            for (AttentionImpl impl : impls()) {
                const std::vector<float> out = run_paged(pr, {bs, dt, impl, 2});
                const double err = test::error_ratio(pr, out, atol(dt), rtol(dt));
                EXPECT_LE(err, 1.0) << "block_size " << bs << " format " << kv_format_name(dt)
                                    << " impl " << static_cast<int>(impl);
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(HeadDimGroup, PagedAttentionSweep,
                         ::testing::Combine(::testing::Values(64, 128),
                                            ::testing::Values(1, 3, 4)));

TEST(PagedAttention, OddHeadDimsAndBlockSize7) {
    for (int64_t hd : {8, 40, 20}) {
        const auto pr = AttentionProblem::random({{33, 33}, {70, 3}, {5, 1}}, 6, 2, hd, 7 + hd);
        for (AttentionImpl impl : impls()) {
            EXPECT_LE(test::error_ratio(pr, run_paged(pr, {7, KvFormat::F32, impl, 2}), 2e-5, 1e-4),
                      1.0)
                << "head_dim " << hd;
        }
    }
}

TEST(PagedAttention, SlidingWindow) {
    for (int64_t window : {1, 16, 50}) {
        const auto pr = AttentionProblem::random({{300, 70}, {130, 1}, {20, 20}}, 6, 2, 64,
                                                 11 + window, window);
        for (AttentionImpl impl : impls()) {
            EXPECT_LE(
                test::error_ratio(pr, run_paged(pr, {16, KvFormat::F32, impl, 2}), 2e-5, 1e-4), 1.0)
                << "window " << window;
        }
    }
}

// Each sequence alone, one thread, must give exactly the bits of the batched, threaded call.
TEST(PagedAttention, BatchedEqualsPerSequenceBitForBit) {
    const auto pr = AttentionProblem::random(mixed_batch(), 9, 3, 64, 5);
    for (AttentionImpl impl : impls()) {
        for (KvFormat dt : kFormats) {
            const std::vector<float> batched = run_paged(pr, {16, dt, impl, 2});
            int64_t row = 0;
            for (size_t i = 0; i < pr.shapes.size(); ++i) {
                AttentionProblem one = pr;
                one.shapes = {pr.shapes[i]};
                one.q = {pr.q[i]};
                one.k = {pr.k[i]};
                one.v = {pr.v[i]};
                one.ref = {pr.ref[i]};
                const std::vector<float> alone = run_paged(one, {16, dt, impl, 1});
                ASSERT_EQ(
                    std::memcmp(alone.data(), &batched[row * 9 * 64], alone.size() * sizeof(float)),
                    0)
                    << "sequence " << i;
                row += pr.shapes[i].q_len;
            }
        }
    }
}

}  // namespace
}  // namespace vela
