#pragma once
// Launch helpers shared by the CUDA backend's plain kernels (ops.cu, kv_ops.cu).
#include <cuda_runtime.h>

#include <cstdint>

namespace vela::cuda_backend {

constexpr int kThreads = 256;  // threads per block of the one-thread-per-item kernels

inline cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}

// Blocks of kThreads covering n items.
inline unsigned blocks_for(int64_t n) {
    return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

}  // namespace vela::cuda_backend
