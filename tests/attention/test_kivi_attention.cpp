// Paged attention over K in Q4 (KIVI's per-channel keys, kv/kivi_keys.h) against a float64
// reference built from the keys the format defines: a query at KV index p reads block b's
// dequantised codes when p >= b's last index, else its keys rounded to fp16. The cache is
// filled as the engine fills it: earlier context in chunks, then every sequence's query rows in
// one write, then attention.
//
// Tolerance |out - ref| <= atol + rtol |ref| with V f32: atol 1e-4, rtol 1e-3. The reference
// sees exactly the stored keys and values, so what is left is float accumulation: the folded
// dot sum_c q_c min_c + sum_c (q_c scale_c) code_c adds terms larger than q . k (minima of
// ~-4, codes up to 15); measured worst ratio 0.044 of this bound. V in Q4: the same (the
// reference reads V back as stored).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attention_problem.h"
#include "core/fp16.h"

namespace vela {
namespace {

using test::AttentionProblem;
using test::SeqShape;

struct KiviRun {
    int64_t block_size = 16;
    KvFormat v = KvFormat::F32;
    AttentionImpl impl = AttentionImpl::Scalar;
    int threads = 2;
};

class KiviCache {
  public:
    KiviCache(const AttentionProblem& pr, const KiviRun& run) : pr_(pr), run_(run), kv_(config()) {
        const size_t n = pr.shapes.size();
        const int64_t row = pr.n_kv_heads * pr.head_dim;
        for (size_t i = 0; i < n; ++i) kv_.add_sequence(static_cast<SeqId>(i));
        std::vector<int64_t> done(n, 0);
        for (int64_t round = 0;; ++round) {  // context, in chunks taken round robin
            bool any = false;
            for (size_t i = 0; i < n; ++i) {
                const int64_t context = pr.shapes[i].kv_len - pr.shapes[i].q_len;
                const int64_t chunk = std::min<int64_t>(
                    1 + (round * 7 + static_cast<int64_t>(i) * 5) % 23, context - done[i]);
                if (chunk <= 0) continue;
                any = true;
                const std::vector<int64_t> slots = kv_.append(static_cast<SeqId>(i), chunk);
                kv_.write(0, slots, &pr.k[i][done[i] * row], &pr.v[i][done[i] * row]);
                done[i] += chunk;
            }
            if (!any) break;
        }
        std::vector<int64_t> slots;  // this step's rows of every sequence: one write
        std::vector<float> k, v;
        for (size_t i = 0; i < n; ++i) {
            const std::vector<int64_t> s = kv_.append(static_cast<SeqId>(i), pr.shapes[i].q_len);
            slots.insert(slots.end(), s.begin(), s.end());
            k.insert(k.end(), pr.k[i].begin() + done[i] * row, pr.k[i].end());
            v.insert(v.end(), pr.v[i].begin() + done[i] * row, pr.v[i].end());
        }
        kv_.write(0, slots, k.data(), v.data());
    }

    std::vector<float> attend() const {
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
        std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());
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
        p.impl = run_.impl;
        ThreadPool pool(run_.threads);
        paged_attention(p, pool);
        return out;
    }

    // Largest |out - ref| / (atol + rtol |ref|) over every output of the batch.
    double error_ratio(const std::vector<float>& out, double atol, double rtol) const {
        const int64_t hd = pr_.head_dim, group = pr_.n_heads / pr_.n_kv_heads, bs = run_.block_size;
        double worst = 0.0;
        int64_t out_row = 0;
        for (size_t s = 0; s < pr_.shapes.size(); ++s) {
            const SeqShape& sh = pr_.shapes[s];
            const BlockTable& t = kv_.table(static_cast<SeqId>(s));
            auto slot = [&](int64_t j) { return int64_t{t.blocks[j / bs]} * bs + j % bs; };
            std::vector<float> key(static_cast<size_t>(hd)), value(static_cast<size_t>(hd));
            for (int64_t i = 0; i < sh.q_len; ++i, ++out_row) {
                const int64_t pos = sh.kv_len - sh.q_len + i;
                for (int64_t h = 0; h < pr_.n_heads; ++h) {
                    const int64_t g = h / group;
                    const float* q = &pr_.q[s][static_cast<size_t>((i * pr_.n_heads + h) * hd)];
                    std::vector<double> w(static_cast<size_t>(pos + 1));
                    double max = -std::numeric_limits<double>::infinity(), sum = 0.0;
                    for (int64_t j = 0; j <= pos; ++j) {
                        if (pos >= j / bs * bs + bs - 1) {
                            kv_.read(0, slot(j), g, false, key.data());  // a full block's codes
                        } else {
                            for (int64_t c = 0; c < hd; ++c) {
                                key[c] = fp16_to_fp32(fp32_to_fp16(pr_.k[s][static_cast<size_t>(
                                    (j * pr_.n_kv_heads + g) * hd + c)]));
                            }
                        }
                        double dot = 0.0;
                        for (int64_t c = 0; c < hd; ++c) dot += double{q[c]} * key[c];
                        w[j] = dot * pr_.scale();
                        max = std::max(max, w[j]);
                    }
                    for (double& x : w) sum += (x = std::exp(x - max));
                    std::vector<double> ref(static_cast<size_t>(hd), 0.0);
                    for (int64_t j = 0; j <= pos; ++j) {
                        kv_.read(0, slot(j), g, true, value.data());
                        for (int64_t c = 0; c < hd; ++c) ref[c] += w[j] / sum * value[c];
                    }
                    const float* got = &out[static_cast<size_t>((out_row * pr_.n_heads + h) * hd)];
                    for (int64_t c = 0; c < hd; ++c) {
                        const double e =
                            std::abs(got[c] - ref[c]) / (atol + rtol * std::abs(ref[c]));
                        if (std::isnan(e)) return std::numeric_limits<double>::infinity();
                        worst = std::max(worst, e);
                    }
                }
            }
        }
        return worst;
    }

  private:
    KvCacheConfig config() const {
        int64_t blocks = 0;
        for (const SeqShape& s : pr_.shapes)
            blocks += (s.kv_len + run_.block_size - 1) / run_.block_size;
        return {1,
                pr_.n_kv_heads,
                pr_.head_dim,
                run_.block_size,
                blocks,
                KvFormats(KvFormat::Q4, run_.v)};
    }

    const AttentionProblem& pr_;
    KiviRun run_;
    KvCache kv_;
};

std::vector<AttentionImpl> impls() {
    std::vector<AttentionImpl> v{AttentionImpl::Scalar};
    if (attention_avx2_available()) v.push_back(AttentionImpl::Avx2);
    return v;
}

// Decode rows (one at a block's last slot), whole prompts, prefill chunks over earlier context.
std::vector<SeqShape> batch() {
    return {{1, 1}, {16, 1}, {17, 17}, {97, 40}, {300, 33}, {300, 1}, {45, 5}, {64, 16}};
}

TEST(KiviAttention, MatchesFloat64OnTheStoredKeys) {
    for (int64_t hd : {40, 64, 72, 128}) {
        for (int64_t group : {1, 4}) {
            const AttentionProblem pr =
                AttentionProblem::random(batch(), 2 * group, 2, hd, 100 + hd + group);
            for (int64_t bs : {1, 7, 16}) {
                for (KvFormat v : {KvFormat::F32, KvFormat::Q4}) {
                    for (AttentionImpl impl : impls()) {
                        const KiviCache c(pr, {bs, v, impl, 2});
                        EXPECT_LE(c.error_ratio(c.attend(), 1e-4, 1e-3), 1.0)
                            << "head_dim " << hd << " group " << group << " block " << bs << " v "
                            << kv_format_name(v) << " impl " << static_cast<int>(impl);
                    }
                }
            }
        }
    }
}

// Each sequence alone, one thread, gives exactly the bits of the batched, threaded call.
TEST(KiviAttention, BatchedEqualsPerSequenceBitForBit) {
    const AttentionProblem pr = AttentionProblem::random(batch(), 8, 2, 64, 5);
    for (AttentionImpl impl : impls()) {
        const KiviCache batched_cache(pr, {16, KvFormat::Q4, impl, 2});
        const std::vector<float> batched = batched_cache.attend();
        int64_t row = 0;
        for (size_t i = 0; i < pr.shapes.size(); ++i) {
            AttentionProblem one = pr;
            one.shapes = {pr.shapes[i]};
            one.q = {pr.q[i]};
            one.k = {pr.k[i]};
            one.v = {pr.v[i]};
            const std::vector<float> alone = KiviCache(one, {16, KvFormat::Q4, impl, 1}).attend();
            ASSERT_EQ(std::memcmp(alone.data(), &batched[static_cast<size_t>(row * 8 * 64)],
                                  alone.size() * sizeof(float)),
                      0)
                << "sequence " << i;
            row += pr.shapes[i].q_len;
        }
    }
}

}  // namespace
}  // namespace vela
