// BlockManager's host tier: a preempted sequence's blocks moved to host slots and back, so that
// re-admitting it costs two copies per block instead of recomputing its tokens. Only the slot
// bookkeeping lives here; the copies are SwapOut / SwapIn ops for the KvStorage.
#include "core/error.h"
#include "kv/block_manager.h"

namespace vela {

int32_t BlockManager::allocate_host_slot() {
    if (!free_host_slots_.empty()) {
        const int32_t s = free_host_slots_.back();
        free_host_slots_.pop_back();
        return s;
    }
    return next_host_slot_++;
}

void BlockManager::swap_out(SeqId id) {
    require_no_local_group("swapping to host memory");
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    Swapped s;
    s.n_tokens = it->second.n_tokens;
    for (int32_t b : it->second.blocks) {
        const int32_t slot = allocate_host_slot();
        emit(BlockOp{BlockOp::Kind::SwapOut, b, slot});
        s.host_slots.push_back(slot);
    }
    free(id);  // the ops above are ordered before any later use of these blocks
    swapped_.emplace(id, std::move(s));
}

int64_t BlockManager::blocks_to_swap_in(SeqId id) const {
    auto it = swapped_.find(id);
    if (it == swapped_.end()) fail<InvalidArgument>("KV sequence {} is not swapped out", id);
    return static_cast<int64_t>(it->second.host_slots.size());
}

void BlockManager::swap_in(SeqId id) {
    const int64_t needed = blocks_to_swap_in(id);
    if (needed > num_free_blocks()) {
        fail<ResourceExhausted>("swapping in KV sequence {} needs {} blocks, {} are free", id,
                                needed, num_free_blocks());
    }
    auto node = swapped_.extract(id);
    const Swapped& s = node.mapped();
    BlockTable t;
    t.n_tokens = s.n_tokens;
    for (int32_t slot : s.host_slots) {
        const int32_t b = allocate_block();
        emit(BlockOp{BlockOp::Kind::SwapIn, slot, b});
        t.blocks.push_back(b);
        free_host_slots_.push_back(slot);
    }
    tables_.emplace(id, std::move(t));
}

int64_t BlockManager::num_swapped_blocks() const {
    int64_t n = 0;
    for (const auto& [id, s] : swapped_) n += static_cast<int64_t>(s.host_slots.size());
    return n;
}

}  // namespace vela
