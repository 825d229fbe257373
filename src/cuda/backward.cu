// Launcher of the backward: preprocess, one dK/dV kernel (mma.sync, or the Hopper wgmma one in
// backward_sm90.cu), dQ convert; instances per dtype x head dim. Causal, window and GQA are
// run-time branches inside the kernels, as in the forward.
#include "cuda/backward_kernel.cuh"
#include "cuda/dispatch.cuh"
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
        constexpr auto kernel = &bwd_dkdv_kernel<T, HD>;
        e = allow_dynamic_smem<kernel>(smem);
        if (e != cudaSuccess) return e;
        const dim3 grid((p.max_seqlen_k + Shape::kN - 1) / Shape::kN, p.num_kv_heads, p.batch);
        kernel<<<grid, Shape::kThreads, smem, stream>>>(p, dq_acc, d_sum);
    }
    if (items > 0) {
        bwd_convert_dq_kernel<T, HD><<<(vec_threads + 255) / 256, 256, 0, stream>>>(p, dq_acc);
    }
    return cudaGetLastError();
}

}  // namespace

cudaError_t launch_backward(const BackwardParams& p, bool wgmma, cudaStream_t stream) {
    if (p.batch == 0) return cudaSuccess;
    return dispatch_dtype<BackwardHeadDims>(p.dtype, p.head_dim, [&](auto t, auto hd) {
        return launch<typename decltype(t)::type, decltype(hd)::value>(p, wgmma, stream);
    });
}

}  // namespace vela::cuda::detail
