#include "kv/host_kv_storage.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "kv/kv_dtype.h"

namespace vela {
namespace {

// Storage is aligned for 64-byte vector loads of whole rows.
constexpr size_t kAlign = 64;

void check_layout(const KvLayout& l) {
    auto positive = [](int64_t v, const char* name) {
        if (v < 1) fail<InvalidArgument>("KV layout {} must be >= 1, got {}", name, v);
    };
    positive(l.n_layers, "n_layers");
    positive(l.n_kv_heads, "n_kv_heads");
    positive(l.head_dim, "head_dim");
    positive(l.block_size, "block_size");
    positive(l.num_blocks, "num_blocks");
}

}  // namespace

std::string_view kv_format_name(KvFormat f) {
    switch (f) {
        case KvFormat::F32: return "f32";
        case KvFormat::F16: return "f16";
        case KvFormat::BF16: return "bf16";
    }
    return "?";
}

size_t kv_format_bytes(KvFormat f) {
    return f == KvFormat::F32 ? 4 : 2;
}

KvFormat parse_kv_format(std::string_view name) {
    for (KvFormat f : {KvFormat::F32, KvFormat::F16, KvFormat::BF16}) {
        if (kv_format_name(f) == name) return f;
    }
    fail<InvalidArgument>("unknown KV format '{}' (f32, f16 or bf16)", name);
}

size_t KvStorage::bytes_per_token() const {
    const KvLayout& l = layout();
    return 2 * static_cast<size_t>(l.n_layers * l.n_kv_heads * l.head_dim) *
           kv_format_bytes(format());
}

DType kv_format_dtype(KvFormat f) {
    switch (f) {
        case KvFormat::F32: return DType::F32;
        case KvFormat::F16: return DType::F16;
        case KvFormat::BF16: return DType::BF16;
    }
    return DType::F32;
}

void HostKvStorage::AlignedFree::operator()(std::byte* p) const {
    std::free(p);
}

HostKvStorage::HostKvStorage(const KvLayout& layout, KvFormat format)
    : layout_((check_layout(layout), layout)), format_(format), dtype_(kv_format_dtype(format)) {
    const size_t bytes = block_bytes() * static_cast<size_t>(layout_.num_blocks);
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    storage_.reserve(static_cast<size_t>(2 * layout_.n_layers));
    for (int64_t i = 0; i < 2 * layout_.n_layers; ++i) {
        auto* p = static_cast<std::byte*>(std::aligned_alloc(kAlign, rounded));
        if (p == nullptr) fail<ResourceExhausted>("cannot allocate {} bytes of KV cache", rounded);
        // Zeroed so that reading a never-written slot gives 0, not garbage (or a NaN pattern).
        std::memset(p, 0, rounded);
        storage_.emplace_back(p);
    }
}

HostKvStorage::~HostKvStorage() = default;

size_t HostKvStorage::block_bytes() const {
    return static_cast<size_t>(layout_.n_kv_heads * layout_.block_size * layout_.head_dim) *
           kv_format_bytes(format_);
}

std::byte* HostKvStorage::block_ptr(int64_t layer, bool value, int32_t block) const {
    return storage_[static_cast<size_t>(2 * layer + (value ? 1 : 0))].get() +
           block_bytes() * static_cast<size_t>(block);
}

std::byte* HostKvStorage::host_ptr(int32_t slot) {
    const size_t per_slot = block_bytes() * 2 * static_cast<size_t>(layout_.n_layers);
    const size_t end = per_slot * (static_cast<size_t>(slot) + 1);
    if (host_.size() < end) host_.resize(end);
    return host_.data() + per_slot * static_cast<size_t>(slot);
}

void HostKvStorage::apply(std::span<const BlockOp> ops) {
    const size_t bb = block_bytes();
    for (const BlockOp& op : ops) {
        VELA_ASSERT(op.src >= 0 && op.dst >= 0);
        if (op.kind == BlockOp::Kind::Copy) {
            for (int64_t l = 0; l < layout_.n_layers; ++l) {
                for (bool value : {false, true}) {
                    std::memcpy(block_ptr(l, value, op.dst), block_ptr(l, value, op.src), bb);
                }
            }
            continue;
        }
        const bool out = op.kind == BlockOp::Kind::SwapOut;
        std::byte* host = host_ptr(out ? op.dst : op.src);
        const int32_t block = out ? op.src : op.dst;
        for (int64_t l = 0; l < layout_.n_layers; ++l) {
            for (bool value : {false, true}) {
                std::byte* dev = block_ptr(l, value, block);
                if (out) {
                    std::memcpy(host, dev, bb);
                } else {
                    std::memcpy(dev, host, bb);
                }
                host += bb;
            }
        }
    }
}

KvLayerView HostKvStorage::layer(int64_t layer) const {
    if (layer < 0 || layer >= layout_.n_layers) {
        fail<InvalidArgument>("KV layer {} out of range [0, {})", layer, layout_.n_layers);
    }
    return KvLayerView{block_ptr(layer, false, 0), block_ptr(layer, true, 0), dtype_,
                       layout_.n_kv_heads,         layout_.head_dim,          layout_.block_size};
}

void HostKvStorage::write(int64_t layer, std::span<const int64_t> slots, const float* k,
                          const float* v) {
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    const int64_t bs = layout_.block_size, hd = layout_.head_dim, nh = layout_.n_kv_heads;
    visit_kv_dtype(dtype_, [&](auto tag) {
        using T = decltype(tag);
        for (size_t r = 0; r < slots.size(); ++r) {
            const int64_t slot = slots[r];
            VELA_ASSERT(slot >= 0 && slot < layout_.num_slots());
            const auto block = static_cast<int32_t>(slot / bs);
            for (bool value : {false, true}) {
                auto* dst = reinterpret_cast<T*>(block_ptr(layer, value, block));
                const float* src = (value ? v : k) + static_cast<int64_t>(r) * nh * hd;
                for (int64_t h = 0; h < nh; ++h) {
                    T* row = dst + (h * bs + slot % bs) * hd;
                    for (int64_t d = 0; d < hd; ++d) row[d] = KvElement<T>::encode(src[h * hd + d]);
                }
            }
        }
    });
}

void HostKvStorage::read(int64_t layer, int64_t slot, int64_t kv_head, bool value,
                         float* out) const {
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    VELA_ASSERT(slot >= 0 && slot < layout_.num_slots());
    VELA_ASSERT(kv_head >= 0 && kv_head < layout_.n_kv_heads);
    const int64_t bs = layout_.block_size, hd = layout_.head_dim;
    visit_kv_dtype(dtype_, [&](auto tag) {
        using T = decltype(tag);
        const auto* base =
            reinterpret_cast<const T*>(block_ptr(layer, value, static_cast<int32_t>(slot / bs)));
        const T* row = base + (kv_head * bs + slot % bs) * hd;
        for (int64_t d = 0; d < hd; ++d) out[d] = KvElement<T>::decode(row[d]);
    });
}

}  // namespace vela
