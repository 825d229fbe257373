// CudaBackend::plan: a step's metadata (tokens, slots, lengths, block tables, token trees,
// sparse self-drafting tables) uploaded in one copy before its ops run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace vela {
namespace {

using cuda_backend::align_up;
using cuda_backend::as_stream;
using cuda_backend::check;
using cuda_backend::kAlign;

// v rounded up to m * 2^e with 8 <= m < 16 (at least 16): step shapes recorded as graphs come
// in few sizes, each at most 1/8 above the true one.
int32_t bucket(int32_t v) {
    if (v <= 16) return 16;
    int e = 0;
    while ((v - 1) >> (e + 4) != 0) ++e;  // the smallest e with v <= 16 * 2^e
    const int32_t step = int32_t{1} << e;
    return (v + step - 1) / step * step;
}

}  // namespace

const CudaBackend::Plan& CudaBackend::planned() const {
    VELA_ASSERT(plan_.batch != nullptr && "plan() comes before the step's ops");
    return plan_;
}

void CudaBackend::plan(const ForwardBatch& batch) {
    const bool tree = batch.has_tree();
    if (tree && batch.kv_scores != KvScoreMode::None) {
        fail<InvalidArgument>("attention scores are not recorded by token-tree steps");
    }
    const bool sparse = batch.sparse_window > 0;
    if (sparse && batch.kv_scores != KvScoreMode::None) {
        fail<InvalidArgument>("attention scores are not recorded by sparse (self-drafting) steps");
    }
    if (sparse) sparse_tables(batch);
    const std::vector<int32_t>& kv_len = sparse ? sparse_kv_len_ : batch.kv_len;
    const int32_t max_blocks = sparse ? sparse_max_blocks_ : batch.max_blocks;
    plan_.batch = &batch;
    plan_.decode_splits = 0;
    ++plans_;
    plan_.max_q_len = 0;
    plan_.max_kv_len = 0;
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
        plan_.max_q_len = std::max<int32_t>(plan_.max_q_len, static_cast<int32_t>(batch.q_len(s)));
        plan_.max_kv_len = std::max(plan_.max_kv_len, kv_len[s]);
    }
    // Decode steps (one new row per sequence) may be recorded: their block table is padded and
    // their KV bound rounded up to buckets, so that a recording serves many steps. Eager decode
    // steps do the same, so that both split the attention alike and agree bit for bit.
    const bool decode = batch.n_seqs() > 0 && batch.n_rows() == batch.n_seqs();
    // A few rows per sequence (verifying drafts) may run through the split-K decode kernel, a
    // sequence's rows packed with their query heads (attention() decides per call). Not for
    // trees (the decode kernel has no mask) nor batch-invariant steps (decode rows there take
    // the prefill kernel too).
    plan_.rows_as_decode = !decode && !tree && !sparse && !batch_invariant_ && batch.n_seqs() > 0 &&
                           plan_.max_q_len <= kMaxRowsAsDecode;
    // Verification steps (the same rows for every sequence, each with logits) are recorded and
    // bucketed as decode steps are: their shapes recur step after step. Other steps of a few
    // rows (mixed prompt chunks) rarely recur, and would pay a recording each.
    const bool verify = plan_.rows_as_decode &&
                        batch.n_rows() == batch.n_seqs() * plan_.max_q_len &&
                        std::ssize(batch.logit_rows) == batch.n_rows();
    const bool bucketed = decode || verify;
    // Steps that record attention scores (eviction by h2o / tova) run eagerly.
    plan_.graph = graphs_enabled_ && bucketed && batch.kv_scores == KvScoreMode::None;
    plan_.table_stride = bucketed ? bucket(max_blocks) : max_blocks;
    plan_.kv_bound = bucketed ? bucket(plan_.max_kv_len) : plan_.max_kv_len;

    const size_t table_len = static_cast<size_t>(batch.n_seqs()) * plan_.table_stride;
    const std::vector<int32_t>* table = &batch.block_table;
    if (sparse || table_len != batch.block_table.size()) {
        table_host_.assign(table_len, -1);
        for (int64_t s = 0; s < batch.n_seqs(); ++s) {
            const std::span<const int32_t> blocks =
                sparse ? std::span<const int32_t>(sparse_blocks_)
                             .subspan(static_cast<size_t>(sparse_start_[s]),
                                      static_cast<size_t>(sparse_start_[s + 1] - sparse_start_[s]))
                       : batch.blocks(s);
            std::copy(blocks.begin(), blocks.end(), table_host_.begin() + s * plan_.table_stride);
        }
        table = &table_host_;
    }
    // The local group's table at the same stride.
    const bool local = batch.has_local_group();
    if (local && sparse) {
        fail<InvalidArgument>(
            "sparse (self-drafting) attention does not run with the sliding-window layers kept "
            "apart: use --swa-full");
    }
    const std::vector<int32_t>* local_table = &batch.local_block_table;
    if (local && table_len != batch.local_block_table.size()) {
        local_table_host_.assign(table_len, -1);
        for (int64_t s = 0; s < batch.n_seqs(); ++s) {
            std::copy_n(batch.local_block_table.begin() + s * batch.max_blocks, batch.max_blocks,
                        local_table_host_.begin() + s * plan_.table_stride);
        }
        local_table = &local_table_host_;
    }
    // One upload: the int64 slots and tree offsets first (8-byte aligned), then the int32
    // arrays, then the tree masks' bytes.
    const size_t n_slots = batch.slot_mapping.size();
    const size_t n_local = batch.local_slot_mapping.size();
    const size_t n_trees = tree ? batch.tree_offset.size() : 0;
    struct Array {
        const std::vector<int32_t>* v;
        int32_t** dst;
    };
    const Array arrays[] = {
        {&batch.tokens, &plan_.tokens},
        {&batch.query_start, &plan_.query_start},
        {&kv_len, &plan_.kv_len},
        {table, &plan_.block_table},
        {&batch.logit_rows, &plan_.logit_rows},
        {local_table, &plan_.local_block_table},
    };
    const size_t tree_bytes = tree ? batch.tree_mask.size() : 0;
    size_t bytes = align_up((n_slots + n_local + n_trees) * sizeof(int64_t)) + tree_bytes;
    for (const Array& a : arrays) bytes += align_up(a.v->size() * sizeof(int32_t));
    meta_host_.assign(bytes, std::byte{0});
    auto* dev = static_cast<std::byte*>(meta_.get(std::max<size_t>(bytes, kAlign)));
    std::memcpy(meta_host_.data(), batch.slot_mapping.data(), n_slots * sizeof(int64_t));
    plan_.slots = reinterpret_cast<int64_t*>(dev);
    size_t off = n_slots * sizeof(int64_t);
    plan_.local_slots = nullptr;
    if (local) {
        std::memcpy(meta_host_.data() + off, batch.local_slot_mapping.data(),
                    n_local * sizeof(int64_t));
        plan_.local_slots = reinterpret_cast<int64_t*>(dev + off);
        off += n_local * sizeof(int64_t);
    }
    plan_.tree_offset = nullptr;
    if (tree) {
        std::memcpy(meta_host_.data() + off, batch.tree_offset.data(), n_trees * sizeof(int64_t));
        plan_.tree_offset = reinterpret_cast<int64_t*>(dev + off);
    }
    off = align_up(off + n_trees * sizeof(int64_t));
    for (const Array& a : arrays) {
        if (a.dst == &plan_.local_block_table && !local) {
            plan_.local_block_table = nullptr;
            continue;
        }
        if (!a.v->empty()) {
            std::memcpy(meta_host_.data() + off, a.v->data(), a.v->size() * sizeof(int32_t));
        }
        *a.dst = reinterpret_cast<int32_t*>(dev + off);
        off += align_up(a.v->size() * sizeof(int32_t));
    }
    plan_.tree_mask = nullptr;
    if (tree) {
        std::memcpy(meta_host_.data() + off, batch.tree_mask.data(), tree_bytes);
        plan_.tree_mask = reinterpret_cast<uint8_t*>(dev + off);
    }
    check(
        cudaMemcpyAsync(dev, meta_host_.data(), bytes, cudaMemcpyHostToDevice, as_stream(stream_)),
        "plan upload");
}

// Self-speculative drafting (MagicDec): each row attends to its sequence's first sparse_sinks
// and last sparse_window keys only. The kernels get that as a shorter block table: the blocks
// holding the first keys, then those holding the last ones (the window's first block whole, so
// up to block_size - 1 keys more than the CPU reads). The keys need no positions: RoPE was
// applied when they were written. A draft that reads a few keys more is still only a draft.
void CudaBackend::sparse_tables(const ForwardBatch& batch) {
    if (batch.n_rows() != batch.n_seqs()) {
        fail<InvalidArgument>(
            "the CUDA backend runs sparse (self-drafting) attention in decode "
            "steps only (one row per sequence)");
    }
    if (kv_block_size_ <= 0) {
        fail<InvalidArgument>(
            "sparse attention on the CUDA backend needs its KV storage (one "
            "block size for every storage it made)");
    }
    const int64_t bs = kv_block_size_;
    const int64_t n_sink = (batch.sparse_sinks + bs - 1) / bs;
    sparse_kv_len_.assign(batch.kv_len.begin(), batch.kv_len.end());
    sparse_blocks_.clear();
    sparse_start_.assign(1, 0);
    sparse_max_blocks_ = 0;
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
        const int64_t len = batch.kv_len[s];
        const int64_t used = (len + bs - 1) / bs;
        const int64_t first = std::max<int64_t>(0, len - batch.sparse_window) / bs;
        const std::span<const int32_t> blocks = batch.blocks(s);
        if (first <= n_sink) {  // the sinks and the window cover the sequence
            sparse_blocks_.insert(sparse_blocks_.end(), blocks.begin(), blocks.begin() + used);
        } else {
            sparse_blocks_.insert(sparse_blocks_.end(), blocks.begin(), blocks.begin() + n_sink);
            sparse_blocks_.insert(sparse_blocks_.end(), blocks.begin() + first,
                                  blocks.begin() + used);
            sparse_kv_len_[s] = static_cast<int32_t>(n_sink * bs + len - first * bs);
        }
        sparse_start_.push_back(static_cast<int64_t>(sparse_blocks_.size()));
        sparse_max_blocks_ = std::max(
            sparse_max_blocks_, static_cast<int32_t>(sparse_start_[s + 1] - sparse_start_[s]));
    }
}

}  // namespace vela
