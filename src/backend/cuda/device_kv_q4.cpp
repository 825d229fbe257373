// DeviceKvStorage's KIVI 4-bit machinery (KvFormat::Q4): the fp16 residuals of open blocks'
// keys (a pool of slots, a block -> slot map on the device and its host mirror), closing the
// blocks a step fills, whole-row moves of keys (eviction's compaction), copies and swaps of
// residuals, and read() of Q4 rows. The rest of the storage is in device_memory.cpp.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kv_ops.h"
#include "core/error.h"
#include "core/fp16.h"

namespace vela {

using cuda_backend::as_stream;
using cuda_backend::check;

// Copies `n` int32 to the staging buffer (grown as needed; only eager kernels read it).
static const int32_t* stage_ints(std::unique_ptr<CudaBuffer>& staging, const int32_t* host,
                                 size_t n, void* stream) {
    const size_t bytes = 4 * n;
    if (!staging || staging->bytes() < bytes) staging = std::make_unique<CudaBuffer>(2 * bytes);
    // From pageable memory: returns once `host` is read, ordered before the kernels after it.
    check(cudaMemcpyAsync(staging->data(), host, bytes, cudaMemcpyHostToDevice, as_stream(stream)),
          "KV residual upload");
    return static_cast<const int32_t*>(staging->data());
}

// kv/kivi_keys.h's move_row and close_moved for a run of whole-row moves (sinks / window
// compaction; moves of single heads or layers come from the score policies, which Q4 refuses):
// a row moves as later queries read it (from its block's residual while that block is open,
// else its codes) into the destination block's residual, a destination without one (or closed
// by the last step) reopening from its codes; rows only move down, so a destination whose last
// row a move wrote is full and is quantised again.
void DeviceKvStorage::move_q4_keys(std::span<const BlockOp> ops) {
    const int64_t bs = layout_.block_size;
    auto closed_last = [&](int32_t block) {
        return std::find(closed_last_.begin(), closed_last_.end(), block) != closed_last_.end();
    };
    auto open = [&](int32_t block) {
        return slot_of_host_[static_cast<size_t>(block)] >= 0 && !closed_last(block);
    };
    std::vector<int32_t> reopen, moves;
    std::map<int32_t, bool> full;  // destination block -> its last row written by a move
    for (const BlockOp& op : ops) {
        if (op.layer >= 0 || op.head >= 0) {
            fail<InvalidArgument>(
                "q4 KV on the GPU moves whole rows only (layer {}, head {}): eviction by a "
                "policy that keeps heads apart is refused with q4",
                op.layer, op.head);
        }
        const auto src = static_cast<int32_t>(op.src / bs), dst = static_cast<int32_t>(op.dst / bs);
        moves.insert(moves.end(), {op.src, op.dst, open(src) ? 1 : 0});
        if (!open(dst)) {
            std::erase(closed_last_, dst);
            take_residual(dst);
            reopen.push_back(dst);
        }
        bool& last = full[dst];
        last = last || op.dst % bs == bs - 1;
    }
    upload_residual_map();
    const cuda_backend::KvCacheShape shape = cuda_backend::kv_shape(*this);
    if (!reopen.empty()) {
        const int32_t* blocks = stage_ints(staging_, reopen.data(), reopen.size(), stream_);
        for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
            cuda_backend::reopen_q4_blocks(side(layer, false), residual(layer), shape, blocks,
                                           static_cast<int64_t>(reopen.size()), stream_);
        }
    }
    const int32_t* list = stage_ints(staging_, moves.data(), moves.size(), stream_);
    cuda_backend::move_q4_keys(side(0, false),
                               static_cast<int64_t>(block_bytes_) * layout_.num_blocks,
                               residuals_->data(),
                               static_cast<int64_t>(residual_bytes()) * residual_slots_,
                               static_cast<const int32_t*>(slot_of_->data()), shape,
                               layout_.n_layers, list, static_cast<int64_t>(moves.size() / 3),
                               stream_);
    std::vector<int32_t> closing = {0};
    for (const auto& [block, last] : full) {
        if (!last) continue;
        closing.push_back(block);
        closed_last_.push_back(block);  // its residual kept for this step's rows, as written
    }
    closing[0] = static_cast<int32_t>(closing.size() - 1);
    if (closing[0] > 0) {
        const int32_t* c = stage_ints(staging_, closing.data(), closing.size(), stream_);
        for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
            cuda_backend::close_q4_blocks(side(layer, false), residual(layer), shape, c + 1, c,
                                          closing[0], stream_);
        }
    }
    check(cudaGetLastError(), "KV q4 row moves");
}

// A block's residual follows its copies and swaps: copied with it, saved to the host slot with
// it, restored with it; a block copied or swapped in without one has none.
void DeviceKvStorage::move_residual(const BlockOp& op) {
    const cudaStream_t s = as_stream(stream_);
    const size_t rb = residual_bytes();
    auto at = [&](int64_t layer, int32_t slot) {
        return static_cast<std::byte*>(residuals_->data()) +
               rb * static_cast<size_t>(residual_slots_ * layer + slot);
    };
    const bool src_has = op.kind != BlockOp::Kind::SwapIn &&
                         slot_of_host_[static_cast<size_t>(op.src)] >= 0;
    switch (op.kind) {
        case BlockOp::Kind::Copy:
            if (!src_has) {
                drop_residual(op.dst);
                break;
            }
            take_residual(op.dst);  // may grow the pool: addresses after it
            for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
                check(cudaMemcpyAsync(at(layer, slot_of_host_[static_cast<size_t>(op.dst)]),
                                      at(layer, slot_of_host_[static_cast<size_t>(op.src)]), rb,
                                      cudaMemcpyDeviceToDevice, s),
                      "KV residual copy");
            }
            if (std::find(closed_last_.begin(), closed_last_.end(), op.src) != closed_last_.end())
                closed_last_.push_back(op.dst);
            break;
        case BlockOp::Kind::SwapOut: {
            if (!src_has) {
                host_residuals_.erase(op.dst);
                break;
            }
            auto& saved = host_residuals_[op.dst];
            saved.resize(rb / 2 * static_cast<size_t>(layout_.n_layers));
            for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
                check(cudaMemcpyAsync(saved.data() + rb / 2 * static_cast<size_t>(layer),
                                      at(layer, slot_of_host_[static_cast<size_t>(op.src)]), rb,
                                      cudaMemcpyDeviceToHost, s),
                      "KV residual swap out");
            }
            check(cudaStreamSynchronize(s), "KV residual swap out");
            drop_residual(op.src);
            break;
        }
        case BlockOp::Kind::SwapIn: {
            const auto it = host_residuals_.find(op.src);
            if (it == host_residuals_.end()) {
                drop_residual(op.dst);
                break;
            }
            const int32_t slot = take_residual(op.dst);
            for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
                check(cudaMemcpyAsync(at(layer, slot),
                                      it->second.data() + rb / 2 * static_cast<size_t>(layer), rb,
                                      cudaMemcpyHostToDevice, s),
                      "KV residual swap in");
            }
            check(cudaStreamSynchronize(s), "KV residual swap in");
            host_residuals_.erase(it);
            break;
        }
        case BlockOp::Kind::MoveRow:
            break;  // refused above
    }
}

size_t DeviceKvStorage::residual_bytes() const {
    return static_cast<size_t>(layout_.n_kv_heads * layout_.block_size * layout_.head_dim) * 2;
}

// Twice the slots (64 at first), the old ones copied over: kernels address the pool through
// residual(), so the move is a new generation.
void DeviceKvStorage::grow_residuals() {
    const int32_t old = residual_slots_, slots = std::max(64, 2 * old);
    const size_t rb = residual_bytes(), layers = static_cast<size_t>(layout_.n_layers);
    auto pool = std::make_unique<CudaBuffer>(rb * static_cast<size_t>(slots) * layers);
    const cudaStream_t s = as_stream(stream_);
    for (size_t layer = 0; old > 0 && layer < layers; ++layer) {
        check(cudaMemcpyAsync(static_cast<std::byte*>(pool->data()) + layer * slots * rb,
                              static_cast<std::byte*>(residuals_->data()) + layer * old * rb,
                              rb * static_cast<size_t>(old), cudaMemcpyDeviceToDevice, s),
              "KV residual pool");
    }
    check(cudaStreamSynchronize(s), "KV residual pool");
    residuals_ = std::move(pool);
    residual_slots_ = slots;
    for (int32_t i = slots - 1; i >= old; --i) free_slots_.push_back(i);
    ++generation_;
}

int32_t DeviceKvStorage::take_residual(int32_t block) {
    int32_t& at = slot_of_host_[static_cast<size_t>(block)];
    if (at >= 0) return at;
    if (free_slots_.empty()) grow_residuals();
    at = free_slots_.back();
    free_slots_.pop_back();
    patches_.insert(patches_.end(), {block, at});
    return at;
}

void DeviceKvStorage::drop_residual(int32_t block) {
    int32_t& at = slot_of_host_[static_cast<size_t>(block)];
    if (at < 0) return;
    free_slots_.push_back(at);
    at = -1;
    patches_.insert(patches_.end(), {block, -1});
}

void DeviceKvStorage::upload_residual_map() {
    if (patches_.empty()) return;
    const size_t n = patches_.size() / 2;
    cuda_backend::patch_slots(static_cast<int32_t*>(slot_of_->data()),
                              stage_ints(staging_, patches_.data(), patches_.size(), stream_),
                              static_cast<int64_t>(n), stream_);
    check(cudaGetLastError(), "KV residual map");
    patches_.clear();
}

cuda_backend::KvResidual DeviceKvStorage::residual(int64_t layer) const {
    if (!q4()) return {};
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    return {static_cast<std::byte*>(residuals_->data()) +
                residual_bytes() * static_cast<size_t>(residual_slots_ * layer),
            static_cast<const int32_t*>(slot_of_->data())};
}

const int32_t* DeviceKvStorage::closing() const {
    return closing_ ? static_cast<const int32_t*>(closing_->data()) : nullptr;
}

// kv/kivi_keys.h's rules per written block: a fresh block (its first row written) takes a
// residual; one written past its first row without a residual reopens from its codes, except
// a closed block whose last row alone is written again (a prefix-cache hit recomputing it),
// which keeps its codes: every query reads those. Blocks whose last row is written close.
void DeviceKvStorage::begin_step(const ForwardBatch& batch, uint64_t step) {
    if (!q4() || step == step_) return;
    step_ = step;
    const int64_t bs = layout_.block_size;
    std::map<int32_t, std::pair<int64_t, int64_t>> written;  // block -> lowest, highest row
    for (const int64_t slot : batch.slot_mapping) {
        const auto block = static_cast<int32_t>(slot / bs);
        const int64_t row = slot % bs;
        const auto [it, fresh] = written.try_emplace(block, row, row);
        if (!fresh) {
            it->second.first = std::min(it->second.first, row);
            it->second.second = std::max(it->second.second, row);
        }
    }
    // Blocks the previous step closed kept their keys for its own rows only.
    for (const int32_t block : closed_last_)
        if (!written.contains(block)) drop_residual(block);
    closed_last_.clear();
    std::vector<int32_t> reopen, closing = {0};
    for (const auto& [block, rows] : written) {
        if (slot_of_host_[static_cast<size_t>(block)] < 0) {
            if (rows.first == bs - 1) continue;
            take_residual(block);
            if (rows.first > 0) reopen.push_back(block);
        }
        if (rows.second == bs - 1) {
            closing.push_back(block);
            closed_last_.push_back(block);
        }
    }
    closing[0] = static_cast<int32_t>(closing.size() - 1);
    upload_residual_map();
    if (!reopen.empty()) {
        const int32_t* blocks = stage_ints(staging_, reopen.data(), reopen.size(), stream_);
        for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
            cuda_backend::reopen_q4_blocks(side(layer, false), residual(layer),
                                           cuda_backend::kv_shape(*this), blocks,
                                           static_cast<int64_t>(reopen.size()), stream_);
        }
        check(cudaGetLastError(), "KV reopen");
    }
    // Recorded steps read the list where it is: it moves (a new generation) only to grow.
    const size_t need = 4 * std::max<size_t>(closing.size(), batch.slot_mapping.size() + 1);
    if (!closing_ || closing_->bytes() < need) {
        closing_ = std::make_unique<CudaBuffer>(2 * need);
        ++generation_;
    }
    check(cudaMemcpyAsync(closing_->data(), closing.data(), 4 * closing.size(),
                          cudaMemcpyHostToDevice, as_stream(stream_)),
          "KV closing blocks");
}

// Q4's read(): V and closed blocks' K dequantised as kv/kv_quant.h defines it, open blocks' K
// from their residual (kv/kivi_keys.h's read).
void DeviceKvStorage::read_q4(int64_t layer, int64_t slot, int64_t kv_head, bool value,
                              float* out) const {
    const int64_t hd = layout_.head_dim, bs = layout_.block_size, block = slot / bs;
    const int64_t row = kv_head * bs + slot % bs;
    const auto* base = static_cast<const std::byte*>(side(layer, value)) +
                       block_bytes_ * static_cast<size_t>(block);
    check(cudaStreamSynchronize(as_stream(stream_)), "KV read");
    auto fetch = [](void* dst, const void* src, size_t bytes) {
        check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "KV read");
    };
    const int32_t at = slot_of_host_[static_cast<size_t>(block)];
    const bool open = at >= 0 && std::find(closed_last_.begin(), closed_last_.end(), block) ==
                                     closed_last_.end();
    if (!value && open) {
        std::vector<uint16_t> h(static_cast<size_t>(hd));
        fetch(h.data(),
              static_cast<const std::byte*>(residual(layer).keys) +
                  residual_bytes() * static_cast<size_t>(at) +
                  static_cast<size_t>(row * hd) * 2,
              h.size() * 2);
        for (int64_t d = 0; d < hd; ++d) out[d] = fp16_to_fp32(h[static_cast<size_t>(d)]);
        return;
    }
    std::vector<uint8_t> codes(static_cast<size_t>(q4_row_bytes(hd)));
    fetch(codes.data(), base + static_cast<size_t>(row * hd / 2), codes.size());
    if (value) {
        const int64_t groups = kv_groups(hd, formats_.group);
        std::vector<uint16_t> pairs(static_cast<size_t>(2 * groups));
        fetch(pairs.data(), base + scale_offset_ + static_cast<size_t>(row * groups) * 4,
              pairs.size() * 2);
        dequantize_q4_row(codes.data(), pairs.data(), hd, formats_.group, out);
    } else {
        std::vector<uint16_t> pairs(static_cast<size_t>(2 * hd));
        fetch(pairs.data(), base + scale_offset_ + static_cast<size_t>(kv_head * hd) * 4,
              pairs.size() * 2);
        dequantize_q4_channels_row(codes.data(), pairs.data(), hd, out);
    }
}

}  // namespace vela
