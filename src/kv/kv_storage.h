#pragma once
// The bytes of a paged KV cache, apart from its bookkeeping (BlockManager): one per backend,
// in that backend's memory, in one KvFormat. It knows blocks by id and nothing of sequences;
// the BlockManager's decisions reach it as BlockOps (copy-on-write copies, swaps to and from
// host memory), carried out in order by apply() before the step that depends on them.
//
// Layout of every implementation (the attention kernels rely on it): per layer, K and V each
// [num_blocks] blocks of [n_kv_heads][block_size] rows, so the keys of one head in one block are
// contiguous; a quantised format's block starts with its rows' scales (host_kv_storage.h,
// KvSideView), so block operations move them too. A token's flat slot is
// block * block_size + offset.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "kv/kv_quant.h"

namespace vela {

// Formats of the stored K and V (kv/kv_quant.h). Q8: int8 with an fp16 scale per group (32
// values) of a row. Q4: 4-bit with an fp16 scale and minimum per group of a row for V; for K,
// KIVI's per-channel 4-bit: a (scale, min) per channel of each full block, the block still filling
// in fp16 beside it (kv/kivi_keys.h). FP8: OCP e4m3 with a float scale per row, stored by the
// CUDA backend only (backend/cuda/kv_ops.h), which also stores Q8 with one group a row.
enum class KvFormat { F32, F16, BF16, Q8, Q4, FP8 };

std::string_view kv_format_name(KvFormat f);
// Q8, Q4 and FP8: stored as codes with scales (the others round each value to a float).
inline bool kv_quantised(KvFormat f) {
    return f == KvFormat::Q8 || f == KvFormat::Q4 || f == KvFormat::FP8;
}
// Bytes of one token's row of one KV head in a per-token layout, its scales included (one per
// `group` values; for Q4, the V layout).
size_t kv_row_bytes(KvFormat f, int64_t head_dim, int64_t group);
// Bytes per token of one KV head's K (key) or V in blocks of block_size, rounded up: as
// kv_row_bytes except K in Q4, whose per-channel scales are shared by a block's tokens (head_dim
// 64, blocks of 16: 32 bytes of codes + 256 / 16 of scales = 48 bytes, 6 bits per value). The
// fp16 keys of blocks still filling are not counted (one block per sequence, kivi_keys.h).
size_t kv_token_bytes(KvFormat f, bool key, int64_t head_dim, int64_t block_size, int64_t group);
// "f32", "f16", "bf16", "q8", "q4", "fp8" (as --kv-type spells them); InvalidArgument otherwise.
KvFormat parse_kv_format(std::string_view name);

// The formats of K and of V, chosen apart (as llama.cpp's -ctk / -ctv); a single format
// converts to both. `group`: values per scale of a quantised row (Q8 rows, Q4 values; 32, 64 or
// 128: valid_kv_group), as KIVI's group size.
struct KvFormats {
    KvFormat k = KvFormat::F16;
    KvFormat v = KvFormat::F16;
    int64_t group = kKvGroup;

    KvFormats() = default;
    KvFormats(KvFormat both) : k(both), v(both) {}  // NOLINT(google-explicit-constructor)
    KvFormats(KvFormat k, KvFormat v, int64_t group = kKvGroup) : k(k), v(v), group(group) {}
    bool operator==(const KvFormats&) const = default;
};

// "q8" when K and V agree, else "k q8, v f16"; ", groups of 64" when the group is not 32.
std::string kv_formats_name(KvFormats f);

struct KvLayout {
    int64_t n_layers = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 16;
    int64_t num_blocks = 0;
    // Keep an attention score per token, layer and KV head beside the rows (what the eviction
    // policies of kv/eviction.h rank tokens by): written by attention when a ForwardBatch asks
    // for it, zeroed when a token's K/V is written, moved with its rows.
    bool attention_scores = false;
    // [n_layers][n_kv_heads][head_dim] or empty: a constant subtracted from every key before an
    // 8-bit format (Q8, FP8) stores it. Softmax ignores a shift of all keys by one vector (each
    // query's scores move by q.c alike), so attention is unchanged, while a large constant part
    // of the keys no longer sets the row's scale (Model::key_offsets: Qwen2's key bias).
    std::vector<float> key_offsets = {};
    // Sliding-window layers in a pool of their own (Gemma 3's local layers; the BlockManager's
    // local group, BlockManagerConfig::local_window): layer l is local iff local_layers[l] != 0,
    // and a local layer has local_num_blocks blocks with ids of their own (BlockOp::group 1),
    // the others num_blocks. Empty: every layer is in the main group.
    std::vector<uint8_t> local_layers = {};
    int64_t local_num_blocks = 0;

    int64_t num_slots() const { return num_blocks * block_size; }
    bool has_local_group() const { return !local_layers.empty(); }
    bool is_local(int64_t layer) const {
        return has_local_group() && local_layers[static_cast<size_t>(layer)] != 0;
    }
    // The block group of a layer (BlockOp::group), its blocks and slots.
    int8_t group_of(int64_t layer) const { return is_local(layer) ? 1 : 0; }
    int64_t blocks_of(int64_t layer) const { return is_local(layer) ? local_num_blocks : num_blocks; }
    int64_t slots_of(int64_t layer) const { return blocks_of(layer) * block_size; }
    // Layer `layer`'s offsets (n_kv_heads x head_dim), or nullptr when there are none.
    const float* key_offsets_of(int64_t layer) const {
        return key_offsets.empty() ? nullptr
                                   : key_offsets.data() + layer * n_kv_heads * head_dim;
    }
};

// What attention records into the storage's scores (KvLayout::attention_scores) in one forward.
// Accumulate: each key's score grows by the softmax weight every query row gives it (summed
// over the query heads of its KV head): H2O's accumulated attention. Last: each key's score
// becomes the weight the sequence's last query row gives it: TOVA's current attention.
enum class KvScoreMode : uint8_t { None, Accumulate, Last };

// One block operation. Device blocks are the BlockPool's ids; host slots are the swap space's.
struct BlockOp {
    enum class Kind {
        Copy,     // device block src -> device block dst (copy-on-write)
        SwapOut,  // device block src -> host slot dst
        SwapIn,   // host slot src -> device block dst
        // One token's rows (and scales, and score) from flat slot src to flat slot dst, in
        // `layer` (-1: every layer) and KV head `head` (-1: every head): eviction compacting a
        // sequence (BlockManager::compact).
        MoveRow
    };
    Kind kind = Kind::Copy;
    int32_t src = 0;
    int32_t dst = 0;
    int32_t layer = -1;  // MoveRow only
    int32_t head = -1;   // MoveRow only
    // The block group whose layers the op touches (KvLayout::local_layers): 0 the main group
    // (every layer when the layout has no local group), 1 the local layers.
    int8_t group = 0;

    bool operator==(const BlockOp&) const = default;
};

class KvStorage {
  public:
    virtual ~KvStorage() = default;

    virtual const KvLayout& layout() const = 0;
    virtual KvFormats formats() const = 0;
    virtual Device device() const = 0;
    // Carries out the operations in order.
    virtual void apply(std::span<const BlockOp> ops) = 0;
    // Attention scores (KvLayout::attention_scores) of the tokens at `slots` in one layer:
    // out[i * n_kv_heads + h] for slot i, KV head h. InvalidArgument when the storage keeps none.
    virtual void read_scores(int64_t layer, std::span<const int64_t> slots, float* out) const = 0;
    // K and V of one token over all layers, in bytes (scales included).
    virtual size_t bytes_per_token() const;
};

}  // namespace vela
