#include "attention_problem.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace vela::test {

AttentionProblem AttentionProblem::random(std::vector<SeqShape> shapes, int64_t n_heads,
                                          int64_t n_kv_heads, int64_t head_dim, uint64_t seed,
                                          int64_t window) {
    AttentionProblem pr;
    pr.n_heads = n_heads;
    pr.n_kv_heads = n_kv_heads;
    pr.head_dim = head_dim;
    pr.window = window;
    pr.shapes = std::move(shapes);
    std::mt19937_64 rng(seed);
    // Wide enough that the softmax is far from uniform (scores span several units).
    std::normal_distribution<float> dist(0.0f, 1.5f);
    auto fill = [&](int64_t n) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& e : x) e = dist(rng);
        return x;
    };
    for (const SeqShape& s : pr.shapes) {
        pr.q.push_back(fill(s.q_len * n_heads * head_dim));
        pr.k.push_back(fill(s.kv_len * n_kv_heads * head_dim));
        pr.v.push_back(fill(s.kv_len * n_kv_heads * head_dim));
        pr.ref.push_back(
            reference_attention({pr.q.back(), pr.k.back(), pr.v.back(), s.q_len, s.kv_len, n_heads,
                                 n_kv_heads, head_dim, double{pr.scale()}, window}));
    }
    return pr;
}

float AttentionProblem::scale() const {
    return 1.0f / std::sqrt(static_cast<float>(head_dim));
}

int64_t AttentionProblem::n_rows() const {
    int64_t n = 0;
    for (const SeqShape& s : shapes) n += s.q_len;
    return n;
}

// Appends every sequence's tokens in chunks of varying size, round robin, so that the blocks
// of one sequence are scattered through the pool.
void fill_cache(const AttentionProblem& pr, KvCache& kv) {
    const size_t n = pr.shapes.size();
    std::vector<int64_t> done(n, 0);
    const int64_t row = pr.n_kv_heads * pr.head_dim;
    for (size_t i = 0; i < n; ++i) kv.add_sequence(static_cast<SeqId>(i));
    for (int64_t round = 0;; ++round) {
        bool any = false;
        for (size_t i = 0; i < n; ++i) {
            const int64_t chunk = std::min<int64_t>(
                1 + (round * 7 + static_cast<int64_t>(i) * 5) % 23, pr.shapes[i].kv_len - done[i]);
            if (chunk <= 0) continue;
            any = true;
            const std::vector<int64_t> slots = kv.append(static_cast<SeqId>(i), chunk);
            kv.write(0, slots, &pr.k[i][done[i] * row], &pr.v[i][done[i] * row]);
            done[i] += chunk;
        }
        if (!any) break;
    }
}

std::vector<float> run_paged(const AttentionProblem& pr, const KernelRun& run) {
    int64_t blocks = 0;
    for (const SeqShape& s : pr.shapes) blocks += (s.kv_len + run.block_size - 1) / run.block_size;
    KvCache kv(
        {1, pr.n_kv_heads, pr.head_dim, run.block_size, std::max<int64_t>(blocks, 1), KvFormats(run.format)});
    fill_cache(pr, kv);

    const int64_t row = pr.n_heads * pr.head_dim;
    std::vector<float> q(static_cast<size_t>(pr.n_rows() * row));
    std::vector<AttentionSeq> seqs;
    int64_t begin = 0;
    for (size_t i = 0; i < pr.shapes.size(); ++i) {
        std::copy(pr.q[i].begin(), pr.q[i].end(), q.begin() + begin * row);
        seqs.push_back({begin, pr.shapes[i].q_len, pr.shapes[i].kv_len,
                        kv.table(static_cast<SeqId>(i)).blocks.data()});
        begin += pr.shapes[i].q_len;
    }
    std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());
    PagedAttentionParams p;
    p.q = q.data();
    p.out = out.data();
    p.n_heads = pr.n_heads;
    p.n_kv_heads = pr.n_kv_heads;
    p.head_dim = pr.head_dim;
    p.block_size = run.block_size;
    p.scale = pr.scale();
    p.kv = kv.layer(0);
    p.seqs = seqs;
    p.window = pr.window;
    p.impl = run.impl;
    ThreadPool pool(run.threads);
    paged_attention(p, pool);
    return out;
}

double error_ratio(const AttentionProblem& pr, const std::vector<float>& out, double atol,
                   double rtol) {
    double worst = 0.0;
    size_t at = 0;
    for (const std::vector<double>& ref : pr.ref) {
        for (double r : ref) {
            const double e = std::abs(double{out[at++]} - r) / (atol + rtol * std::abs(r));
            if (std::isnan(e)) return std::numeric_limits<double>::infinity();  // poison left
            worst = std::max(worst, e);
        }
    }
    return at == out.size() ? worst : std::numeric_limits<double>::infinity();
}

}  // namespace vela::test
