// Dispatch point of the backward kernels: dtype x head dim, and which dK/dV kernel (mma.sync or
// the Hopper wgmma one in backward_sm90.cu). Causal, window and GQA are run-time branches inside
// the kernels, as in the forward.
#include "cuda/backward_kernel.cuh"
#include "cuda/launch.h"

namespace vela::cuda::detail {
namespace {

template <class T, int HD>
cudaError_t launch(const BackwardParams& p, bool wgmma, cudaStream_t stream) {
    using Shape = BackwardShape<HD>;
    auto* dq_acc = static_cast<float*>(p.workspace);
    const int64_t items = static_cast<int64_t>(p.total_q) * p.num_heads;
    float* d_sum = dq_acc + items * HD;
    const int64_t vec_threads = items * (HD / 8);  // aux kernels: 8 elements a thread
    if (items > 0) {
        bwd_preprocess_kernel<T, HD>
            <<<(vec_threads + 255) / 256, 256, 0, stream>>>(p, dq_acc, d_sum);
    }
    // The wgmma kernel declines (cudaErrorNotSupported) tensors that TMA cannot map.
    cudaError_t e = cudaErrorNotSupported;
    if (p.max_seqlen_k > 0 && wgmma) e = launch_backward_dkdv_sm90(p, dq_acc, d_sum, stream);
    if (e != cudaSuccess && e != cudaErrorNotSupported) return e;
    if (e == cudaErrorNotSupported && p.max_seqlen_k > 0) {
        constexpr int smem = Shape::template smem_bytes<T>();
        auto* kernel = &bwd_dkdv_kernel<T, HD>;
        if (smem > 48 * 1024) {
            e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
            if (e != cudaSuccess) return e;
        }
        const dim3 grid((p.max_seqlen_k + Shape::kN - 1) / Shape::kN, p.num_kv_heads, p.batch);
        kernel<<<grid, Shape::kThreads, smem, stream>>>(p, dq_acc, d_sum);
    }
    if (items > 0) {
        bwd_convert_dq_kernel<T, HD><<<(vec_threads + 255) / 256, 256, 0, stream>>>(p, dq_acc);
    }
    return cudaGetLastError();
}

template <class T>
cudaError_t launch_dtype(const BackwardParams& p, bool wgmma, cudaStream_t stream) {
    return p.head_dim == 64 ? launch<T, 64>(p, wgmma, stream) : launch<T, 128>(p, wgmma, stream);
}

}  // namespace

cudaError_t launch_backward(const BackwardParams& p, bool wgmma, cudaStream_t stream) {
    if (p.batch == 0) return cudaSuccess;
    return p.dtype == Dtype::kF16 ? launch_dtype<__half>(p, wgmma, stream)
                                  : launch_dtype<__nv_bfloat16>(p, wgmma, stream);
}

}  // namespace vela::cuda::detail
