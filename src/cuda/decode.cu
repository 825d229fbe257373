// Dispatch point of the decode kernels: KV format x head dim for the split kernel, output dtype
// for the combine kernel. The query dtype and group size are run-time values inside the kernel
// (one Q load per warp; the mma always carries 8 head rows).
#include "cuda/decode_kernel.cuh"
#include "cuda/launch.h"

namespace vela::cuda::detail {
namespace {

template <KvFormat F, int HD>
cudaError_t prepare_split(const void** kernel, size_t* smem) {
    *kernel = reinterpret_cast<const void*>(&decode_split_kernel<F, HD>);
    *smem = DecodeShape<F, HD>::kSmem;
    return cudaFuncSetAttribute(*kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(*smem));
}

// The split kernel instance for p (format x head dim) and its shared-memory bytes, with the
// dynamic shared-memory limit raised to match.
cudaError_t split_kernel(const DecodeParams& p, const void** kernel, size_t* smem) {
    const bool hd64 = p.head_dim == 64;
    switch (p.kv_format) {
        case KvFormat::kF16:
            return hd64 ? prepare_split<KvFormat::kF16, 64>(kernel, smem)
                        : prepare_split<KvFormat::kF16, 128>(kernel, smem);
        case KvFormat::kBf16:
            return hd64 ? prepare_split<KvFormat::kBf16, 64>(kernel, smem)
                        : prepare_split<KvFormat::kBf16, 128>(kernel, smem);
        case KvFormat::kInt8:
            return hd64 ? prepare_split<KvFormat::kInt8, 64>(kernel, smem)
                        : prepare_split<KvFormat::kInt8, 128>(kernel, smem);
        case KvFormat::kFp8E4M3:
            return hd64 ? prepare_split<KvFormat::kFp8E4M3, 64>(kernel, smem)
                        : prepare_split<KvFormat::kFp8E4M3, 128>(kernel, smem);
    }
    return cudaErrorInvalidValue;
}

// The combine kernel may start while the split kernel drains (programmatic dependent launch,
// sm_90+): it waits in griddepcontrol.wait, which saves the launch gap between the two.
template <class T>
cudaError_t launch_combine(const DecodeParams& p, float* o_part, float* lse_part,
                           cudaStream_t stream) {
    int dev = 0, major = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(p.batch * p.num_heads);
    cfg.blockDim = dim3(p.head_dim);
    cfg.stream = stream;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = major >= 9 ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, decode_combine_kernel<T>, p, p.num_splits,
                              static_cast<const float*>(o_part),
                              static_cast<const float*>(lse_part));
}

}  // namespace

int decode_ctas_per_sm(const DecodeParams& p) {
    const void* kernel = nullptr;
    size_t smem = 0;
    int n = 0;
    if (split_kernel(p, &kernel, &smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kDecodeThreads, smem) !=
            cudaSuccess)
        return 1;
    return n > 0 ? n : 1;
}

cudaError_t launch_decode(const DecodeParams& p, int split_len, cudaStream_t stream) {
    if (p.batch == 0) return cudaSuccess;
    auto* o_part = static_cast<float*>(p.workspace);
    float* lse_part =
        o_part + static_cast<size_t>(p.batch) * p.num_heads * p.num_splits * p.head_dim;
    const void* kernel = nullptr;
    size_t smem = 0;
    cudaError_t e = split_kernel(p, &kernel, &smem);
    if (e != cudaSuccess) return e;
    const dim3 grid(p.num_splits, p.num_kv_heads, p.batch);
    void* args[] = {const_cast<DecodeParams*>(&p), &split_len, &o_part, &lse_part};
    e = cudaLaunchKernel(kernel, grid, dim3(kDecodeThreads), args, smem, stream);
    if (e != cudaSuccess) return e;
    return p.dtype == Dtype::kF16 ? launch_combine<__half>(p, o_part, lse_part, stream)
                                  : launch_combine<__nv_bfloat16>(p, o_part, lse_part, stream);
}

}  // namespace vela::cuda::detail
