#include "attention/paged_attention.h"

#include <algorithm>
#include <vector>

#include "attention/attention_work.h"
#include "core/error.h"

namespace vela {
namespace {

using attention_detail::AttentionWork;

void check_params(const PagedAttentionParams& p) {
    if (p.n_heads < 1 || p.n_kv_heads < 1 || p.n_heads % p.n_kv_heads != 0) {
        fail<InvalidArgument>("attention: {} query heads cannot share {} KV heads", p.n_heads,
                              p.n_kv_heads);
    }
    if (p.head_dim < 1 || p.block_size < 1 || p.window < 0) {
        fail<InvalidArgument>("attention: bad head_dim {} / block_size {} / window {}", p.head_dim,
                              p.block_size, p.window);
    }
    if (p.kv.k.data == nullptr || p.kv.v.data == nullptr || p.q == nullptr || p.out == nullptr) {
        fail<InvalidArgument>("attention: null q, out or KV pointer");
    }
    if (p.kv_scores != KvScoreMode::None && p.kv.scores == nullptr) {
        fail<InvalidArgument>("attention: scores requested from a KV storage that keeps none");
    }
    const KvLayerView& kv = p.kv;
    if (kv.n_kv_heads != p.n_kv_heads || kv.head_dim != p.head_dim ||
        kv.block_size != p.block_size) {
        fail<InvalidArgument>(
            "attention: parameters say {} KV heads x {} dims in blocks of {}, the KV layer holds "
            "{} x {} in blocks of {}",
            p.n_kv_heads, p.head_dim, p.block_size, kv.n_kv_heads, kv.head_dim, kv.block_size);
    }
    for (size_t i = 0; i < p.seqs.size(); ++i) {
        const AttentionSeq& s = p.seqs[i];
        if (s.q_begin < 0 || s.q_len < 0 || s.kv_len < s.q_len ||
            (s.kv_len > 0 && s.block_table == nullptr)) {
            fail<InvalidArgument>(
                "attention: sequence {} has q_begin {}, q_len {}, kv_len {} (needs kv_len >= "
                "q_len and a block table)",
                i, s.q_begin, s.q_len, s.kv_len);
        }
        if (s.sparse_window < 0 || s.sparse_sinks < 0 ||
            (s.sparse_window > 0 && (s.tree_mask != nullptr || p.window > 0))) {
            fail<InvalidArgument>(
                "attention: sequence {}: sparse attention (sinks {}, window {}) alone only", i,
                s.sparse_sinks, s.sparse_window);
        }
        if (s.tree_mask == nullptr) continue;
        if (p.window > 0 || p.kv_scores != KvScoreMode::None) {
            fail<InvalidArgument>("attention: token trees with a window or recorded scores");
        }
        for (int64_t r = 0; r < s.q_len; ++r) {
            const uint8_t* row = s.tree_mask + r * s.q_len;
            if (row[r] == 0 || std::any_of(row + r + 1, row + s.q_len, [](uint8_t m) { return m; })) {
                fail<InvalidArgument>(
                    "attention: tree mask row {} of sequence {} must see itself and no later row",
                    r, i);
            }
        }
    }
}

// Splits each sequence's query rows into tiles of at most kQueryTileVectors query vectors per
// KV head group. Tiles are cut relative to the sequence, never the batch.
std::vector<AttentionWork> plan_work(const PagedAttentionParams& p) {
    const int64_t group = p.n_heads / p.n_kv_heads;
    const int64_t rows_per_tile = std::max<int64_t>(1, attention_detail::kQueryTileVectors / group);
    std::vector<AttentionWork> work;
    for (size_t i = 0; i < p.seqs.size(); ++i) {
        const AttentionSeq& s = p.seqs[i];
        // A tree or sparse row sees its own list of keys: one row per work item.
        const int64_t rows = s.tree_mask != nullptr || s.sparse_window > 0 ? 1 : rows_per_tile;
        for (int64_t r = 0; r < s.q_len; r += rows) {
            for (int64_t g = 0; g < p.n_kv_heads; ++g) {
                work.push_back({static_cast<int64_t>(i), g, r, std::min(s.q_len, r + rows)});
            }
        }
    }
    return work;
}

}  // namespace

bool attention_avx2_available() {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

void paged_attention(const PagedAttentionParams& p, ThreadPool& pool) {
    check_params(p);
    const std::vector<AttentionWork> work = plan_work(p);
    if (work.empty()) return;
    const bool avx2 = attention_avx2_available();
    if (p.impl == AttentionImpl::Avx2 && !avx2) {
        fail<InvalidArgument>(
            "attention: the AVX2 path was requested but this CPU lacks "
            "AVX2/FMA/F16C");
    }
    if (p.impl != AttentionImpl::Scalar && avx2) {
        attention_detail::run_attention_avx2(p, work, pool);
    } else {
        attention_detail::run_attention_scalar(p, work, pool);
    }
}

}  // namespace vela
