// BlockManager::compact: eviction's bookkeeping (kv/eviction.h decides what stays).
#include <algorithm>

#include "core/error.h"
#include "kv/block_manager.h"

namespace vela {

namespace {

// The blocks of `t` that hold the kept rows, in order, when every kept row would stay where it
// is within its block and each kept block is kept whole (the last one: the table's own last,
// with as many tokens); else empty.
std::vector<int32_t> whole_blocks_kept(const BlockTable& t, int64_t bs, int64_t n_keep,
                                       std::span<const KeepGroup> groups) {
    if (groups.size() != 1 || groups[0].layer >= 0 || groups[0].head >= 0 || n_keep == 0 ||
        n_keep % bs != t.n_tokens % bs) {
        return {};
    }
    const std::vector<int32_t>& idx = groups[0].indices;
    std::vector<int32_t> kept;
    for (int64_t j = 0; j < n_keep; ++j) {
        const int64_t src = idx[static_cast<size_t>(j)];
        if (src % bs != j % bs || src - j != idx[static_cast<size_t>(j / bs * bs)] - j / bs * bs)
            return {};
        if (j % bs == 0) kept.push_back(t.blocks[static_cast<size_t>(src / bs)]);
    }
    if (kept.back() != t.blocks.back()) return {};
    return kept;
}

}  // namespace

bool BlockManager::compact(SeqId id, int64_t n_keep, std::span<const KeepGroup> groups) {
    require_no_local_group("KV eviction");
    BlockTable& t = mutable_table(id);
    if (n_keep < 0 || n_keep > t.n_tokens || groups.empty()) {
        fail<InvalidArgument>("cannot compact KV sequence {} of {} tokens to {} ({} groups)", id,
                              t.n_tokens, n_keep, groups.size());
    }
    for (const KeepGroup& g : groups) {
        const bool sorted = std::adjacent_find(g.indices.begin(), g.indices.end(),
                                               std::greater_equal<>()) == g.indices.end();
        if (static_cast<int64_t>(g.indices.size()) != n_keep || !sorted ||
            (n_keep > 0 && (g.indices.front() < 0 || g.indices.back() >= t.n_tokens))) {
            fail<InvalidArgument>(
                "KV sequence {}: a keep group must list {} ascending token indices below {}", id,
                n_keep, t.n_tokens);
        }
    }
    const int64_t bs = config_.block_size;
    // Whole blocks kept (every row at its offset, a block's rows from one block, and the last
    // block's from the sequence's own last block): the table drops the others, and no row moves.
    std::vector<int32_t> blocks = whole_blocks_kept(t, bs, n_keep, groups);
    if (blocks.empty() && !move_kept_rows(t, bs, n_keep, groups, blocks)) return false;
    std::vector<int32_t> kept = blocks, dropped;
    std::sort(kept.begin(), kept.end());
    for (int32_t b : t.blocks) {
        if (!std::binary_search(kept.begin(), kept.end(), b)) dropped.push_back(b);
    }
    t.blocks = std::move(blocks);
    t.n_tokens = n_keep;
    release_all(dropped);
    chains_.erase(id);
    evicted_.insert(id);
    return true;
}

bool BlockManager::move_kept_rows(const BlockTable& t, int64_t bs, int64_t n_keep,
                                  std::span<const KeepGroup> groups, std::vector<int32_t>& blocks) {
    const auto n_blocks = static_cast<size_t>((n_keep + bs - 1) / bs);
    // Rows only move to lower indices, so a block held by this sequence alone can be
    // compacted in place (a row is read before any later move writes over it); a shared block
    // must stay as its other users see it, so its rows go to a fresh block. When the pool is
    // short of those, blocks shared only with the prefix cache are taken out of the cache and
    // compacted in place instead.
    auto cached_only = [&](int32_t b) {
        return prefix_ && pool_.ref_count(b) == 2 && prefix_->contains(b);
    };
    int64_t shared = 0, stealable = 0;
    for (size_t i = 0; i < n_blocks; ++i) {
        shared += pool_.ref_count(t.blocks[i]) > 1 ? 1 : 0;
        stealable += cached_only(t.blocks[i]) ? 1 : 0;
    }
    const bool steal = shared > num_free_blocks();
    if (steal && shared - stealable > num_free_blocks()) return false;

    blocks.resize(n_blocks);
    for (size_t i = 0; i < n_blocks; ++i) {
        const int32_t b = t.blocks[i];
        if (steal && cached_only(b)) {
            prefix_->erase(b);
            pool_.unref(b);  // the cache's reference
        }
        blocks[i] = pool_.ref_count(b) > 1 ? allocate_block() : b;
    }
    auto slot = [bs](const std::vector<int32_t>& table, int64_t index) {
        return static_cast<int32_t>(int64_t{table[static_cast<size_t>(index / bs)]} * bs + index % bs);
    };
    for (const KeepGroup& g : groups) {
        for (int64_t j = 0; j < n_keep; ++j) {
            const int32_t src = slot(t.blocks, g.indices[j]), dst = slot(blocks, j);
            if (src != dst) emit(BlockOp{BlockOp::Kind::MoveRow, src, dst, g.layer, g.head});
        }
    }
    return true;
}

void BlockManager::keep_tail(SeqId id, int64_t from, std::span<const int64_t> rows) {
    const BlockTable& t = table(id);
    const int64_t bs = config_.block_size;
    for (size_t j = 0; j < rows.size(); ++j) {
        const int64_t src = rows[j], dst = from + static_cast<int64_t>(j);
        if (src < dst || src >= t.n_tokens || (j > 0 && src <= rows[j - 1])) {
            fail<InvalidArgument>("KV sequence {}: cannot keep row {} at {}", id, src, dst);
        }
        if (src == dst) continue;
        const int32_t block = t.blocks[static_cast<size_t>(dst / bs)];
        VELA_ASSERT(pool_.ref_count(block) == 1);  // tree rows are this step's own
        emit(BlockOp{BlockOp::Kind::MoveRow,
                     static_cast<int32_t>(int64_t{t.blocks[static_cast<size_t>(src / bs)]} * bs + src % bs),
                     static_cast<int32_t>(int64_t{block} * bs + dst % bs), -1, -1});
        if (local_pool_) {
            VELA_ASSERT(local_pool_->ref_count(t.local[static_cast<size_t>(dst / bs - t.local_first)]) == 1);
            emit(BlockOp{BlockOp::Kind::MoveRow, static_cast<int32_t>(t.local_slot(src, bs)),
                         static_cast<int32_t>(t.local_slot(dst, bs)), -1, -1, 1});
        }
    }
    truncate(id, from + static_cast<int64_t>(rows.size()));
}

}  // namespace vela
