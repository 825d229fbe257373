#pragma once
// K in Q4 (KIVI's per-channel half) inside HostKvStorage: a full block of one KV head stores, per
// channel, an fp16 (scale, min) pair and block_size 4-bit codes (kv_quant.h); the block that is
// still filling keeps its keys in fp16 beside the storage (the "residual", here), and is
// quantised when its last slot is written. Full blocks thus cost only the 4-bit layout; the
// residuals cost one fp16 block per open block (about one per sequence).
//
// Which representation a query reads is a function of positions only, so that a result does
// not depend on how a prompt was split into steps (the engine's alone == batched): a query at
// KV index p reads block b quantised iff p >= b's last index, else its fp16 keys. The only
// block a query can see before its last index is its own, written in the same write() call, so
// a block closed by a write keeps its fp16 keys until the next write() of that layer (closed,
// below) and no longer.
//
// Writing into a closed block again (a truncated sequence appending, a copy of a full block)
// reopens it: from its fp16 keys while it still has them, else from its 4-bit data ("from
// codes"); such a block, when full again, keeps its 4-bit data for every head whose rewritten
// rows already have those codes within half a step (a prefix-cache hit recomputing a block's
// last token writes the same keys again, and must read what a lone sequence reads).
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "kv/kv_storage.h"

namespace vela {

struct KvSideView;

// The fp16 keys of one open (or just closed) block of one layer, all KV heads.
struct KeyResidual {
    std::vector<uint16_t> rows;    // fp16 [n_kv_heads][block_size][head_dim]
    std::vector<uint8_t> written;  // [n_kv_heads][block_size]: rows written since it (re)opened
    bool from_codes =
        false;            // reopened from the 4-bit data (unwritten rows: their dequantised values)
    bool closed = false;  // full and quantised; rows kept for the write that closed it
    int64_t generation = 0;  // that write (KiviKeys' count of the layer's writes)

    const uint16_t* row(int64_t head, int64_t offset, int64_t block_size, int64_t head_dim) const {
        return rows.data() + (head * block_size + offset) * head_dim;
    }
};

class KiviKeys {
  public:
    explicit KiviKeys(const KvLayout& layout);

    // Per block of `layer` (num_blocks entries): its residual or null. Stable for the storage's
    // life; the attention kernels read it through KvSideView::residual.
    const std::unique_ptr<KeyResidual>* residuals(int64_t layer) const {
        return open_[static_cast<size_t>(layer)].data();
    }

    // `keys` is the layer's K side (HostKvStorage owns its bytes and lets this write them).
    void write(const KvSideView& keys, int64_t layer, std::span<const int64_t> slots,
               const float* k);
    // What a later query reads: fp16 while the block is open, else the dequantised codes.
    void read(const KvSideView& keys, int64_t layer, int64_t slot, int64_t head, float* out) const;

    // Block ops of one block group (BlockOp::group): the layers of that group only.
    void copy(int32_t src, int32_t dst, int8_t group = 0);
    void swap_out(int32_t block, int32_t host_slot, int8_t group = 0);
    void swap_in(int32_t host_slot, int32_t block, int8_t group = 0);
    // One token's keys of heads [h0, h1) from slot src to slot dst (eviction's MoveRow); blocks
    // written so are quantised by finish_moves() once every moved head's last slot is written.
    void move_row(const KvSideView& keys, int64_t layer, int64_t h0, int64_t h1, int64_t src,
                  int64_t dst);
    template <class SideOf>
    void finish_moves(SideOf side_of) {
        for (const auto& [at, last] : moved_)
            close_moved(side_of(at.first), at.first, at.second, last);
        moved_.clear();
    }

  private:
    // Fresh: the block's first slot is written. Keys: a later slot is written (a closed block
    // reopens from its fp16 keys, one without from its codes). Codes: a row is moved in (the
    // block's other rows stay as queries read them: from its codes unless it is open).
    enum class Reopen { Fresh, Keys, Codes };
    KeyResidual& open(const KvSideView& keys, int64_t layer, int64_t block, Reopen how);
    void close(const KvSideView& keys, KeyResidual& r, int64_t block);
    void close_moved(const KvSideView& keys, int64_t layer, int64_t block,
                     const std::vector<uint8_t>& last_written);

    KvLayout layout_;
    std::vector<std::vector<std::unique_ptr<KeyResidual>>> open_;  // [layer][block]
    std::vector<std::vector<int32_t>> live_;  // [layer]: blocks that may have a residual
    std::vector<int64_t> writes_;             // [layer]: write() calls so far
    std::map<std::pair<int64_t, int32_t>, std::unique_ptr<KeyResidual>> host_;  // (layer, slot)
    // (layer, block) -> per head: its last slot was written by a move in this apply().
    std::map<std::pair<int64_t, int64_t>, std::vector<uint8_t>> moved_;
};

}  // namespace vela
