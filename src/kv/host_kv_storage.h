#pragma once
// KvStorage in host memory: the CPU backend's KV, and the storage of KvCache. Rows are written
// and read as float and stored in the format's element type; the swap space (host slots) grows
// as SwapOut ops need it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "kv/kv_storage.h"

namespace vela {

// One layer's K/V storage as the attention kernels see it; the shape lets them check that the
// caller's parameters describe this storage.
struct KvLayerView {
    const void* k = nullptr;
    const void* v = nullptr;
    DType dtype = DType::F16;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t block_size = 0;
};

// The element type of a format, as a DType (F32, F16, BF16).
DType kv_format_dtype(KvFormat f);

class HostKvStorage final : public KvStorage {
  public:
    HostKvStorage(const KvLayout& layout, KvFormat format);
    ~HostKvStorage() override;
    HostKvStorage(const HostKvStorage&) = delete;
    HostKvStorage& operator=(const HostKvStorage&) = delete;

    const KvLayout& layout() const override { return layout_; }
    KvFormat format() const override { return format_; }
    Device device() const override { return Device::Cpu; }
    void apply(std::span<const BlockOp> ops) override;

    // Stores rows k, v (float [slots.size()][n_kv_heads][head_dim]) into their slots.
    void write(int64_t layer, std::span<const int64_t> slots, const float* k, const float* v);
    // Reads one token's K or V row of one head back as float (tests, debugging).
    void read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const;
    KvLayerView layer(int64_t layer) const;

  private:
    size_t block_bytes() const;  // one block of one layer's K (or V)
    std::byte* block_ptr(int64_t layer, bool value, int32_t block) const;
    std::byte* host_ptr(int32_t slot);  // a host slot: [layer][K, V] of block_bytes() each

    KvLayout layout_;
    KvFormat format_;
    DType dtype_;
    struct AlignedFree {
        void operator()(std::byte* p) const;
    };
    // Per layer: K at 2 * layer, V at 2 * layer + 1.
    std::vector<std::unique_ptr<std::byte[], AlignedFree>> storage_;
    std::vector<std::byte> host_;  // swap space
};

}  // namespace vela
