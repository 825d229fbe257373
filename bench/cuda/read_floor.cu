#include <cstdint>

#include "read_floor.h"

namespace vela::bench {
namespace {

constexpr int kThreads = 256, kCtasPerSm = 4, kUnroll = 8;

// Grid-stride streaming read, kUnroll 16-byte loads of each buffer in flight per thread. The XOR
// of everything read decides a store that never happens in practice, so no load is dead code.
__global__ void __launch_bounds__(kThreads)
    read_kernel(const uint4* __restrict__ k, const uint4* __restrict__ v, size_t n,
                unsigned* sink) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;");
#endif
    const size_t stride = size_t{gridDim.x} * kThreads;
    size_t i = size_t{blockIdx.x} * kThreads + threadIdx.x;
    unsigned acc = 0;
    for (; i < n; i += kUnroll * stride) {  // every load of a pass issued before any is used
        uint4 a[kUnroll], b[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const bool in = i + u * stride < n;
            a[u] = in ? __ldcs(k + i + u * stride) : uint4{};
            b[u] = in ? __ldcs(v + i + u * stride) : uint4{};
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
            acc ^= a[u].x ^ a[u].y ^ a[u].z ^ a[u].w ^ b[u].x ^ b[u].y ^ b[u].z ^ b[u].w;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

}  // namespace

cudaError_t launch_read_floor(const void* k, const void* v, size_t bytes, int device_sm_count,
                              cudaStream_t stream) {
    static unsigned* sink = nullptr;
    if (sink == nullptr) {
        if (const cudaError_t e = cudaMalloc(&sink, sizeof(unsigned)); e != cudaSuccess) return e;
    }
    int dev = 0, major = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    const size_t n = bytes / 16;
    const size_t want = (n + kThreads - 1) / kThreads;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(want < size_t(device_sm_count) * kCtasPerSm
                                                 ? (want > 0 ? want : 1)
                                                 : size_t(device_sm_count) * kCtasPerSm));
    cfg.blockDim = dim3(kThreads);
    cfg.stream = stream;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = major >= 9 ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, read_kernel, static_cast<const uint4*>(k),
                              static_cast<const uint4*>(v), n, sink);
}

}  // namespace vela::bench
