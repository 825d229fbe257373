#pragma once
// Paged KV memory of one model: K and V storage of every layer, the BlockPool that hands out
// blocks, and the BlockTable of each live sequence.
//
// Storage per layer: K and V each [num_blocks][n_kv_heads][block_size][head_dim], so the keys
// of one head in one block are contiguous. A token's flat slot is block * block_size + offset.
//
// Blocks are shared by fork() and freed by reference count. append() allocates the blocks new
// tokens need and copies a shared, partially filled last block first (copy-on-write), so that
// writing into the returned slots never changes another sequence's KV. A prefix cache can be
// added on top: it would hold extra references to full blocks and hand them to add_sequence.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "kv/block_pool.h"
#include "kv/block_table.h"

namespace vela {

using SeqId = int64_t;

struct KvCacheConfig {
    int64_t n_layers = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 16;  // tokens per block, any >= 1
    int64_t num_blocks = 0;
    DType dtype = DType::F16;  // F32 or F16
};

// One layer's K/V storage as the attention kernels see it; the shape lets them check that the
// caller's parameters describe this cache.
struct KvLayerView {
    const void* k = nullptr;
    const void* v = nullptr;
    DType dtype = DType::F16;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 0;
};

class KvCache {
public:
    explicit KvCache(const KvCacheConfig& config);
    ~KvCache();
    KvCache(const KvCache&) = delete;
    KvCache& operator=(const KvCache&) = delete;

    const KvCacheConfig& config() const { return config_; }

    // Sequences. Unknown ids (or an id added twice) throw InvalidArgument.
    void add_sequence(SeqId id);
    bool has_sequence(SeqId id) const { return tables_.count(id) != 0; }
    // dst (new) shares all of src's blocks.
    void fork(SeqId src, SeqId dst);
    // Drops tokens >= n_tokens and releases the blocks no longer needed.
    void truncate(SeqId id, int64_t n_tokens);
    // Releases all blocks of the sequence and forgets it.
    void free(SeqId id);
    const BlockTable& table(SeqId id) const;
    int64_t n_tokens(SeqId id) const { return table(id).n_tokens; }

    // Blocks that append(id, n) would take from the pool (incl. a copy-on-write copy).
    int64_t blocks_needed(SeqId id, int64_t n) const;
    // Pure: whether append(id, n) would succeed now.
    bool can_append(SeqId id, int64_t n) const { return blocks_needed(id, n) <= num_free_blocks(); }
    // Reserves n more tokens; returns their flat slots. Throws ResourceExhausted (and changes
    // nothing) when the blocks are not available.
    std::vector<int64_t> append(SeqId id, int64_t n);

    // Stores rows k, v (float [slots.size()][n_kv_heads][head_dim]) into their slots.
    void write(int64_t layer, std::span<const int64_t> slots, const float* k, const float* v);
    // Reads one token's K or V row of one head back as float (tests, debugging, swap-out).
    void read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const;

    KvLayerView layer(int64_t layer) const;
    const void* k_data(int64_t layer) const { return this->layer(layer).k; }
    const void* v_data(int64_t layer) const { return this->layer(layer).v; }

    int64_t num_free_blocks() const { return pool_.num_free(); }
    int64_t num_total_blocks() const { return pool_.num_total(); }
    const BlockPool& pool() const { return pool_; }
    int64_t num_sequences() const { return static_cast<int64_t>(tables_.size()); }

private:
    BlockTable& mutable_table(SeqId id);
    size_t block_bytes() const;  // one block of one layer's K (or V)
    std::byte* block_ptr(int64_t layer, bool value, int32_t block) const;
    void copy_block(int32_t from, int32_t to);
    bool last_block_shared(const BlockTable& t) const;

    KvCacheConfig config_;
    size_t elem_size_;
    BlockPool pool_;
    std::unordered_map<SeqId, BlockTable> tables_;
    // Per layer: K at 2 * layer, V at 2 * layer + 1.
    struct AlignedFree {
        void operator()(std::byte* p) const;
    };
    std::vector<std::unique_ptr<std::byte[], AlignedFree>> storage_;
};

}  // namespace vela
