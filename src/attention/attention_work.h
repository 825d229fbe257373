#pragma once
// Internal: the unit of parallel work of paged_attention and the per-ISA entry points.
#include <cstdint>
#include <span>

#include "attention/paged_attention.h"

namespace vela::attention_detail {

// Query rows [row_begin, row_end) of one sequence (relative to its q_begin), all query heads
// of one KV head group.
struct AttentionWork {
    int64_t seq = 0;
    int64_t kv_head = 0;
    int64_t row_begin = 0;
    int64_t row_end = 0;
};

// Keys per tile: the online-softmax state is rescaled once per tile, so tiles span blocks
// (block_size may be 1) instead of following them.
inline constexpr int64_t kKeyTile = 64;
// Query vectors (rows x group heads) per work item: enough to reuse each K/V tile from L1.
inline constexpr int64_t kQueryTileVectors = 32;

void run_attention_scalar(const PagedAttentionParams& p, std::span<const AttentionWork> work,
                          ThreadPool& pool);
void run_attention_avx2(const PagedAttentionParams& p, std::span<const AttentionWork> work,
                        ThreadPool& pool);

}  // namespace vela::attention_detail
