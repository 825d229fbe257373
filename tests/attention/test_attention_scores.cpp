// The attention statistics that the eviction policies rank tokens by (PagedAttentionParams::
// kv_scores), against a float64 softmax. The reference reads K back from the cache, so it sees
// the same stored values as the kernel in every format; what is left is float accumulation
// (atol 2e-5, rtol 2e-4 on sums of up to ~100 weights).
//
// Accumulate: key j's score grows by sum over the call's query rows i and the KV head's query
// heads of softmax_i(j) (H2O). Last: it becomes that sum for the sequence's last row only
// (TOVA). Scores start at 0 when a token is written.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "attention_problem.h"
#include "core/error.h"

namespace vela {
namespace {

using test::AttentionProblem;
using test::SeqShape;

struct ScoreRun {
    KvFormat format = KvFormat::F32;
    AttentionImpl impl = AttentionImpl::Scalar;
    int64_t block_size = 16;
    int threads = 2;
};

class ScoredCache {
  public:
    ScoredCache(const AttentionProblem& pr, const ScoreRun& run) : pr_(pr), run_(run), kv_(config()) {
        test::fill_cache(pr, kv_);
    }

    // One paged_attention call over the whole batch with `mode`.
    void attend(KvScoreMode mode) {
        const int64_t row = pr_.n_heads * pr_.head_dim;
        std::vector<float> q(static_cast<size_t>(pr_.n_rows() * row));
        std::vector<AttentionSeq> seqs;
        int64_t begin = 0;
        for (size_t i = 0; i < pr_.shapes.size(); ++i) {
            std::copy(pr_.q[i].begin(), pr_.q[i].end(), q.begin() + begin * row);
            seqs.push_back({begin, pr_.shapes[i].q_len, pr_.shapes[i].kv_len,
                            kv_.table(static_cast<SeqId>(i)).blocks.data()});
            begin += pr_.shapes[i].q_len;
        }
        std::vector<float> out(q.size());
        PagedAttentionParams p;
        p.q = q.data();
        p.out = out.data();
        p.n_heads = pr_.n_heads;
        p.n_kv_heads = pr_.n_kv_heads;
        p.head_dim = pr_.head_dim;
        p.block_size = run_.block_size;
        p.scale = pr_.scale();
        p.kv = kv_.layer(0);
        p.seqs = seqs;
        p.window = pr_.window;
        p.impl = run_.impl;
        p.kv_scores = mode;
        ThreadPool pool(run_.threads);
        paged_attention(p, pool);
    }

    // Scores of sequence s as stored: [kv_len][n_kv_heads].
    std::vector<float> scores(size_t s) const {
        const BlockTable& t = kv_.table(static_cast<SeqId>(s));
        std::vector<int64_t> slots;
        for (int64_t j = 0; j < t.n_tokens; ++j) {
            slots.push_back(int64_t{t.blocks[j / run_.block_size]} * run_.block_size +
                            j % run_.block_size);
        }
        std::vector<float> out(slots.size() * static_cast<size_t>(pr_.n_kv_heads));
        kv_.storage().read_scores(0, slots, out.data());
        return out;
    }

    // float64 reference of one call: [kv_len][n_kv_heads], rows [first_row, q_len).
    std::vector<double> reference(size_t s, bool last_only) const {
        const SeqShape& sh = pr_.shapes[s];
        const int64_t hd = pr_.head_dim, group = pr_.n_heads / pr_.n_kv_heads;
        const BlockTable& t = kv_.table(static_cast<SeqId>(s));
        std::vector<float> k(static_cast<size_t>(sh.kv_len * pr_.n_kv_heads * hd));
        for (int64_t j = 0; j < sh.kv_len; ++j) {
            const int64_t slot =
                int64_t{t.blocks[j / run_.block_size]} * run_.block_size + j % run_.block_size;
            for (int64_t g = 0; g < pr_.n_kv_heads; ++g) {
                kv_.read(0, slot, g, false, &k[static_cast<size_t>((j * pr_.n_kv_heads + g) * hd)]);
            }
        }
        std::vector<double> want(static_cast<size_t>(sh.kv_len * pr_.n_kv_heads), 0.0);
        const int64_t pos0 = sh.kv_len - sh.q_len;
        for (int64_t i = last_only ? sh.q_len - 1 : 0; i < sh.q_len; ++i) {
            const int64_t pos = pos0 + i;
            const int64_t lo = pr_.window > 0 ? std::max<int64_t>(0, pos - pr_.window + 1) : 0;
            for (int64_t h = 0; h < pr_.n_heads; ++h) {
                const int64_t g = h / group;
                const float* q = &pr_.q[s][static_cast<size_t>((i * pr_.n_heads + h) * hd)];
                std::vector<double> w(static_cast<size_t>(pos + 1), 0.0);
                double max = -std::numeric_limits<double>::infinity(), sum = 0.0;
                for (int64_t j = lo; j <= pos; ++j) {
                    double dot = 0.0;
                    for (int64_t d = 0; d < hd; ++d) {
                        dot += double{q[d]} * k[static_cast<size_t>((j * pr_.n_kv_heads + g) * hd + d)];
                    }
                    w[j] = dot * double{pr_.scale()};
                    max = std::max(max, w[j]);
                }
                for (int64_t j = lo; j <= pos; ++j) sum += std::exp(w[j] - max);
                for (int64_t j = lo; j <= pos; ++j) {
                    want[static_cast<size_t>(j * pr_.n_kv_heads + g)] += std::exp(w[j] - max) / sum;
                }
            }
        }
        return want;
    }

  private:
    KvCacheConfig config() const {
        int64_t blocks = 0;
        for (const SeqShape& s : pr_.shapes) {
            blocks += (s.kv_len + run_.block_size - 1) / run_.block_size;
        }
        KvCacheConfig c{1, pr_.n_kv_heads, pr_.head_dim, run_.block_size, blocks,
                        KvFormats(run_.format)};
        c.attention_scores = true;
        return c;
    }

    const AttentionProblem& pr_;
    ScoreRun run_;
    KvCache kv_;
};

// max |got - factor * want| / (atol + rtol |factor * want|) over every key of every sequence.
double worst(const ScoredCache& c, const AttentionProblem& pr, bool last_only, double factor) {
    double w = 0.0;
    for (size_t s = 0; s < pr.shapes.size(); ++s) {
        const std::vector<float> got = c.scores(s);
        const std::vector<double> want = c.reference(s, last_only);
        for (size_t i = 0; i < got.size(); ++i) {
            const double r = factor * want[i];
            const double e = std::abs(double{got[i]} - r) / (2e-5 + 2e-4 * std::abs(r));
            w = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(w, e);
        }
    }
    return w;
}

std::vector<AttentionImpl> impls() {
    std::vector<AttentionImpl> v{AttentionImpl::Scalar};
    if (attention_avx2_available()) v.push_back(AttentionImpl::Avx2);
    return v;
}

// Decode rows, a whole prompt, prefill chunks over earlier context; odd sizes everywhere.
std::vector<SeqShape> batch() { return {{1, 1}, {19, 19}, {97, 40}, {300, 33}, {300, 1}, {45, 5}}; }

TEST(AttentionScores, AccumulateAndLastMatchFloat64) {
    for (KvFormat f : {KvFormat::F32, KvFormat::F16, KvFormat::BF16, KvFormat::Q8}) {
        for (AttentionImpl impl : impls()) {
            for (int64_t group : {1, 3}) {
                for (int64_t window : {0, 50}) {
                    const int64_t hd = group == 1 ? 40 : 64;
                    const AttentionProblem pr =
                        AttentionProblem::random(batch(), 2 * group, 2, hd, 7 + group, window);
                    const ScoreRun run{f, impl, group == 1 ? 16 : 7, 2};
                    ScoredCache c(pr, run);
                    const std::string what = fmt::format(
                        "{} {} group {} window {}", kv_format_name(f),
                        impl == AttentionImpl::Scalar ? "scalar" : "avx2", group, window);
                    c.attend(KvScoreMode::Accumulate);
                    EXPECT_LE(worst(c, pr, false, 1.0), 1.0) << what << " accumulate once";
                    c.attend(KvScoreMode::Accumulate);
                    EXPECT_LE(worst(c, pr, false, 2.0), 1.0) << what << " accumulate twice";
                    c.attend(KvScoreMode::Last);
                    EXPECT_LE(worst(c, pr, true, 1.0), 1.0) << what << " last";
                }
            }
        }
    }
}

// K in Q4 (per channel): a decode row reads each full block's codes and the open block's fp16
// keys, which is what the cache reads back, so the reference above applies as is (a prefill
// row reads its own block in fp16 even once full: tests/attention/test_kivi_attention.cpp).
TEST(AttentionScores, KiviKeysDecodeRowsMatchFloat64) {
    const std::vector<SeqShape> decode = {{1, 1}, {16, 1}, {45, 1}, {300, 1}, {97, 1}};
    for (AttentionImpl impl : impls()) {
        for (int64_t bs : {1, 16}) {
            const AttentionProblem pr = AttentionProblem::random(decode, 6, 2, 40, 21);
            ScoredCache c(pr, {KvFormat::Q4, impl, bs, 2});
            c.attend(KvScoreMode::Accumulate);
            EXPECT_LE(worst(c, pr, false, 1.0), 1.0) << "block " << bs << " accumulate";
            c.attend(KvScoreMode::Last);
            EXPECT_LE(worst(c, pr, true, 1.0), 1.0) << "block " << bs << " last";
        }
    }
}

// The weights of one query row sum to 1 over its keys: the scores of a decode row's keys add
// up to the number of query heads of the KV head.
TEST(AttentionScores, DecodeRowScoresSumToGroupSize) {
    const AttentionProblem pr = AttentionProblem::random({{777, 1}}, 6, 2, 64, 11);
    ScoredCache c(pr, {KvFormat::F16, AttentionImpl::Auto, 16, 2});
    c.attend(KvScoreMode::Last);
    const std::vector<float> s = c.scores(0);
    for (int64_t g = 0; g < 2; ++g) {
        double sum = 0.0;
        for (int64_t j = 0; j < 777; ++j) sum += s[static_cast<size_t>(j * 2 + g)];
        EXPECT_NEAR(sum, 3.0, 1e-4) << "KV head " << g;
    }
}

TEST(AttentionScores, StorageWithoutScoresIsRefused) {
    const AttentionProblem pr = AttentionProblem::random({{5, 5}}, 2, 2, 16, 3);
    KvCache kv(KvCacheConfig{1, 2, 16, 16, 1, KvFormats(KvFormat::F32)});
    test::fill_cache(pr, kv);
    std::vector<float> out(static_cast<size_t>(5 * 2 * 16));
    const AttentionSeq seq{0, 5, 5, kv.table(0).blocks.data()};
    PagedAttentionParams p;
    p.q = pr.q[0].data();
    p.out = out.data();
    p.n_heads = 2;
    p.n_kv_heads = 2;
    p.head_dim = 16;
    p.block_size = 16;
    p.scale = pr.scale();
    p.kv = kv.layer(0);
    p.seqs = {&seq, 1};
    p.kv_scores = KvScoreMode::Accumulate;
    ThreadPool pool(1);
    EXPECT_THROW(paged_attention(p, pool), InvalidArgument);
    std::vector<float> none(1);
    const int64_t slot = 0;
    EXPECT_THROW(kv.storage().read_scores(0, {&slot, 1}, none.data()), InvalidArgument);
}

}  // namespace
}  // namespace vela
