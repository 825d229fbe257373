#pragma once
// Host side of TMA: the 3-d tensor maps (head_dim, rows, heads) of 16-bit Q/K/V-like tensors
// that the Hopper kernels load with cp.async.bulk.tensor (sm90_sync.cuh).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

namespace vela::cuda::detail {

// cuTensorMapEncodeTiled from the driver, looked up once through the runtime (no link
// dependency on libcuda); nullptr when the driver lacks it.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static const auto fn = [] {
        void* f = nullptr;
        cudaDriverEntryPointQueryResult q{};
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                             &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            f = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
    }();
    return fn;
}

// Map of a (head_dim, rows, heads) 16-bit tensor in boxes of 64 columns x box_rows rows x one
// head, 128-byte swizzled as the kernel's tiles; false when TMA cannot address it (alignment,
// strides) and the cp.async path must run instead.
inline bool encode_map(CUtensorMap* map, CUtensorMapDataType dtype, const void* base, int head_dim,
                       int64_t rows, int heads, int64_t row_stride, int64_t head_stride,
                       int box_rows) {
    const auto encode = tensor_map_encoder();
    if (encode == nullptr || rows <= 0 || reinterpret_cast<uintptr_t>(base) % 16 != 0) return false;
    if (heads == 1) head_stride = row_stride;  // never stepped: any valid stride
    const cuuint64_t dims[3] = {cuuint64_t(head_dim), cuuint64_t(rows), cuuint64_t(heads)};
    const cuuint64_t strides[2] = {cuuint64_t(row_stride) * 2, cuuint64_t(head_stride) * 2};
    for (cuuint64_t s : strides)
        if (s == 0 || s % 16 != 0 || s >= (cuuint64_t{1} << 40)) return false;
    const cuuint32_t box[3] = {64, cuuint32_t(box_rows), 1}, elem_strides[3] = {1, 1, 1};
    return encode(map, dtype, 3, const_cast<void*>(base), dims, strides, box, elem_strides,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <class T>
constexpr CUtensorMapDataType tma_dtype() {
    return std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                     : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
}

}  // namespace vela::cuda::detail
