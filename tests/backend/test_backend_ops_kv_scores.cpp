// Conformance of the attention scores that the h2o and tova eviction policies read
// (KvScoreMode), on every built backend: the KV fixture of kv_conformance.h, float64 references.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kv_conformance.h"

namespace vela::test {

// Attention scores, the eviction policies' statistics (KvScoreMode): after attention over a mix of
// decode rows and prompt chunks, each key's score is the softmax weight that the step's rows
// (Accumulate: every row; Last: each sequence's last row) give it within their window, summed
// over the query heads of its kv head: float64 over the stored K (a window only with prompt
// chunks: windowed decode runs the prefill kernel on the GPU too). A second identical step
// doubles an Accumulate score and leaves a Last one. Tolerance relative to the score:
// 2.5 x the backend's attention tolerance (the GPU rounds q to 16 bits).
void BackendKvOps::check_scores(KvFormats f, KvScoreMode mode, int64_t window,
                                const std::vector<SeqShape>& shapes, std::mt19937_64& rng) {
    const int64_t n_kv = 2, ratio = 3, hd = 64, bs = 16, n_heads = n_kv * ratio;
    if (unsupported(f, hd)) return;
    KvLayout l{2, n_kv, hd, bs, blocks_needed(shapes, bs) + 3};
    l.attention_scores = true;
    auto kv = make_kv(l, f);
    const PagedSeqs p = place(shapes, l, rng);
    const StepKv in = random_step_kv(shapes, n_kv * hd, rng);
    write(*kv, 1, history_batch(p), in.k_hist, in.v_hist);
    ForwardBatch step = step_batch(p);
    step.kv_scores = mode;
    write(*kv, 1, step, in.k_new, in.v_new);  // plans the step
    const int64_t rows = step.n_rows();
    const std::vector<float> q = normal_floats(static_cast<size_t>(rows * n_heads * hd), rng, 2.0);
    DeviceTensor dq(backend(), rows, n_heads * hd), dout(backend(), rows, n_heads * hd);
    dq.upload(q);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

    // The float64 weights each key gets, per sequence: [kv_len][n_kv].
    std::vector<std::vector<double>> want;
    int64_t row = 0;
    for (size_t s = 0; s < shapes.size(); ++s) {
        const SeqShape sh = shapes[s];
        std::vector<double> w(static_cast<size_t>(sh.kv_len * n_kv), 0.0);
        std::vector<std::vector<float>> keys;  // [pos][kv head]
        for (int64_t pos = 0; pos < sh.kv_len; ++pos)
            for (int64_t h = 0; h < n_kv; ++h)
                keys.push_back(read(*kv, 1, p.slot(s, pos), h, false));
        for (int64_t i = 0; i < sh.q_len; ++i, ++row) {
            if (mode == KvScoreMode::Last && i != sh.q_len - 1) continue;
            const int64_t pos = sh.kv_len - sh.q_len + i;
            const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
            for (int64_t h = 0; h < n_heads; ++h) {
                const int64_t g = h / ratio;
                const float* qh = q.data() + (row * n_heads + h) * hd;
                std::vector<double> e(static_cast<size_t>(pos - lo + 1));
                double mx = -INFINITY, sum = 0.0;
                for (int64_t j = lo; j <= pos; ++j) {
                    double dot = 0.0;
                    for (int64_t d = 0; d < hd; ++d) dot += qh[d] * double{keys[j * n_kv + g][d]};
                    mx = std::max(mx, e[j - lo] = scale * dot);
                }
                for (double& x : e) sum += (x = std::exp(x - mx));
                for (int64_t j = lo; j <= pos; ++j) w[j * n_kv + g] += e[j - lo] / sum;
            }
        }
        want.push_back(std::move(w));
    }
    const double tol = 2.5 * GetParam().precision.attention_tol(f);
    const std::string what = fmt::format("scores {} {} window {}", name_of(f),
                                         mode == KvScoreMode::Last ? "last" : "accumulate", window);
    for (int pass = 1; pass <= 2; ++pass) {
        backend().attention(*kv, 1, dq.view(), dout.view(), n_heads, scale, window);
        const double factor = mode == KvScoreMode::Accumulate ? pass : 1.0;
        double worst = 0.0;
        for (size_t s = 0; s < shapes.size(); ++s) {
            std::vector<int64_t> slots;
            for (int64_t pos = 0; pos < shapes[s].kv_len; ++pos) slots.push_back(p.slot(s, pos));
            std::vector<float> got(slots.size() * static_cast<size_t>(n_kv));
            kv->read_scores(1, slots, got.data());
            for (size_t i = 0; i < got.size(); ++i) {
                const double ref = factor * want[s][i];
                const double e = std::fabs(got[i] - ref) / (ref + 1e-6);
                worst = std::isnan(e) ? INFINITY : std::max(worst, e);
            }
        }
        report_.add("attn_scores", name_of(f), worst, tol);
        EXPECT_LE(worst, tol) << what << " pass " << pass << ", seed " << run_seed();
    }
}

TEST_P(BackendKvOps, AttentionScores) {
    auto rng = op_rng("attention_scores");
    for (KvFormats f :
         {KvFormats{KvFormat::F16}, KvFormats{KvFormat::Q8}, KvFormats{KvFormat::FP8}}) {
        for (KvScoreMode mode : {KvScoreMode::Accumulate, KvScoreMode::Last}) {
            // Prompt chunks with decode rows, and decode rows alone (the GPU's decode kernel).
            for (const std::vector<SeqShape>& shapes :
                 {std::vector<SeqShape>{{1, 1}, {17, 17}, {1, 130}, {33, 100}, {3, 50}},
                  std::vector<SeqShape>{{1, 1}, {1, 130}, {1, 50}, {1, 77}}}) {
                check_scores(f, mode, 0, shapes, rng);
                if (shapes[1].q_len > 1) check_scores(f, mode, 48, shapes, rng);
            }
        }
    }
}

}  // namespace vela::test
