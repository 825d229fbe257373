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
};

}  // namespace vela
