#pragma once
// Causal attention of a batch of ragged sequences over paged KV (kv/kv_cache.h), computed
// FlashAttention-style: keys are visited in tiles with a running max and running sum per query,
// so no score row longer than one tile is ever materialised. One call serves prefill chunks and
// decode rows of many sequences; the query heads sharing a KV head (GQA) are processed together
// so each K/V tile is read once per group.
#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "kv/host_kv_storage.h"

namespace vela {

struct AttentionSeq {                      // one sequence of the batch
    int64_t q_begin = 0;                   // first row of this sequence in q/out
    int64_t q_len = 0;                     // number of query rows (prefill chunk or 1 for decode)
    int64_t kv_len = 0;                    // tokens in KV including this step's (already written)
    const int32_t* block_table = nullptr;  // ceil(kv_len / block_size) block ids
    // Token tree (speculative verification): q_len x q_len, row-major; row i attends to the
    // keys before the step's rows and to the new rows j <= i with tree_mask[i * q_len + j] != 0
    // (its ancestors and itself, which must be set). Null: causal.
    const uint8_t* tree_mask = nullptr;
    // Sparse attention (self-speculative drafting): with sparse_window > 0, each row attends
    // only to the first sparse_sinks keys and the last sparse_window keys up to its own.
    int64_t sparse_sinks = 0;
    int64_t sparse_window = 0;
};

// Which CPU code path runs; Auto picks AVX2+FMA+F16C when the CPU has them.
enum class AttentionImpl { Auto, Scalar, Avx2 };

struct PagedAttentionParams {
    const float* q = nullptr;  // [n_rows][n_heads][head_dim]
    float* out = nullptr;      // [n_rows][n_heads][head_dim]; rows of no sequence are untouched
    int64_t n_heads = 0;
    int64_t n_kv_heads =
        0;  // divides n_heads; query head h reads KV head h / (n_heads / n_kv_heads)
    int64_t head_dim = 0;
    int64_t block_size = 0;
    float scale = 0.0f;  // usually 1 / sqrt(head_dim)
    KvLayerView kv;      // one layer's K/V storage, layout as in kv/kv_storage.h
    std::span<const AttentionSeq> seqs;
    // Query row i of a sequence has absolute position kv_len - q_len + i and attends to keys at
    // positions in (pos - window, pos]; window 0 means no limit (plain causal).
    int64_t window = 0;
    AttentionImpl impl = AttentionImpl::Auto;
    // Also record each key's attention into kv.scores (which must be set), as KvScoreMode says.
    KvScoreMode kv_scores = KvScoreMode::None;
};

// Throws InvalidArgument for inconsistent shapes or an unavailable impl. Results do not depend
// on the batch composition or the thread count: each (row, head) is computed by the same
// sequence of operations as when its sequence runs alone.
void paged_attention(const PagedAttentionParams& p, ThreadPool& pool);

// Whether this CPU runs the AVX2 path.
bool attention_avx2_available();

}  // namespace vela
