#include "model/forward_batch.h"

#include <algorithm>

#include "core/error.h"

namespace vela {

void ForwardBatch::clear() {
    tokens.clear();
    positions.clear();
    slot_mapping.clear();
    query_start.assign(1, 0);
    kv_len.clear();
    max_blocks = 0;
    block_table.clear();
    local_slot_mapping.clear();
    local_block_table.clear();
    pending_local_.clear();
    logit_rows.clear();
    tree_mask.clear();
    tree_offset.clear();
    pending_blocks_.clear();
}

void ForwardBatch::add_sequence(std::span<const int32_t> new_tokens, int64_t first_pos,
                                std::span<const int64_t> slots, std::span<const int32_t> blocks,
                                int64_t kv_tokens, bool logits_last, bool logits_all) {
    VELA_ASSERT(slots.size() == new_tokens.size());
    if (query_start.empty()) query_start.push_back(0);
    const auto row0 = static_cast<int32_t>(tokens.size());
    const auto n = static_cast<int32_t>(new_tokens.size());
    tokens.insert(tokens.end(), new_tokens.begin(), new_tokens.end());
    for (int32_t i = 0; i < n; ++i) positions.push_back(static_cast<int32_t>(first_pos + i));
    slot_mapping.insert(slot_mapping.end(), slots.begin(), slots.end());
    query_start.push_back(row0 + n);
    kv_len.push_back(static_cast<int32_t>(kv_tokens));
    if (logits_all) {
        for (int32_t i = 0; i < n; ++i) logit_rows.push_back(row0 + i);
    } else if (logits_last && n > 0) {
        logit_rows.push_back(row0 + n - 1);
    }
    pending_blocks_.emplace_back(blocks.begin(), blocks.end());
    max_blocks = std::max(max_blocks, static_cast<int32_t>(blocks.size()));
    tree_offset.push_back(-1);
}

void ForwardBatch::add_tree(std::span<const int32_t> new_tokens, std::span<const int32_t> parents,
                            int64_t first_pos, std::span<const int64_t> slots,
                            std::span<const int32_t> blocks, int64_t kv_tokens) {
    const auto n = static_cast<int64_t>(new_tokens.size());
    VELA_ASSERT(static_cast<int64_t>(parents.size()) == n - 1);
    add_sequence(new_tokens, first_pos, slots, blocks, kv_tokens, true, true);
    // Rows: 0 is the last token, 1 + i is node i.
    const size_t at = tree_mask.size();
    tree_mask.resize(at + static_cast<size_t>(n * n), 0);
    uint8_t* mask = tree_mask.data() + at;
    int32_t* pos = positions.data() + positions.size() - n;
    mask[0] = 1;
    for (int64_t r = 1; r < n; ++r) {
        const int32_t parent = parents[static_cast<size_t>(r - 1)];
        VELA_ASSERT(parent >= -1 && parent < r - 1);
        const int64_t parent_row = parent + 1;
        std::copy_n(mask + parent_row * n, parent_row + 1, mask + r * n);
        mask[r * n + r] = 1;
        pos[r] = pos[parent_row] + 1;
    }
    tree_offset.back() = static_cast<int64_t>(at);
}

void ForwardBatch::add_local(const BlockTable& table, int64_t block_size) {
    if (table.local.empty()) return;
    VELA_ASSERT(pending_local_.size() + 1 == pending_blocks_.size() &&
                table.blocks.size() == pending_blocks_.back().size());
    for (int64_t t = table.n_tokens - q_len(n_seqs() - 1); t < table.n_tokens; ++t) {
        local_slot_mapping.push_back(table.local_slot(t, block_size));
    }
    // Released blocks are before every query's window: any block of the sequence stands in.
    std::vector<int32_t>& blocks = pending_local_.emplace_back(
        static_cast<size_t>(table.local_first), table.local.front());
    blocks.insert(blocks.end(), table.local.begin(), table.local.end());
}

void ForwardBatch::finish() {
    auto lay_out = [&](std::vector<std::vector<int32_t>>& pending, std::vector<int32_t>& table) {
        table.assign(pending.size() * static_cast<size_t>(max_blocks), -1);
        for (size_t s = 0; s < pending.size(); ++s) {
            std::copy(pending[s].begin(), pending[s].end(),
                      table.begin() + static_cast<long>(s * static_cast<size_t>(max_blocks)));
        }
        pending.clear();
    };
    VELA_ASSERT(pending_local_.empty() || pending_local_.size() == pending_blocks_.size());
    lay_out(pending_blocks_, block_table);
    lay_out(pending_local_, local_block_table);
}

void ForwardBatch::validate(int64_t block_size) const {
    const int64_t rows = n_rows();
    if (static_cast<int64_t>(positions.size()) != rows ||
        static_cast<int64_t>(slot_mapping.size()) != rows) {
        fail<InvalidArgument>("ForwardBatch: positions/slot_mapping must have one entry per row");
    }
    if (query_start.size() != kv_len.size() + 1 || query_start.front() != 0 ||
        query_start.back() != rows) {
        fail<InvalidArgument>("ForwardBatch: query_start must run from 0 to n_rows");
    }
    if (static_cast<int64_t>(block_table.size()) != n_seqs() * max_blocks) {
        fail<InvalidArgument>("ForwardBatch: block_table must be n_seqs x max_blocks");
    }
    if (has_local_group() && (static_cast<int64_t>(local_slot_mapping.size()) != rows ||
                              local_block_table.size() != block_table.size())) {
        fail<InvalidArgument>("ForwardBatch: the local group's slots and blocks must match");
    }
    for (int64_t s = 0; s < n_seqs(); ++s) {
        if (q_len(s) < 0 || kv_len[s] < q_len(s) ||
            (kv_len[s] + block_size - 1) / block_size > max_blocks) {
            fail<InvalidArgument>("ForwardBatch: sequence {} has q_len {} and kv_len {}", s,
                                  q_len(s), kv_len[s]);
        }
    }
    for (int32_t r : logit_rows) {
        if (r < 0 || r >= rows) fail<InvalidArgument>("ForwardBatch: logit row {} out of range", r);
    }
    if (!tree_offset.empty() && static_cast<int64_t>(tree_offset.size()) != n_seqs()) {
        fail<InvalidArgument>("ForwardBatch: tree_offset must have one entry per sequence");
    }
    for (int64_t s = 0; s < static_cast<int64_t>(tree_offset.size()); ++s) {
        if (tree_offset[s] >= 0 &&
            tree_offset[s] + q_len(s) * q_len(s) > static_cast<int64_t>(tree_mask.size())) {
            fail<InvalidArgument>("ForwardBatch: sequence {}'s tree mask is out of range", s);
        }
    }
}

}  // namespace vela
