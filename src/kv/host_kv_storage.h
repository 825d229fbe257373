#pragma once
// KvStorage in host memory: the CPU backend's KV, and the storage of KvCache. Rows are written
// and read as float and stored in the format (quantised as they are written); the swap space (host
// slots) grows as SwapOut ops need it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "kv/kivi_keys.h"
#include "kv/kv_quant.h"
#include "kv/kv_storage.h"

namespace vela {

// One side (K or V) of one layer's storage as the attention kernels see it. A block of a
// quantised format holds the fp16 scales of its rows first ([n_kv_heads][block_size] of
// scales_per_row: Q8 a scale per group, Q4 a (scale, min) pair), then the rows ([n_kv_heads]
// [block_size] of row_bytes); the float formats have rows only. Scales live inside their
// block, so copying or swapping a block moves them too. K in Q4 is per channel instead
// (kivi_keys.h): a block holds [n_kv_heads] of (head_dim scales, head_dim mins) and then the
// rows of 4-bit codes, and the fp16 keys of blocks not yet full live in `residual`.
struct KvSideView {
    const std::byte* data = nullptr;  // block 0
    KvFormat format = KvFormat::F16;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 0;
    int64_t group = kKvGroup;  // values per scale of a Q8 / Q4 row
    int64_t scales_per_row = 0;
    size_t scale_bytes = 0;    // scales at the start of each block
    size_t row_bytes = 0;      // one token's elements of one head
    size_t block_bytes = 0;    // one block, scales included (a multiple of 4)
    bool per_channel = false;  // K in Q4: scales per channel of a block, not per row
    const std::unique_ptr<KeyResidual>* residual = nullptr;  // per block, when per_channel

    KvSideView() = default;
    KvSideView(const std::byte* data, KvFormat format, int64_t n_kv_heads, int64_t head_dim,
               int64_t block_size, int64_t group, bool key = false);

    const std::byte* row(int64_t block, int64_t head, int64_t offset) const {
        return data + static_cast<size_t>(block) * block_bytes + scale_bytes +
               static_cast<size_t>(head * block_size + offset) * row_bytes;
    }
    const uint16_t* scales(int64_t block, int64_t head, int64_t offset) const {
        return reinterpret_cast<const uint16_t*>(data + static_cast<size_t>(block) * block_bytes) +
               (head * block_size + offset) * scales_per_row;
    }
    // per_channel: the head_dim scales and then head_dim mins of one head of a full block.
    const uint16_t* channel_scales(int64_t block, int64_t head) const {
        return reinterpret_cast<const uint16_t*>(data + static_cast<size_t>(block) * block_bytes) +
               head * 2 * head_dim;
    }
    // per_channel: the block's fp16 keys while it is open or just closed (kivi_keys.h), or null.
    const KeyResidual* open_keys(int64_t block) const {
        return residual != nullptr ? residual[block].get() : nullptr;
    }
};

// One layer's K/V storage; the shape lets the kernels check that the caller's parameters
// describe this storage.
struct KvLayerView {
    KvSideView k, v;
    // Attention scores ([num_blocks][n_kv_heads][block_size] floats from block 0), or null when
    // the storage keeps none (KvLayout::attention_scores). Attention writes them.
    float* scores = nullptr;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 0;
};

class HostKvStorage final : public KvStorage {
  public:
    HostKvStorage(const KvLayout& layout, KvFormats formats);
    ~HostKvStorage() override;
    HostKvStorage(const HostKvStorage&) = delete;
    HostKvStorage& operator=(const HostKvStorage&) = delete;

    const KvLayout& layout() const override { return layout_; }
    KvFormats formats() const override { return formats_; }
    Device device() const override { return Device::Cpu; }
    void apply(std::span<const BlockOp> ops) override;
    void read_scores(int64_t layer, std::span<const int64_t> slots, float* out) const override;

    // Stores rows k, v (float [slots.size()][n_kv_heads][head_dim]) into their slots.
    void write(int64_t layer, std::span<const int64_t> slots, const float* k, const float* v);
    // Reads one token's K or V row of one head back as float (tests, debugging).
    void read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const;
    KvLayerView layer(int64_t layer) const;

  private:
    KvSideView side(int64_t layer, bool value) const;
    std::byte* block_ptr(int64_t layer, bool value, int32_t block) const;
    // A host slot: per layer, K and V of one block and then its scores (when kept).
    std::byte* host_ptr(int32_t slot);
    size_t score_block_bytes() const;  // one block's scores of one layer (0 when none are kept)
    float* score_ptr(int64_t layer, int32_t block) const;
    void move_row(const BlockOp& op);

    KvLayout layout_;
    KvFormats formats_;
    KvSideView shape_[2];  // K and V without data: block sizes and offsets
    struct AlignedFree {
        void operator()(std::byte* p) const;
    };
    // Per layer: K at 2 * layer, V at 2 * layer + 1.
    std::vector<std::unique_ptr<std::byte[], AlignedFree>> storage_;
    std::vector<std::vector<float>> scores_;  // per layer, when kept
    std::vector<std::byte> host_;             // swap space
    std::unique_ptr<KiviKeys> kivi_;          // K in Q4 only
};

}  // namespace vela
