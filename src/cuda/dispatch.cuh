#pragma once
// The one dispatch point from run-time values to kernel template arguments: a launcher passes a
// generic lambda, which is called with the storage type of the dtype (or the KvFormat) and the
// head dim as compile-time constants, for exactly the instances launch.h lists. Any other value
// returns cudaErrorInvalidValue without launching; api.cpp rejects such values before, by name.
// Also: raising a kernel instance's dynamic shared-memory limit once, not at every launch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <mutex>
#include <type_traits>

#include "cuda/launch.h"

namespace vela::cuda::detail {

template <class T>
struct TypeTag {
    using type = T;
};
template <int N>
using IntTag = std::integral_constant<int, N>;

// f(IntTag<head_dim>{}) when head_dim is one of kDims.
template <int... kDims, class F>
cudaError_t dispatch_head_dim(HeadDims<kDims...>, int head_dim, F&& f) {
    cudaError_t e = cudaErrorInvalidValue;
    static_cast<void>(((head_dim == kDims && ((e = f(IntTag<kDims>{})), true)) || ...));
    return e;
}

// f(TypeTag<T>{}, IntTag<HD>{}): T is __half or __nv_bfloat16, HD one of Dims.
template <class Dims, class F>
cudaError_t dispatch_dtype(Dtype dtype, int head_dim, F&& f) {
    switch (dtype) {
        case Dtype::kF16:
            return dispatch_head_dim(Dims{}, head_dim,
                                     [&](auto hd) { return f(TypeTag<__half>{}, hd); });
        case Dtype::kBf16:
            return dispatch_head_dim(Dims{}, head_dim,
                                     [&](auto hd) { return f(TypeTag<__nv_bfloat16>{}, hd); });
    }
    return cudaErrorInvalidValue;
}

template <KvFormat F>
using KvTag = std::integral_constant<KvFormat, F>;

// f(KvTag<F>{}, IntTag<HD>{}) for every KvFormat F, HD one of Dims.
template <class Dims, class Fn>
cudaError_t dispatch_kv_format(KvFormat format, int head_dim, Fn&& f) {
    auto with = [&](auto kv) {
        return dispatch_head_dim(Dims{}, head_dim, [&](auto hd) { return f(kv, hd); });
    };
    switch (format) {
        case KvFormat::kF16:
            return with(KvTag<KvFormat::kF16>{});
        case KvFormat::kBf16:
            return with(KvTag<KvFormat::kBf16>{});
        case KvFormat::kInt8:
            return with(KvTag<KvFormat::kInt8>{});
        case KvFormat::kFp8E4M3:
            return with(KvTag<KvFormat::kFp8E4M3>{});
        case KvFormat::kQ4:
            return with(KvTag<KvFormat::kQ4>{});
    }
    return cudaErrorInvalidValue;
}

// Lets kKernel launch with `bytes` of dynamic shared memory on the current device. Raising the
// limit is a driver call that costs about as much as a launch, so each kernel instance makes it
// once per device, and again only when a launch needs more than it allowed so far (the Hopper
// prefill's block-mask rows vary with the call). Up to 48 KB needs no call.
template <auto kKernel>
cudaError_t allow_dynamic_smem(int bytes) {
    constexpr int kDefaultLimit = 48 * 1024;
    constexpr int kMaxDevices = 64;  // devices past this ask the driver at every launch
    // Bytes allowed so far per device; it only grows, and only under the mutex, so a reader that
    // sees enough may launch without locking.
    static std::atomic<int> allowed[kMaxDevices];
    static std::mutex mutex;
    if (bytes <= kDefaultLimit) return cudaSuccess;
    int device = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) return e;
    const bool cached = device >= 0 && device < kMaxDevices;
    if (cached && allowed[device].load(std::memory_order_acquire) >= bytes) return cudaSuccess;
    std::lock_guard<std::mutex> lock(mutex);
    if (cached && allowed[device].load(std::memory_order_relaxed) >= bytes) return cudaSuccess;
    e = cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e == cudaSuccess && cached) allowed[device].store(bytes, std::memory_order_release);
    return e;
}

}  // namespace vela::cuda::detail
