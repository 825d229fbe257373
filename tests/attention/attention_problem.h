#pragma once
// Test fixture data for paged attention: random Q/K/V for a batch of sequences, the double
// reference per sequence, and a runner that lays the K/V out in a fresh KvCache with blocks of
// different sequences interleaved (so block tables are never in order) before calling the
// kernel on NaN-poisoned output.
#include <cstdint>
#include <vector>

#include "attention/paged_attention.h"
#include "attention/reference_attention.h"
#include "kv/kv_cache.h"

namespace vela::test {

struct SeqShape {
    int64_t kv_len;
    int64_t q_len;
};

struct AttentionProblem {
    int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0, window = 0;
    std::vector<SeqShape> shapes;
    std::vector<std::vector<float>> q, k, v;  // per sequence, contiguous
    std::vector<std::vector<double>> ref;     // per sequence [q_len][n_heads][head_dim]

    static AttentionProblem random(std::vector<SeqShape> shapes, int64_t n_heads,
                                   int64_t n_kv_heads, int64_t head_dim, uint64_t seed,
                                   int64_t window = 0);
    float scale() const;
    int64_t n_rows() const;
};

struct KernelRun {
    int64_t block_size = 16;
    KvFormat format = KvFormat::F32;
    AttentionImpl impl = AttentionImpl::Auto;
    int threads = 1;
};

// Writes every sequence's K/V (layer 0) into `kv` as sequences 0..n-1, in chunks taken round
// robin, so the blocks of one sequence are scattered through the pool.
void fill_cache(const AttentionProblem& pr, KvCache& kv);

// Output [n_rows][n_heads][head_dim] of one batched paged_attention call over all sequences.
std::vector<float> run_paged(const AttentionProblem& pr, const KernelRun& run);

// Largest |out - ref| / (atol + rtol * |ref|) over all values; <= 1 passes.
double error_ratio(const AttentionProblem& pr, const std::vector<float>& out, double atol,
                   double rtol);

}  // namespace vela::test
