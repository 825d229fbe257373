#include "kv/kivi_keys.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fp16.h"
#include "kv/host_kv_storage.h"
#include "kv/kv_quant.h"

namespace vela {
namespace {

// HostKvStorage owns the bytes behind its views and hands them out as const; it lets this
// class write its K side.
uint8_t* codes_of(const KvSideView& keys, int64_t block, int64_t head) {
    return reinterpret_cast<uint8_t*>(const_cast<std::byte*>(keys.row(block, head, 0)));
}
uint16_t* scales_of(const KvSideView& keys, int64_t block, int64_t head) {
    return const_cast<uint16_t*>(keys.channel_scales(block, head));
}

// Whether the rows of `head` written since `r` was reopened from the 4-bit data get exactly
// the codes stored for them, unclamped (so within half a step): then that data stays as it is.
bool rewritten_rows_fit(const KvSideView& keys, const KeyResidual& r, int64_t block, int64_t head) {
    const int64_t bs = keys.block_size, hd = keys.head_dim;
    const uint16_t* sm = keys.channel_scales(block, head);
    for (int64_t t = 0; t < bs; ++t) {
        if (r.written[static_cast<size_t>(head * bs + t)] == 0) continue;
        const uint8_t* codes = codes_of(keys, block, head) + t * keys.row_bytes;
        const uint16_t* row = r.row(head, t, bs, hd);
        for (int64_t c = 0; c < hd; ++c) {
            const float scale = fp16_to_fp32(sm[c]), min = fp16_to_fp32(sm[hd + c]);
            const float x = fp16_to_fp32(row[c]);
            // As quantize_q4_channels rounds; NaN compares unequal, so it requantises.
            const bool same = scale > 0.0f ? std::nearbyint((x - min) / scale) ==
                                                 static_cast<float>(q4_nibble(codes, c))
                                           : x == min;
            if (!same) return false;
        }
    }
    return true;
}

}  // namespace

KiviKeys::KiviKeys(const KvLayout& layout)
    : layout_(layout),
      open_(static_cast<size_t>(layout.n_layers)),
      live_(static_cast<size_t>(layout.n_layers)),
      writes_(static_cast<size_t>(layout.n_layers), 0) {
    for (int64_t l = 0; l < layout.n_layers; ++l) {
        open_[static_cast<size_t>(l)].resize(static_cast<size_t>(layout.blocks_of(l)));
    }
}

void KiviKeys::read(const KvSideView& keys, int64_t layer, int64_t slot, int64_t head,
                    float* out) const {
    const int64_t bs = layout_.block_size, block = slot / bs;
    const KeyResidual* r = open_[static_cast<size_t>(layer)][static_cast<size_t>(block)].get();
    if (r != nullptr && !r->closed) {
        const uint16_t* row = r->row(head, slot % bs, layout_.block_size, layout_.head_dim);
        for (int64_t c = 0; c < layout_.head_dim; ++c) out[c] = fp16_to_fp32(row[c]);
        return;
    }
    dequantize_q4_channels_row(codes_of(keys, block, head) + (slot % bs) * keys.row_bytes,
                               keys.channel_scales(block, head), layout_.head_dim, out);
}

KeyResidual& KiviKeys::open(const KvSideView& keys, int64_t layer, int64_t block, Reopen how) {
    const int64_t bs = layout_.block_size, hd = layout_.head_dim, nh = layout_.n_kv_heads;
    std::unique_ptr<KeyResidual>& r = open_[static_cast<size_t>(layer)][static_cast<size_t>(block)];
    if (r != nullptr && !r->closed && how != Reopen::Fresh) return *r;
    if (r == nullptr) {
        r = std::make_unique<KeyResidual>();
        r->rows.resize(static_cast<size_t>(nh * bs * hd));
        r->written.resize(static_cast<size_t>(nh * bs));
        live_[static_cast<size_t>(layer)].push_back(static_cast<int32_t>(block));
    } else if (how == Reopen::Keys) {
        how = Reopen::Fresh;  // closed: its fp16 keys are exact; quantise afresh when full
    }
    r->closed = false;
    r->from_codes = how != Reopen::Fresh;
    std::fill(r->written.begin(), r->written.end(), uint8_t{0});
    if (r->from_codes) {
        std::vector<float> row(static_cast<size_t>(hd));
        for (int64_t h = 0; h < nh; ++h) {
            for (int64_t t = 0; t < bs; ++t) {
                dequantize_q4_channels_row(codes_of(keys, block, h) + t * keys.row_bytes,
                                           keys.channel_scales(block, h), hd, row.data());
                uint16_t* dst = r->rows.data() + (h * bs + t) * hd;
                for (int64_t c = 0; c < hd; ++c) dst[c] = fp32_to_fp16(row[c]);
            }
        }
    }
    return *r;
}

void KiviKeys::close(const KvSideView& keys, KeyResidual& r, int64_t block) {
    const int64_t bs = layout_.block_size, hd = layout_.head_dim;
    std::vector<float> x(static_cast<size_t>(bs * hd));
    for (int64_t h = 0; h < layout_.n_kv_heads; ++h) {
        const auto w = r.written.begin() + h * bs;
        if (std::none_of(w, w + bs, [](uint8_t f) { return f != 0; })) continue;
        if (r.from_codes && rewritten_rows_fit(keys, r, block, h)) continue;
        const uint16_t* rows = r.row(h, 0, bs, hd);
        for (int64_t i = 0; i < bs * hd; ++i) x[static_cast<size_t>(i)] = fp16_to_fp32(rows[i]);
        quantize_q4_channels(x.data(), bs, hd, codes_of(keys, block, h), scales_of(keys, block, h));
    }
    std::fill(r.written.begin(), r.written.end(), uint8_t{0});
    r.from_codes = false;
    r.closed = true;
}

void KiviKeys::write(const KvSideView& keys, int64_t layer, std::span<const int64_t> slots,
                     const float* k) {
    const int64_t bs = layout_.block_size, hd = layout_.head_dim, nh = layout_.n_kv_heads;
    auto& blocks = open_[static_cast<size_t>(layer)];
    const int64_t generation = ++writes_[static_cast<size_t>(layer)];
    // Blocks closed by an earlier write lose their fp16 keys (no query reads them any more),
    // except those this write reopens.
    for (int64_t slot : slots) {
        VELA_ASSERT(slot >= 0 && slot < layout_.slots_of(layer));
        KeyResidual* r = blocks[static_cast<size_t>(slot / bs)].get();
        if (r != nullptr && r->closed) r->generation = generation;
    }
    auto& live = live_[static_cast<size_t>(layer)];
    std::sort(live.begin(), live.end());
    live.erase(std::unique(live.begin(), live.end()), live.end());
    std::erase_if(live, [&](int32_t b) {
        std::unique_ptr<KeyResidual>& r = blocks[static_cast<size_t>(b)];
        if (r != nullptr && r->closed && r->generation < generation) r.reset();
        return r == nullptr;
    });

    std::vector<int64_t> full;
    for (size_t i = 0; i < slots.size(); ++i) {
        const int64_t block = slots[i] / bs, offset = slots[i] % bs;
        // A block's first slot starts it afresh, whatever a freed block left behind.
        KeyResidual& r = open(keys, layer, block, offset == 0 ? Reopen::Fresh : Reopen::Keys);
        for (int64_t h = 0; h < nh; ++h) {
            const float* src = k + (static_cast<int64_t>(i) * nh + h) * hd;
            uint16_t* dst = r.rows.data() + (h * bs + offset) * hd;
            for (int64_t c = 0; c < hd; ++c) dst[c] = fp32_to_fp16(src[c]);
            r.written[static_cast<size_t>(h * bs + offset)] = 1;
        }
        if (offset == bs - 1) full.push_back(block);
    }
    for (int64_t block : full) {
        KeyResidual& r = *blocks[static_cast<size_t>(block)];
        if (r.closed) continue;  // listed twice
        close(keys, r, block);
        r.generation = generation;
    }
}

void KiviKeys::copy(int32_t src, int32_t dst, int8_t group) {
    for (int64_t l = 0; l < layout_.n_layers; ++l) {
        if (layout_.group_of(l) != group) continue;
        auto& blocks = open_[static_cast<size_t>(l)];
        const KeyResidual* r = blocks[static_cast<size_t>(src)].get();
        blocks[static_cast<size_t>(dst)] =
            r != nullptr ? std::make_unique<KeyResidual>(*r) : nullptr;
        if (r != nullptr) live_[static_cast<size_t>(l)].push_back(dst);
    }
}

void KiviKeys::swap_out(int32_t block, int32_t host_slot, int8_t group) {
    for (int64_t l = 0; l < layout_.n_layers; ++l) {
        if (layout_.group_of(l) != group) continue;
        auto& r = open_[static_cast<size_t>(l)][static_cast<size_t>(block)];
        if (r != nullptr) {
            host_[{l, host_slot}] = std::move(r);
        } else {
            host_.erase({l, host_slot});
        }
    }
}

void KiviKeys::swap_in(int32_t host_slot, int32_t block, int8_t group) {
    for (int64_t l = 0; l < layout_.n_layers; ++l) {
        if (layout_.group_of(l) != group) continue;
        auto& r = open_[static_cast<size_t>(l)][static_cast<size_t>(block)];
        const auto it = host_.find({l, host_slot});
        if (it == host_.end()) {
            r.reset();
            continue;
        }
        r = std::move(it->second);
        host_.erase(it);
        live_[static_cast<size_t>(l)].push_back(block);
    }
}

void KiviKeys::move_row(const KvSideView& keys, int64_t layer, int64_t h0, int64_t h1, int64_t src,
                        int64_t dst) {
    const int64_t bs = layout_.block_size, hd = layout_.head_dim;
    std::vector<float> row(static_cast<size_t>((h1 - h0) * hd));
    // Rows move as later queries would read them (a block closed by the last step: its codes).
    for (int64_t h = h0; h < h1; ++h) read(keys, layer, src, h, row.data() + (h - h0) * hd);
    const int64_t block = dst / bs, offset = dst % bs;
    KeyResidual& r = open(keys, layer, block, Reopen::Codes);
    std::vector<uint8_t>& last = moved_[{layer, block}];
    last.resize(static_cast<size_t>(layout_.n_kv_heads));
    for (int64_t h = h0; h < h1; ++h) {
        uint16_t* out = r.rows.data() + (h * bs + offset) * hd;
        for (int64_t c = 0; c < hd; ++c)
            out[c] = fp32_to_fp16(row[static_cast<size_t>((h - h0) * hd + c)]);
        r.written[static_cast<size_t>(h * bs + offset)] = 1;
        if (offset == bs - 1) last[static_cast<size_t>(h)] = 1;
    }
}

void KiviKeys::close_moved(const KvSideView& keys, int64_t layer, int64_t block,
                           const std::vector<uint8_t>& last_written) {
    const int64_t bs = layout_.block_size;
    KeyResidual* r = open_[static_cast<size_t>(layer)][static_cast<size_t>(block)].get();
    if (r == nullptr || r->closed) return;
    // Rows only move down, so a block is full after a compaction iff every head moved into it
    // reached its last slot; the sequence's new last block stays open.
    for (int64_t h = 0; h < layout_.n_kv_heads; ++h) {
        const auto w = r->written.begin() + h * bs;
        const bool moved = std::any_of(w, w + bs, [](uint8_t f) { return f != 0; });
        if (moved && last_written[static_cast<size_t>(h)] == 0) return;
    }
    close(keys, *r, block);
    r->generation = writes_[static_cast<size_t>(layer)];
}

}  // namespace vela
