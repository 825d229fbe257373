#pragma once
// Hopper (sm_90a) primitives of warp-specialised kernels: shared-memory mbarriers (hand-off of
// buffers between a producer and consumers, with transaction counts for TMA), bulk tensor
// copies (TMA), named barriers over a subset of warps and setmaxnreg (moving registers from the
// producer warpgroup to the consumers). Device code only where VELA_SM90A_DEVICE is defined.
#include <cuda.h>  // CUtensorMap (a plain 128-byte struct; no driver library is linked)

#include <cstdint>

#include "cuda/mma.cuh"
#include "cuda/wgmma.cuh"

namespace vela::cuda::detail {

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
#ifdef VELA_SM90A_DEVICE
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count)
                 : "memory");
#endif
}

// Makes initialised mbarriers visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void mbar_fence_init() {
#ifdef VELA_SM90A_DEVICE
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// Arrives with release semantics: this thread's earlier shared-memory accesses happen before
// anything a thread does after observing the phase flip.
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#ifdef VELA_SM90A_DEVICE
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
#endif
}

// Arrives and announces `bytes` of TMA traffic: the phase completes once they have landed.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#ifdef VELA_SM90A_DEVICE
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
#endif
}

// Waits (acquire) until the phase with the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity) {
#ifdef VELA_SM90A_DEVICE
    asm volatile(
        "{\n.reg .pred done;\n"
        "WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra WAIT_%=;\n}\n" ::"r"(smem_addr(bar)),
        "r"(parity)
        : "memory");
#endif
}

// Copies the box at (c0, c1, c2) of a 3-d tensor map into shared memory at dst; completion is
// counted on `bar` as transaction bytes. Out-of-bounds elements are zero-filled.
__device__ __forceinline__ void tma_load_3d(void* dst, const CUtensorMap* map, int c0, int c1,
                                            int c2, uint64_t* bar) {
#ifdef VELA_SM90A_DEVICE
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_addr(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar))
        : "memory");
#endif
}

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
#ifdef VELA_SM90A_DEVICE
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
#endif
}

// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32):
// sync waits for the count, arrive counts this warp without waiting.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// setmaxnreg: every warp of a warpgroup executes the same one. inc blocks until the CTA's
// register pool (its launch allocation) has the registers, so the counts must add up to it.
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
#ifdef VELA_SM90A_DEVICE
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
#ifdef VELA_SM90A_DEVICE
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

}  // namespace vela::cuda::detail
