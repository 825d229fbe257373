// Launcher of the mma.sync prefill forward kernel, one instance per dtype x head dim. Causal,
// sliding window, GQA, token trees and paged K/V in every format are run-time branches inside
// the kernel (they only change addresses, loads and which tiles get masked), which keeps the
// instance count at six. At head dim 256 (Gemma 3) a warp's 16 x 256 output accumulator and Q
// fragments take most of its registers: the instance serves what the wgmma kernel does not read
// (8-bit and Q4 paged K/V, token trees) and builds without sm_90a.
#include "cuda/dispatch.cuh"
#include "cuda/launch.h"
#include "cuda/prefill_kernel.cuh"

namespace vela::cuda::detail {
namespace {

template <class T, int HD>
cudaError_t launch(const PrefillParams& p, cudaStream_t stream) {
    using Shape = PrefillShape<HD>;
    const bool q4 = p.paged.block_table != nullptr && p.kv_format == KvFormat::kQ4;
    const int smem = q4 ? Shape::template q4_smem_bytes<T>() : Shape::template smem_bytes<T>();
    constexpr auto kernel = &prefill_fwd_kernel<T, HD>;
    if (const cudaError_t e = allow_dynamic_smem<kernel>(smem); e != cudaSuccess) return e;
    const dim3 grid((p.max_seqlen_q + Shape::kM - 1) / Shape::kM, p.num_heads, p.batch);
    kernel<<<grid, Shape::kThreads, smem, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace

cudaError_t launch_prefill(const PrefillParams& p, cudaStream_t stream) {
    if (p.max_seqlen_q == 0 || p.batch == 0) return cudaSuccess;
    return dispatch_dtype<PrefillHeadDims>(p.dtype, p.head_dim, [&](auto t, auto hd) {
        return launch<typename decltype(t)::type, decltype(hd)::value>(p, stream);
    });
}

}  // namespace vela::cuda::detail
