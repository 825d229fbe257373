#include "kv/host_kv_storage.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

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
    if (l.has_local_group()) {
        if (static_cast<int64_t>(l.local_layers.size()) != l.n_layers) {
            fail<InvalidArgument>("KV layout: local_layers has {} entries for {} layers",
                                  l.local_layers.size(), l.n_layers);
        }
        positive(l.local_num_blocks, "local_num_blocks");
    }
}

}  // namespace

std::string_view kv_format_name(KvFormat f) {
    switch (f) {
        case KvFormat::F32:
            return "f32";
        case KvFormat::F16:
            return "f16";
        case KvFormat::BF16:
            return "bf16";
        case KvFormat::Q8:
            return "q8";
        case KvFormat::Q4:
            return "q4";
        case KvFormat::FP8:
            return "fp8";
    }
    return "?";
}

size_t kv_row_bytes(KvFormat f, int64_t head_dim, int64_t group) {
    const auto hd = static_cast<size_t>(head_dim);
    switch (f) {
        case KvFormat::F32:
            return 4 * hd;
        case KvFormat::F16:
        case KvFormat::BF16:
            return 2 * hd;
        case KvFormat::Q8:
            return hd + 2 * static_cast<size_t>(kv_groups(head_dim, group));
        case KvFormat::Q4:
            return static_cast<size_t>(q4_row_bytes(head_dim) + 4 * kv_groups(head_dim, group));
        case KvFormat::FP8:
            return hd + 4;  // the CUDA backend's: a float scale per row
    }
    return 0;
}

size_t kv_token_bytes(KvFormat f, bool key, int64_t head_dim, int64_t block_size, int64_t group) {
    if (!key || f != KvFormat::Q4) return kv_row_bytes(f, head_dim, group);
    const KvSideView shape(nullptr, f, 1, head_dim, block_size, group, true);
    return (shape.block_bytes + static_cast<size_t>(block_size) - 1) /
           static_cast<size_t>(block_size);
}

std::string kv_formats_name(KvFormats f) {
    std::string name = f.k == f.v
                           ? std::string(kv_format_name(f.k))
                           : fmt::format("k {}, v {}", kv_format_name(f.k), kv_format_name(f.v));
    if (f.group != kKvGroup) name += fmt::format(", groups of {}", f.group);
    return name;
}

KvFormat parse_kv_format(std::string_view name) {
    for (KvFormat f : {KvFormat::F32, KvFormat::F16, KvFormat::BF16, KvFormat::Q8, KvFormat::Q4,
                       KvFormat::FP8}) {
        if (kv_format_name(f) == name) return f;
    }
    fail<InvalidArgument>("unknown KV format '{}' (f32, f16, bf16, q8, q4 or fp8)", name);
}

size_t KvStorage::bytes_per_token() const {
    const KvLayout& l = layout();
    const KvFormats f = formats();
    int64_t n_layers = 0;  // the main group's: the local layers' KV does not grow with tokens
    for (int64_t i = 0; i < l.n_layers; ++i) n_layers += l.is_local(i) ? 0 : 1;
    return static_cast<size_t>(n_layers * l.n_kv_heads) *
           (kv_token_bytes(f.k, true, l.head_dim, l.block_size, f.group) +
            kv_token_bytes(f.v, false, l.head_dim, l.block_size, f.group));
}

KvSideView::KvSideView(const std::byte* data, KvFormat format, int64_t n_kv_heads, int64_t head_dim,
                       int64_t block_size, int64_t group, bool key)
    : data(data),
      format(format),
      n_kv_heads(n_kv_heads),
      head_dim(head_dim),
      block_size(block_size),
      group(group),
      per_channel(key && format == KvFormat::Q4) {
    const auto rows = static_cast<size_t>(n_kv_heads * block_size);
    if (per_channel) {
        scale_bytes = static_cast<size_t>(n_kv_heads * 2 * head_dim) * sizeof(uint16_t);
        row_bytes = static_cast<size_t>(q4_row_bytes(head_dim));
        block_bytes = (scale_bytes + rows * row_bytes + 3) / 4 * 4;
        return;
    }
    scales_per_row = format == KvFormat::Q8   ? kv_groups(head_dim, group)
                     : format == KvFormat::Q4 ? 2 * kv_groups(head_dim, group)
                                              : 0;
    scale_bytes = rows * 2 * static_cast<size_t>(scales_per_row);
    row_bytes = kv_row_bytes(format, head_dim, group) - 2 * static_cast<size_t>(scales_per_row);
    // Whole 4-byte units keep every block's scales aligned.
    block_bytes = (scale_bytes + rows * row_bytes + 3) / 4 * 4;
}

void HostKvStorage::AlignedFree::operator()(std::byte* p) const {
    std::free(p);
}

HostKvStorage::HostKvStorage(const KvLayout& layout, KvFormats formats)
    : layout_((check_layout(layout), layout)), formats_(formats) {
    if (!valid_kv_group(formats.group)) {
        fail<InvalidArgument>("KV quantisation group {} must be 32, 64 or 128", formats.group);
    }
    if (formats.k == KvFormat::FP8 || formats.v == KvFormat::FP8) {
        fail<InvalidArgument>("fp8 KV is stored by the CUDA backend only (--device cuda)");
    }
    for (bool value : {false, true}) {
        shape_[value] = KvSideView(nullptr, value ? formats.v : formats.k, layout_.n_kv_heads,
                                   layout_.head_dim, layout_.block_size, formats.group, !value);
    }
    if (shape_[0].per_channel) kivi_ = std::make_unique<KiviKeys>(layout_);
    storage_.reserve(static_cast<size_t>(2 * layout_.n_layers));
    for (int64_t i = 0; i < 2 * layout_.n_layers; ++i) {
        const size_t bytes =
            shape_[i % 2].block_bytes * static_cast<size_t>(layout_.blocks_of(i / 2));
        const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
        auto* p = static_cast<std::byte*>(std::aligned_alloc(kAlign, rounded));
        if (p == nullptr) fail<ResourceExhausted>("cannot allocate {} bytes of KV cache", rounded);
        // Zeroed so that reading a never-written slot gives 0, not garbage (or a NaN pattern).
        std::memset(p, 0, rounded);
        storage_.emplace_back(p);
    }
    if (layout_.attention_scores) {
        for (int64_t l = 0; l < layout_.n_layers; ++l) {
            scores_.emplace_back(
                static_cast<size_t>(layout_.blocks_of(l) * layout_.n_kv_heads * layout_.block_size),
                0.0f);
        }
    }
}

HostKvStorage::~HostKvStorage() = default;

KvSideView HostKvStorage::side(int64_t layer, bool value) const {
    KvSideView s = shape_[value];
    s.data = storage_[static_cast<size_t>(2 * layer + (value ? 1 : 0))].get();
    if (s.per_channel) s.residual = kivi_->residuals(layer);
    return s;
}

std::byte* HostKvStorage::block_ptr(int64_t layer, bool value, int32_t block) const {
    return storage_[static_cast<size_t>(2 * layer + (value ? 1 : 0))].get() +
           shape_[value].block_bytes * static_cast<size_t>(block);
}

size_t HostKvStorage::score_block_bytes() const {
    return scores_.empty()
               ? 0
               : sizeof(float) * static_cast<size_t>(layout_.n_kv_heads * layout_.block_size);
}

float* HostKvStorage::score_ptr(int64_t layer, int32_t block) const {
    if (scores_.empty()) return nullptr;
    // The storage is this object's own; read_scores and the layer views hand it out.
    return const_cast<float*>(scores_[static_cast<size_t>(layer)].data()) +
           static_cast<size_t>(block) *
               static_cast<size_t>(layout_.n_kv_heads * layout_.block_size);
}

std::byte* HostKvStorage::host_ptr(int32_t slot) {
    const size_t per_slot = (shape_[0].block_bytes + shape_[1].block_bytes + score_block_bytes()) *
                            static_cast<size_t>(layout_.n_layers);
    const size_t end = per_slot * (static_cast<size_t>(slot) + 1);
    if (host_.size() < end) host_.resize(end);
    return host_.data() + per_slot * static_cast<size_t>(slot);
}

void HostKvStorage::apply(std::span<const BlockOp> ops) {
    const size_t sb = score_block_bytes();
    auto finish_moves = [&] {
        if (kivi_) kivi_->finish_moves([&](int64_t l) { return side(l, false); });
    };
    for (const BlockOp& op : ops) {
        VELA_ASSERT(op.src >= 0 && op.dst >= 0 && (op.group == 0 || layout_.has_local_group()));
        auto in_group = [&](int64_t l) { return layout_.group_of(l) == op.group; };
        if (op.kind == BlockOp::Kind::MoveRow) {
            move_row(op);
            continue;
        }
        finish_moves();
        if (op.kind == BlockOp::Kind::Copy) {
            if (kivi_) kivi_->copy(op.src, op.dst, op.group);
            for (int64_t l = 0; l < layout_.n_layers; ++l) {
                if (!in_group(l)) continue;
                VELA_ASSERT(op.src < layout_.blocks_of(l) && op.dst < layout_.blocks_of(l));
                for (bool value : {false, true}) {
                    std::memcpy(block_ptr(l, value, op.dst), block_ptr(l, value, op.src),
                                shape_[value].block_bytes);
                }
                if (sb > 0) std::memcpy(score_ptr(l, op.dst), score_ptr(l, op.src), sb);
            }
            continue;
        }
        const bool out = op.kind == BlockOp::Kind::SwapOut;
        std::byte* host = host_ptr(out ? op.dst : op.src);
        const int32_t block = out ? op.src : op.dst;
        if (kivi_) {
            if (out) {
                kivi_->swap_out(op.src, op.dst, op.group);
            } else {
                kivi_->swap_in(op.src, op.dst, op.group);
            }
        }
        // A host slot has room for every layer; each group's ops use its own layers' parts.
        auto transfer = [&](std::byte* dev, size_t bytes) {
            if (dev == nullptr) {
                host += bytes;
                return;
            }
            if (out) {
                std::memcpy(host, dev, bytes);
            } else {
                std::memcpy(dev, host, bytes);
            }
            host += bytes;
        };
        for (int64_t l = 0; l < layout_.n_layers; ++l) {
            const bool mine = in_group(l);
            VELA_ASSERT(!mine || block < layout_.blocks_of(l));
            for (bool value : {false, true}) {
                transfer(mine ? block_ptr(l, value, block) : nullptr, shape_[value].block_bytes);
            }
            if (sb > 0) {
                transfer(mine ? reinterpret_cast<std::byte*>(score_ptr(l, block)) : nullptr, sb);
            }
        }
    }
    finish_moves();
}

void HostKvStorage::move_row(const BlockOp& op) {
    const int64_t bs = layout_.block_size, nh = layout_.n_kv_heads;
    VELA_ASSERT(op.layer >= -1 && op.layer < layout_.n_layers && op.head >= -1 && op.head < nh);
    const int64_t l0 = op.layer < 0 ? 0 : op.layer, l1 = op.layer < 0 ? layout_.n_layers : l0 + 1;
    const int64_t h0 = op.head < 0 ? 0 : op.head, h1 = op.head < 0 ? nh : h0 + 1;
    const int64_t sblock = op.src / bs, soff = op.src % bs, dblock = op.dst / bs,
                  doff = op.dst % bs;
    for (int64_t l = l0; l < l1; ++l) {
        if (layout_.group_of(l) != op.group) continue;
        VELA_ASSERT(op.src < layout_.slots_of(l) && op.dst < layout_.slots_of(l));
        for (bool value : {false, true}) {
            const KvSideView s = side(l, value);
            if (s.per_channel) {
                kivi_->move_row(s, l, h0, h1, op.src, op.dst);
                continue;
            }
            for (int64_t h = h0; h < h1; ++h) {
                std::memmove(const_cast<std::byte*>(s.row(dblock, h, doff)), s.row(sblock, h, soff),
                             s.row_bytes);
                std::memmove(const_cast<uint16_t*>(s.scales(dblock, h, doff)),
                             s.scales(sblock, h, soff),
                             sizeof(uint16_t) * static_cast<size_t>(s.scales_per_row));
            }
        }
        if (scores_.empty()) continue;
        for (int64_t h = h0; h < h1; ++h) {
            score_ptr(l, static_cast<int32_t>(dblock))[h * bs + doff] =
                score_ptr(l, static_cast<int32_t>(sblock))[h * bs + soff];
        }
    }
}

void HostKvStorage::read_scores(int64_t layer, std::span<const int64_t> slots, float* out) const {
    if (scores_.empty()) fail<InvalidArgument>("this KV storage keeps no attention scores");
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    const int64_t bs = layout_.block_size, nh = layout_.n_kv_heads;
    for (size_t i = 0; i < slots.size(); ++i) {
        VELA_ASSERT(slots[i] >= 0 && slots[i] < layout_.slots_of(layer));
        const float* block = score_ptr(layer, static_cast<int32_t>(slots[i] / bs));
        for (int64_t h = 0; h < nh; ++h)
            out[static_cast<int64_t>(i) * nh + h] = block[h * bs + slots[i] % bs];
    }
}

KvLayerView HostKvStorage::layer(int64_t layer) const {
    if (layer < 0 || layer >= layout_.n_layers) {
        fail<InvalidArgument>("KV layer {} out of range [0, {})", layer, layout_.n_layers);
    }
    KvLayerView v{side(layer, false), side(layer, true), score_ptr(layer, 0),
                  layout_.n_kv_heads, layout_.head_dim,  layout_.block_size};
    return v;
}

void HostKvStorage::write(int64_t layer, std::span<const int64_t> slots, const float* k,
                          const float* v) {
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    const int64_t bs = layout_.block_size, hd = layout_.head_dim, nh = layout_.n_kv_heads;
    if (!scores_.empty()) {
        // A token written into a slot starts with no attention (a reused slot's old score goes).
        for (int64_t slot : slots) {
            VELA_ASSERT(slot >= 0 && slot < layout_.slots_of(layer));
            float* block = score_ptr(layer, static_cast<int32_t>(slot / bs));
            for (int64_t h = 0; h < nh; ++h) block[h * bs + slot % bs] = 0.0f;
        }
    }
    const float* offsets = layout_.key_offsets_of(layer);
    std::vector<float> shifted;
    for (bool value : {false, true}) {
        const KvSideView s = side(layer, value);
        if (s.per_channel) {
            kivi_->write(s, layer, slots, k);
            continue;
        }
        const bool shift = !value && offsets != nullptr && s.format == KvFormat::Q8;
        if (shift) shifted.resize(static_cast<size_t>(nh * hd));
        visit_kv_format(s.format, [&](auto tag) {
            using T = decltype(tag);
            for (size_t r = 0; r < slots.size(); ++r) {
                const int64_t slot = slots[r];
                VELA_ASSERT(slot >= 0 && slot < layout_.slots_of(layer));
                const float* src = (value ? v : k) + static_cast<int64_t>(r) * nh * hd;
                if (shift) {
                    for (int64_t i = 0; i < nh * hd; ++i) shifted[i] = src[i] - offsets[i];
                    src = shifted.data();
                }
                for (int64_t h = 0; h < nh; ++h) {
                    // The storage is this object's own; the views hand out const pointers.
                    auto* row = const_cast<std::byte*>(s.row(slot / bs, h, slot % bs));
                    auto* scales = const_cast<uint16_t*>(s.scales(slot / bs, h, slot % bs));
                    if constexpr (std::is_same_v<T, KvQ8>) {
                        quantize_q8_row(src + h * hd, hd, s.group, reinterpret_cast<int8_t*>(row),
                                        scales);
                    } else if constexpr (std::is_same_v<T, KvQ4>) {
                        quantize_q4_row(src + h * hd, hd, s.group, reinterpret_cast<uint8_t*>(row),
                                        scales);
                    } else {
                        T* out = reinterpret_cast<T*>(row);
                        for (int64_t d = 0; d < hd; ++d) {
                            out[d] = KvElement<T>::encode(src[h * hd + d]);
                        }
                    }
                }
            }
        });
    }
}

void HostKvStorage::read(int64_t layer, int64_t slot, int64_t kv_head, bool value,
                         float* out) const {
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    VELA_ASSERT(slot >= 0 && slot < layout_.slots_of(layer));
    VELA_ASSERT(kv_head >= 0 && kv_head < layout_.n_kv_heads);
    const int64_t bs = layout_.block_size, hd = layout_.head_dim;
    const KvSideView s = side(layer, value);
    if (s.per_channel) {
        kivi_->read(s, layer, slot, kv_head, out);
        return;
    }
    visit_kv_format(s.format, [&](auto tag) {
        using T = decltype(tag);
        const std::byte* row = s.row(slot / bs, kv_head, slot % bs);
        const uint16_t* scales = s.scales(slot / bs, kv_head, slot % bs);
        if constexpr (std::is_same_v<T, KvQ8>) {
            dequantize_q8_row(reinterpret_cast<const int8_t*>(row), scales, hd, s.group, out);
        } else if constexpr (std::is_same_v<T, KvQ4>) {
            dequantize_q4_row(reinterpret_cast<const uint8_t*>(row), scales, hd, s.group, out);
        } else {
            const T* in = reinterpret_cast<const T*>(row);
            for (int64_t d = 0; d < hd; ++d) out[d] = KvElement<T>::decode(in[d]);
        }
    });
}

}  // namespace vela
