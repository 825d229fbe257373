#pragma once
// CUDA error checks and the stream cast shared by the CUDA backend's host files.
#include <cuda_runtime.h>

#include "core/error.h"

namespace vela::cuda_backend {

// vela::Error naming the call when a CUDA runtime call failed.
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) fail<Error>("CUDA error in {}: {}", what, cudaGetErrorString(e));
}

inline cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}

}  // namespace vela::cuda_backend
