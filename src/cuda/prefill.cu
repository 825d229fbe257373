// Dispatch point of the prefill forward kernel: dtype x head dim. Causal, sliding window,
// GQA and paged K/V are run-time branches inside the kernel (they only change addresses and
// which tiles get masked), which keeps the instantiation count at four.
#include "cuda/launch.h"
#include "cuda/prefill_kernel.cuh"

namespace vela::cuda::detail {
namespace {

template <class T, int HD>
cudaError_t launch(const PrefillParams& p, cudaStream_t stream) {
    using Shape = PrefillShape<HD>;
    constexpr int smem = Shape::template smem_bytes<T>();
    auto* kernel = &prefill_fwd_kernel<T, HD>;
    if (smem > 48 * 1024) {
        const cudaError_t e =
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
    }
    const dim3 grid((p.max_seqlen_q + Shape::kM - 1) / Shape::kM, p.num_heads, p.batch);
    kernel<<<grid, Shape::kThreads, smem, stream>>>(p);
    return cudaGetLastError();
}

template <class T>
cudaError_t launch_dtype(const PrefillParams& p, cudaStream_t stream) {
    return p.head_dim == 64 ? launch<T, 64>(p, stream) : launch<T, 128>(p, stream);
}

}  // namespace

cudaError_t launch_prefill(const PrefillParams& p, cudaStream_t stream) {
    if (p.max_seqlen_q == 0 || p.batch == 0) return cudaSuccess;
    return p.dtype == Dtype::kF16 ? launch_dtype<__half>(p, stream)
                                  : launch_dtype<__nv_bfloat16>(p, stream);
}

}  // namespace vela::cuda::detail
