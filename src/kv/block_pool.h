#pragma once
// A fixed set of KV blocks handed out by id. Blocks are shared between sequences (fork, and
// later the prefix cache) through reference counts; a block returns to the free list when its
// last reference goes. Check/act pairs: can_allocate() never mutates, allocate() acts.
#include <cstdint>
#include <vector>

namespace vela {

class BlockPool {
  public:
    explicit BlockPool(int64_t num_blocks);

    bool can_allocate(int64_t n) const { return n <= num_free(); }
    // A free block with ref count 1; throws ResourceExhausted when none is left.
    int32_t allocate();
    void ref(int32_t id);
    // Drops one reference; the block is free again when none remain.
    void unref(int32_t id);

    int32_t ref_count(int32_t id) const;
    int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
    int64_t num_total() const { return static_cast<int64_t>(refs_.size()); }

  private:
    void check_id(int32_t id) const;

    std::vector<int32_t> refs_;
    // LIFO: a block freed a moment ago is likely still in cache when reused.
    std::vector<int32_t> free_;
};

}  // namespace vela
