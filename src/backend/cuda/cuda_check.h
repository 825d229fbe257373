#pragma once
// CUDA error checks, the stream cast and the argument checks shared by the CUDA backend's host
// files.
#include <cuda_runtime.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "model/weights.h"

namespace vela::cuda_backend {

// vela::Error naming the call when a CUDA runtime call failed.
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) fail<Error>("CUDA error in {}: {}", what, cudaGetErrorString(e));
}

inline cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}

// Ops take float activations in device memory; anything else is a caller bug.
inline void check_f32(const Tensor& t) {
    VELA_ASSERT(t.device == Device::Cuda && t.dtype == DType::F32);
}

inline void check_device_weight(const Weight& w) {
    if (w.device != Device::Cuda) {
        fail<InvalidArgument>("the CUDA backend got a weight in {} memory (load_weights first)",
                              device_name(w.device));
    }
}

inline Half half_of(KvFormat f) {
    return f == KvFormat::BF16 ? Half::BF16 : Half::F16;
}

inline const DeviceKvStorage& device_storage(const KvStorage& kv) {
    if (kv.device() != Device::Cuda) {
        fail<InvalidArgument>("the CUDA backend cannot use KV storage on {}",
                              device_name(kv.device()));
    }
    return static_cast<const DeviceKvStorage&>(kv);
}

}  // namespace vela::cuda_backend
