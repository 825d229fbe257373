#pragma once
// CUDA error checks, the stream cast and the argument checks shared by the CUDA backend's host
// files.
#include <cuda_runtime.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kv_ops.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "cuda/attention_params.h"
#include "model/weights.h"

namespace vela::cuda_backend {

// vela::Error naming the call when a CUDA runtime call failed.
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) fail<Error>("CUDA error in {}: {}", what, cudaGetErrorString(e));
}

// Offsets of arrays packed into one device allocation (weights, a step's metadata): 256 bytes
// apart, cudaMalloc's own alignment.
constexpr size_t kAlign = 256;
inline size_t align_up(size_t n) {
    return (n + kAlign - 1) / kAlign * kAlign;
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

// The 16-bit type of attention's q and o (and of 16-bit KV): fp16 beside 8-bit KV.
inline Half half_of(KvFormat f) {
    return f == KvFormat::BF16 ? Half::BF16 : Half::F16;
}

inline KvCode kv_code(KvFormat f) {
    switch (f) {
        case KvFormat::BF16:
            return KvCode::BF16;
        case KvFormat::Q8:
            return KvCode::Int8;
        case KvFormat::FP8:
            return KvCode::Fp8;
        case KvFormat::Q4:
            return KvCode::Q4;
        default:
            return KvCode::F16;
    }
}

inline cuda::KvFormat attention_kv_format(KvFormat f) {
    switch (f) {
        case KvFormat::BF16:
            return cuda::KvFormat::kBf16;
        case KvFormat::Q8:
            return cuda::KvFormat::kInt8;
        case KvFormat::FP8:
            return cuda::KvFormat::kFp8E4M3;
        case KvFormat::Q4:
            return cuda::KvFormat::kQ4;
        default:
            return cuda::KvFormat::kF16;
    }
}

// One layer side's shape as the KV kernels see it (K and V share it: one format for both).
inline KvCacheShape kv_shape(const DeviceKvStorage& kv) {
    const KvLayout& l = kv.layout();
    return {l.n_kv_heads,
            l.head_dim,
            l.block_size,
            static_cast<int64_t>(kv.block_bytes()),
            static_cast<int64_t>(kv.scale_offset()),
            kv_code(kv.formats().k),
            kv.formats().group};
}

// Layer `layer` of kv as the attention kernels address it, through a block table of rows of
// `table_stride` entries. Elements are the stored values (bytes for 8-bit codes, whose scales
// sit in each block after its rows; Q4: bytes of codes, with their pairs and residuals).
inline cuda::PagedKv paged_kv(const DeviceKvStorage& kv, int64_t layer, const int32_t* table,
                              int table_stride) {
    const KvLayout& l = kv.layout();
    const KvCode code = kv_code(kv.formats().k);
    const auto elem = static_cast<int64_t>(is_8bit(code) || code == KvCode::Q4 ? 1 : 2);
    const int64_t row = code == KvCode::Q4 ? l.head_dim / 2 : l.head_dim;  // in elements
    cuda::PagedKv p{kv.side(layer, false),
                    kv.side(layer, true),
                    table,
                    table_stride,
                    static_cast<int>(l.block_size),
                    static_cast<int64_t>(kv.block_bytes()) / elem,
                    row,
                    l.block_size * row};
    if (code == KvCode::Q4) {
        const KvResidual r = kv.residual(layer);
        p.kv_group = static_cast<int>(kv.formats().group);
        p.k_residual = r.keys;
        p.residual_of = r.slot_of;
    }
    if (elem == 1) {
        p.k_scale =
            reinterpret_cast<const float*>(static_cast<const char*>(p.k_cache) + kv.scale_offset());
        p.v_scale =
            reinterpret_cast<const float*>(static_cast<const char*>(p.v_cache) + kv.scale_offset());
        p.scale_block_stride = static_cast<int64_t>(kv.block_bytes()) / 4;
    }
    return p;
}

inline const DeviceKvStorage& device_storage(const KvStorage& kv) {
    if (kv.device() != Device::Cuda) {
        fail<InvalidArgument>("the CUDA backend cannot use KV storage on {}",
                              device_name(kv.device()));
    }
    return static_cast<const DeviceKvStorage&>(kv);
}
inline DeviceKvStorage& device_storage(KvStorage& kv) {
    return const_cast<DeviceKvStorage&>(device_storage(static_cast<const KvStorage&>(kv)));
}

}  // namespace vela::cuda_backend
