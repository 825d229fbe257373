#pragma once
// Everything one forward step needs, as flat arrays: built once per step (by the engine's
// ModelRunner::prepare, or a test) and read by every backend, which may upload it whole in
// Backend::plan(). The model never asks the KV bookkeeping for anything: positions, slots and
// block tables are all here.
//
// Rows are the step's new tokens, sequence after sequence: sequence s owns rows
// [query_start[s], query_start[s + 1]). Its KV holds kv_len[s] tokens once this step's are
// written (they are its last q_len ones); its blocks are block_table[s * max_blocks ...].
#include <cstdint>
#include <span>
#include <vector>

#include "kv/kv_storage.h"

namespace vela {

struct ForwardBatch {
    std::vector<int32_t> tokens;        // [n_rows]
    std::vector<int32_t> positions;     // [n_rows] RoPE position of each row, explicit
    std::vector<int64_t> slot_mapping;  // [n_rows] KV slot each row's K/V is written to
    std::vector<int32_t> query_start;   // [n_seqs + 1] cumulative rows; query_start[0] == 0
    std::vector<int32_t> kv_len;        // [n_seqs] KV tokens after this step
    int32_t max_blocks = 0;             // row length of block_table
    std::vector<int32_t> block_table;   // [n_seqs][max_blocks], unused entries -1
    // Rows whose logits are returned, in this order (several per sequence when a step verifies
    // draft tokens; none for a prefill chunk that does not end its prompt).
    std::vector<int32_t> logit_rows;
    // Optional, for token trees: per sequence, a q_len x q_len mask (row-major, 1 = may
    // attend) among its own new rows, stacked in sequence order; empty means causal. Backends
    // that do not implement trees refuse a batch that has one.
    std::vector<uint8_t> tree_mask;
    // What attention records into the KV storage's scores for the eviction policies (the
    // storage must keep scores: KvLayout::attention_scores). Not reset by clear().
    KvScoreMode kv_scores = KvScoreMode::None;

    int64_t n_rows() const { return static_cast<int64_t>(tokens.size()); }
    int64_t n_seqs() const { return static_cast<int64_t>(kv_len.size()); }
    int64_t q_len(int64_t s) const { return query_start[s + 1] - query_start[s]; }
    std::span<const int32_t> blocks(int64_t s) const {
        return {block_table.data() + s * max_blocks, static_cast<size_t>(max_blocks)};
    }

    void clear();
    // Appends one sequence: its new tokens at consecutive positions starting at `first_pos`,
    // their slots, its block table, and whether its last row (or all rows) needs logits.
    // The table is padded to max_blocks when the batch is finished with finish().
    void add_sequence(std::span<const int32_t> new_tokens, int64_t first_pos,
                      std::span<const int64_t> slots, std::span<const int32_t> blocks,
                      int64_t kv_tokens, bool logits_last, bool logits_all = false);
    // Lays the per-sequence block lists out as the flat table. Call once after the last
    // add_sequence().
    void finish();

    // Checks the invariants above (InvalidArgument naming the field): for tests and backends.
    void validate(int64_t block_size) const;

  private:
    std::vector<std::vector<int32_t>> pending_blocks_;
};

}  // namespace vela
