// KvCache's host tier: a preempted sequence's KV copied out to host memory and back, so that
// re-admitting it costs two memcpy per block instead of recomputing its tokens.
#include <cstring>

#include "core/error.h"
#include "kv/kv_cache.h"

namespace vela {

void KvCache::swap_out(SeqId id) {
    auto it = tables_.find(id);
    if (it == tables_.end()) fail<InvalidArgument>("unknown KV sequence {}", id);
    const BlockTable& t = it->second;
    Swapped s;
    s.n_tokens = t.n_tokens;
    s.n_blocks = static_cast<int64_t>(t.blocks.size());
    const size_t bb = block_bytes();
    s.data.resize(bb * 2 * static_cast<size_t>(config_.n_layers * s.n_blocks));
    std::byte* dst = s.data.data();
    for (int32_t b : t.blocks) {
        for (int64_t l = 0; l < config_.n_layers; ++l) {
            for (bool value : {false, true}) {
                std::memcpy(dst, block_ptr(l, value, b), bb);
                dst += bb;
            }
        }
    }
    free(id);
    swapped_.emplace(id, std::move(s));
}

int64_t KvCache::blocks_to_swap_in(SeqId id) const {
    auto it = swapped_.find(id);
    if (it == swapped_.end()) fail<InvalidArgument>("KV sequence {} is not swapped out", id);
    return it->second.n_blocks;
}

void KvCache::swap_in(SeqId id) {
    const int64_t needed = blocks_to_swap_in(id);
    if (needed > num_free_blocks()) {
        fail<ResourceExhausted>("swapping in KV sequence {} needs {} blocks, {} are free", id,
                                needed, num_free_blocks());
    }
    auto node = swapped_.extract(id);
    const Swapped& s = node.mapped();
    BlockTable t;
    t.n_tokens = s.n_tokens;
    const size_t bb = block_bytes();
    const std::byte* src = s.data.data();
    for (int64_t i = 0; i < s.n_blocks; ++i) {
        const int32_t b = allocate_block();
        t.blocks.push_back(b);
        for (int64_t l = 0; l < config_.n_layers; ++l) {
            for (bool value : {false, true}) {
                std::memcpy(block_ptr(l, value, b), src, bb);
                src += bb;
            }
        }
    }
    tables_.emplace(id, std::move(t));
}

int64_t KvCache::num_swapped_blocks() const {
    int64_t n = 0;
    for (const auto& [id, s] : swapped_) n += s.n_blocks;
    return n;
}

}  // namespace vela
