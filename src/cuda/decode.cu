// Dispatch point of the decode kernel: KV format x head dim. The query dtype and group size are
// run-time values inside the kernel (one Q load per warp; the mma always carries 8 head rows).
#include "cuda/decode_kernel.cuh"
#include "cuda/launch.h"

namespace vela::cuda::detail {
namespace {

template <KvFormat F, int HD, int kCtasPerSm = 2>
void kernel_of(const void** kernel, size_t* smem) {
    *kernel = reinterpret_cast<const void*>(&decode_split_kernel<F, HD, kCtasPerSm>);
    *smem = DecodeShape<F, HD, kCtasPerSm>::kSmem;
}

// 8-bit KV at 2 CTAs per SM with 5-stage rings, or at 3 with 4 stages. H200 (run s4-9, both in
// one call): 3 CTAs are 5-11% faster from batch 8 at 16k-32k and 2-22% slower at <= 4k and at
// batch 1; H100 (runs s4-3 / s4-4): 3 CTAs within 3% at 16k-32k, up to 13% slower below. Since
// the L2 prefetch (68f4f82), 3 CTAs are 1.05-1.25x at batch 1 with <= 4k keys and 0.93-0.95x
// at 16k-32k (H100, run s8-9).
bool deep_8bit(const DecodeParams& p) {
    return (p.batch >= 8 && p.max_seqlen_k >= 16384) || (p.batch == 1 && p.max_seqlen_k <= 4096);
}

template <KvFormat F, int HD>
void kernel_8bit(const DecodeParams& p, const void** kernel, size_t* smem) {
    return deep_8bit(p) ? kernel_of<F, HD, 3>(kernel, smem) : kernel_of<F, HD, 2>(kernel, smem);
}

// The split kernel instance for p (format x head dim) and its dynamic shared-memory bytes.
void split_kernel(const DecodeParams& p, const void** kernel, size_t* smem) {
    const bool hd64 = p.head_dim == 64;
    switch (p.kv_format) {
        case KvFormat::kF16:
            return hd64 ? kernel_of<KvFormat::kF16, 64>(kernel, smem)
                        : kernel_of<KvFormat::kF16, 128>(kernel, smem);
        case KvFormat::kBf16:
            return hd64 ? kernel_of<KvFormat::kBf16, 64>(kernel, smem)
                        : kernel_of<KvFormat::kBf16, 128>(kernel, smem);
        case KvFormat::kInt8:
            return hd64 ? kernel_8bit<KvFormat::kInt8, 64>(p, kernel, smem)
                        : kernel_8bit<KvFormat::kInt8, 128>(p, kernel, smem);
        case KvFormat::kFp8E4M3:
            return hd64 ? kernel_8bit<KvFormat::kFp8E4M3, 64>(p, kernel, smem)
                        : kernel_8bit<KvFormat::kFp8E4M3, 128>(p, kernel, smem);
    }
}

}  // namespace

// Raising the shared-memory limit is a driver call that costs about as much as a launch, so it
// happens here, once per plan, not in every launch_decode.
int decode_prepare(const DecodeParams& p) {
    const void* kernel = nullptr;
    size_t smem = 0;
    split_kernel(p, &kernel, &smem);
    int n = 0;
    if (kernel == nullptr ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kDecodeThreads, smem) !=
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
                  o_part + static_cast<size_t>(p.batch) * p.num_heads * p.num_splits * p.head_dim};
    const void* kernel = nullptr;
    size_t smem = 0;
    split_kernel(p, &kernel, &smem);
    int dev = 0, major = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(p.num_splits, p.num_kv_heads, p.batch);
    cfg.blockDim = dim3(kDecodeThreads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = major >= 9 ? 1 : 0;
    void* args[] = {const_cast<DecodeParams*>(&p), &split_len, &out};
    return cudaLaunchKernelExC(&cfg, kernel, args);
}

}  // namespace vela::cuda::detail
