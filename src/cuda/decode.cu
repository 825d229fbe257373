// Launcher of the decode kernel: instances per KV format x head dim (dispatch.cuh) and, for 8-bit
// KV, CTAs per SM; one more each for several query rows a sequence (16 mma columns). The query dtype and group size are run-time values inside the kernel (one Q
// load per warp; the mma always carries 8 head rows).
#include "cuda/decode_kernel.cuh"
#include "cuda/dispatch.cuh"
#include "cuda/launch.h"

namespace vela::cuda::detail {
namespace {

// 8-bit KV runs at 2 CTAs per SM with 5-stage rings, or at 3 with 4 stages where that measured
// faster. H200 (both in one call): 3 CTAs are 5-11% faster from batch 8 at 16k-32k keys and 2-22%
// slower at <= 4k and at batch 1. H100: 3 CTAs within 3% at 16k-32k, up to 13% slower below; with
// the first tiles prefetched into L2 during the launch wait (metadata_ready), 3 CTAs are
// 1.05-1.25x at batch 1 with <= 4k keys and 0.93-0.95x at 16k-32k.
bool deep_8bit(const DecodeParams& p) {
    return (p.batch >= 8 && p.max_seqlen_k >= 16384) || (p.batch == 1 && p.max_seqlen_k <= 4096);
}

// The split kernel instance a call runs, with its dynamic shared memory already allowed.
struct DecodeInstance {
    const void* kernel = nullptr;
    size_t smem = 0;
};

template <KvFormat F, int HD, int kCtasPerSm, int kQT = 1>
cudaError_t prepare(DecodeInstance& out) {
    constexpr auto kernel = &decode_split_kernel<F, HD, kCtasPerSm, kQT>;
    constexpr int smem = DecodeShape<F, HD, kCtasPerSm>::kSmem;
    out = {reinterpret_cast<const void*>(kernel), smem};
    return allow_dynamic_smem<kernel>(smem);
}

cudaError_t instance_for(const DecodeParams& p, DecodeInstance& out) {
    return dispatch_kv_format<DecodeHeadDims>(p.kv_format, p.head_dim, [&](auto kv, auto hd) {
        constexpr KvFormat F = decltype(kv)::value;
        constexpr int HD = decltype(hd)::value;
        if constexpr (F == KvFormat::kQ4) {  // one row a sequence (api.cpp refuses more)
            return p.cu_seqlens_q != nullptr ? cudaErrorInvalidValue : prepare<F, HD, 2>(out);
        }
        // Several rows a sequence: 16 columns (twice the accumulators) at 2 CTAs per SM.
        if (p.cu_seqlens_q != nullptr) return prepare<F, HD, 2, 2>(out);
        if constexpr (DecodeShape<F, HD>::kQuant) {
            if (deep_8bit(p)) return prepare<F, HD, 3>(out);
        }
        return prepare<F, HD, 2>(out);
    });
}

}  // namespace

int decode_prepare(const DecodeParams& p) {
    DecodeInstance inst;
    int n = 0;
    if (instance_for(p, inst) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, inst.kernel, kDecodeThreads, inst.smem) !=
            cudaSuccess)
        return 1;
    return n > 0 ? n : 1;
}

// One launch per call: the combine runs in the split kernel's last CTA of each (sequence, kv
// head). On sm_90+ it is a programmatic dependent launch (see decode_split_kernel).
cudaError_t launch_decode(const DecodeParams& p, int split_len, cudaStream_t stream) {
    if (p.batch == 0) return cudaSuccess;
    auto* base = static_cast<char*>(p.workspace);
    auto* o_part = reinterpret_cast<float*>(base + decode_counter_bytes(p));
    DecodeOut out{reinterpret_cast<unsigned*>(base), o_part,
                  o_part + static_cast<size_t>(decode_slots(p)) * p.num_splits * p.head_dim};
    DecodeInstance inst;
    if (const cudaError_t e = instance_for(p, inst); e != cudaSuccess) return e;
    int dev = 0, major = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(p.num_splits, p.num_kv_heads * decode_row_chunks(p), p.batch);
    cfg.blockDim = dim3(kDecodeThreads);
    cfg.dynamicSmemBytes = inst.smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = major >= 9 ? 1 : 0;
    void* args[] = {const_cast<DecodeParams*>(&p), &split_len, &out};
    return cudaLaunchKernelExC(&cfg, inst.kernel, args);
}

}  // namespace vela::cuda::detail
