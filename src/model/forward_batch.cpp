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
    logit_rows.clear();
    tree_mask.clear();
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
}

void ForwardBatch::finish() {
    block_table.assign(pending_blocks_.size() * static_cast<size_t>(max_blocks), -1);
    for (size_t s = 0; s < pending_blocks_.size(); ++s) {
        std::copy(pending_blocks_[s].begin(), pending_blocks_[s].end(),
                  block_table.begin() + static_cast<long>(s * static_cast<size_t>(max_blocks)));
    }
    pending_blocks_.clear();
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
}

}  // namespace vela
