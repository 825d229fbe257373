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

#include "kv/block_table.h"
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
    // With a local group (KvLayout::local_layers, BlockTable::local), what the local layers
    // use instead of slot_mapping and block_table: each row's local slot, and each sequence's
    // local blocks by block index. Blocks a sequence has released (before its local_first) are
    // out of every query's window: their entries name another of its blocks, never read.
    // Empty without a local group.
    std::vector<int64_t> local_slot_mapping;
    std::vector<int32_t> local_block_table;
    // Rows whose logits are returned, in this order (several per sequence when a step verifies
    // draft tokens; none for a prefill chunk that does not end its prompt).
    std::vector<int32_t> logit_rows;
    // Token trees (speculative verification): a sequence s with tree_offset[s] >= 0 has a
    // q_len x q_len mask (row-major, 1 = may attend) among its own new rows at
    // tree_mask[tree_offset[s]...]; -1 (or an empty tree_offset) means causal. Backends that do
    // not implement trees refuse a batch that has one.
    std::vector<uint8_t> tree_mask;
    std::vector<int64_t> tree_offset;
    // What attention records into the KV storage's scores for the eviction policies (the
    // storage must keep scores: KvLayout::attention_scores). Not reset by clear().
    KvScoreMode kv_scores = KvScoreMode::None;
    // Sparse attention for every sequence (self-speculative drafting, MagicDec-style): with
    // sparse_window > 0 each row attends to the first sparse_sinks keys and its last
    // sparse_window ones only. Not reset by clear().
    int64_t sparse_sinks = 0;
    int64_t sparse_window = 0;

    int64_t n_rows() const { return static_cast<int64_t>(tokens.size()); }
    int64_t n_seqs() const { return static_cast<int64_t>(kv_len.size()); }
    int64_t q_len(int64_t s) const { return query_start[s + 1] - query_start[s]; }
    std::span<const int32_t> blocks(int64_t s) const {
        return {block_table.data() + s * max_blocks, static_cast<size_t>(max_blocks)};
    }
    bool has_local_group() const { return !local_slot_mapping.empty(); }
    // The slots and block table a layer of `group` (KvLayout::group_of) writes and reads.
    const std::vector<int64_t>& slots_of(int8_t group) const {
        return group == 1 ? local_slot_mapping : slot_mapping;
    }
    const std::vector<int32_t>& table_of(int8_t group) const {
        return group == 1 ? local_block_table : block_table;
    }

    void clear();
    // Appends one sequence: its new tokens at consecutive positions starting at `first_pos`,
    // their slots, its block table, and whether its last row (or all rows) needs logits.
    // The table is padded to max_blocks when the batch is finished with finish().
    // add_tree: a sequence verifying a token tree: its last token (row 0, at first_pos) and the
    // tree's nodes, node i a child of node parents[i] (< i), or of row 0 when -1; a node at depth
    // d is at position first_pos + d and sees the rows of its ancestors; every row gets logits.
    void add_sequence(std::span<const int32_t> new_tokens, int64_t first_pos,
                      std::span<const int64_t> slots, std::span<const int32_t> blocks,
                      int64_t kv_tokens, bool logits_last, bool logits_all = false);
    void add_tree(std::span<const int32_t> new_tokens, std::span<const int32_t> parents,
                  int64_t first_pos, std::span<const int64_t> slots,
                  std::span<const int32_t> blocks, int64_t kv_tokens);
    // The local group of the sequence added last, from its table (BlockTable::local; its
    // last q_len tokens are the new rows); nothing when the table has no local blocks.
    void add_local(const BlockTable& table, int64_t block_size);
    bool has_tree() const { return !tree_mask.empty(); }
    // The tree mask of sequence s, or null when it is causal.
    const uint8_t* tree_of(int64_t s) const {
        return s < static_cast<int64_t>(tree_offset.size()) && tree_offset[s] >= 0
                   ? tree_mask.data() + tree_offset[s]
                   : nullptr;
    }
    // Lays the per-sequence block lists out as the flat table. Call once after the last
    // add_sequence().
    void finish();

    // Checks the invariants above (InvalidArgument naming the field): for tests and backends.
    void validate(int64_t block_size) const;

  private:
    std::vector<std::vector<int32_t>> pending_blocks_;
    std::vector<std::vector<int32_t>> pending_local_;
};

}  // namespace vela
