#include "kv/block_pool.h"

#include <limits>

#include "core/error.h"

namespace vela {

BlockPool::BlockPool(int64_t num_blocks) {
    if (num_blocks < 1 || num_blocks > std::numeric_limits<int32_t>::max()) {
        fail<InvalidArgument>("KV block count {} must be in [1, 2^31)", num_blocks);
    }
    refs_.assign(static_cast<size_t>(num_blocks), 0);
    free_.reserve(static_cast<size_t>(num_blocks));
    // Reverse order so that the first allocations hand out ids 0, 1, 2, ...
    for (int64_t i = num_blocks - 1; i >= 0; --i) free_.push_back(static_cast<int32_t>(i));
}

int32_t BlockPool::allocate() {
    if (free_.empty()) fail<ResourceExhausted>("out of KV blocks ({} in total)", num_total());
    const int32_t id = free_.back();
    free_.pop_back();
    VELA_ASSERT(refs_[id] == 0);
    refs_[id] = 1;
    return id;
}

void BlockPool::check_id(int32_t id) const {
    if (id < 0 || id >= num_total()) fail<InvalidArgument>("KV block id {} out of range", id);
}

void BlockPool::ref(int32_t id) {
    check_id(id);
    if (refs_[id] == 0) fail<InvalidArgument>("KV block {} is free and cannot be shared", id);
    ++refs_[id];
}

void BlockPool::unref(int32_t id) {
    check_id(id);
    if (refs_[id] == 0) fail<InvalidArgument>("KV block {} is already free", id);
    if (--refs_[id] == 0) free_.push_back(id);
}

int32_t BlockPool::ref_count(int32_t id) const {
    check_id(id);
    return refs_[id];
}

}  // namespace vela
