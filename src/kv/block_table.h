#pragma once
// The blocks holding one sequence's KV, in token order: token t lives in
// blocks[t / block_size] at offset t % block_size. Plain data, read by attention kernels.
// Invariant (kept by KvCache): blocks.size() == ceil(n_tokens / block_size).
#include <cstdint>
#include <vector>

namespace vela {

struct BlockTable {
    std::vector<int32_t> blocks;
    int64_t n_tokens = 0;
    // The local group's blocks (BlockManagerConfig::local_window): local[i] holds the local
    // layers' KV of the tokens of block local_first + i. The blocks before local_first, whose
    // tokens no query of the sequence can see any more, are released.
    // Invariant: local_first + local.size() == blocks.size() (with a local group).
    std::vector<int32_t> local;
    int64_t local_first = 0;

    // The local layers' slot of token `token` (>= local_first * block_size).
    int64_t local_slot(int64_t token, int64_t block_size) const {
        return int64_t{local[static_cast<size_t>(token / block_size - local_first)]} * block_size +
               token % block_size;
    }
};

}  // namespace vela
