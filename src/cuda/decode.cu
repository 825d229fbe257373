// Dispatch point of the decode kernels: KV format x head dim x group for the split kernel, output
// dtype for the combine kernel. The query dtype is a run-time branch (one load per CTA).
#include "cuda/decode_kernel.cuh"
#include "cuda/launch.h"

namespace vela::cuda::detail {
namespace {

template <KvFormat F, int HD, int G>
cudaError_t launch_split(const DecodeParams& p, int split_len, float* o_part, float* lse_part,
                         cudaStream_t stream) {
    auto* kernel = &decode_split_kernel<F, HD, G>;
    const size_t smem = decode_smem_bytes(p, split_len);
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(
            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (e != cudaSuccess) return e;
    }
    const dim3 grid(p.num_splits, p.num_kv_heads, p.batch);
    kernel<<<grid, kDecodeThreads, smem, stream>>>(p, split_len, o_part, lse_part);
    return cudaGetLastError();
}

// Group sizes round up to 1, 4 or 8 register-resident query heads: MHA keeps its single-head
// kernel, common GQA groups (2-4, e.g. SmolLM2's 3) share one, 5-8 the largest.
template <KvFormat F, int HD>
cudaError_t launch_group(const DecodeParams& p, int split_len, float* o_part, float* lse_part,
                         cudaStream_t stream) {
    const int group = p.num_heads / p.num_kv_heads;
    if (group == 1) return launch_split<F, HD, 1>(p, split_len, o_part, lse_part, stream);
    if (group <= 4) return launch_split<F, HD, 4>(p, split_len, o_part, lse_part, stream);
    return launch_split<F, HD, 8>(p, split_len, o_part, lse_part, stream);
}

template <KvFormat F>
cudaError_t launch_format(const DecodeParams& p, int split_len, float* o_part, float* lse_part,
                          cudaStream_t stream) {
    return p.head_dim == 64 ? launch_group<F, 64>(p, split_len, o_part, lse_part, stream)
                            : launch_group<F, 128>(p, split_len, o_part, lse_part, stream);
}

}  // namespace

size_t decode_smem_bytes(const DecodeParams& p, int split_len) {
    const int group = p.num_heads / p.num_kv_heads;
    return sizeof(float) * static_cast<size_t>(group) * (split_len + p.head_dim);
}

cudaError_t launch_decode(const DecodeParams& p, int split_len, cudaStream_t stream) {
    if (p.batch == 0) return cudaSuccess;
    auto* o_part = static_cast<float*>(p.workspace);
    float* lse_part =
        o_part + static_cast<size_t>(p.batch) * p.num_heads * p.num_splits * p.head_dim;
    cudaError_t e = cudaSuccess;
    switch (p.kv_format) {
        case KvFormat::kF16:
            e = launch_format<KvFormat::kF16>(p, split_len, o_part, lse_part, stream);
            break;
        case KvFormat::kBf16:
            e = launch_format<KvFormat::kBf16>(p, split_len, o_part, lse_part, stream);
            break;
        case KvFormat::kInt8:
            e = launch_format<KvFormat::kInt8>(p, split_len, o_part, lse_part, stream);
            break;
        case KvFormat::kFp8E4M3:
            e = launch_format<KvFormat::kFp8E4M3>(p, split_len, o_part, lse_part, stream);
            break;
    }
    if (e != cudaSuccess) return e;
    const dim3 grid(p.batch * p.num_heads);
    if (p.dtype == Dtype::kF16)
        decode_combine_kernel<__half>
            <<<grid, p.head_dim, 0, stream>>>(p, p.num_splits, o_part, lse_part);
    else
        decode_combine_kernel<__nv_bfloat16>
            <<<grid, p.head_dim, 0, stream>>>(p, p.num_splits, o_part, lse_part);
    return cudaGetLastError();
}

}  // namespace vela::cuda::detail
