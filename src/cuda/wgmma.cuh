#pragma once
// Hopper (sm_90a) warpgroup MMA: shared-memory matrix descriptors for the 128-byte swizzled
// layout, the wgmma fence / commit / wait protocol and the two instruction forms the prefill
// kernel uses. Only compiled into sm_90a code (callers guard with VELA_SM90A_DEVICE).
//
// Swizzled tile layout (what the loaders write and the descriptors describe): a tile of R rows
// x C 16-bit columns is stored as C/64 column "atoms", each R rows of 128 bytes; the 16-byte
// chunk c of row r sits at chunk position c ^ (r % 8). Atoms start on 1024-byte boundaries.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/mma.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define VELA_SM90A_DEVICE 1
#endif

namespace vela::cuda::detail {

// Byte offset of 16-byte chunk `chunk` (of C/8 per row) of row r in a swizzled R-row tile.
__device__ __forceinline__ int swizzled_offset(int rows, int r, int chunk) {
    return (chunk / 8) * rows * 128 + r * 128 + ((chunk % 8) ^ (r % 8)) * 16;
}

// Copies rows [0, ROWS) of a [*, HD] 16-bit matrix into a swizzled tile with cp.async; rows past
// `valid_rows` are zero-filled. Each thread copies the same 16-byte column chunk of every
// kPass-th row, so its shared-memory address only advances by a constant.
template <int HD, int ROWS, int THREADS, class RowPtr>
__device__ __forceinline__ void load_swizzled(unsigned char* dst, int valid_rows, RowPtr row_ptr) {
    constexpr int kChunks = HD / 8, kPass = THREADS / kChunks;
    static_assert(THREADS % kChunks == 0 && kPass % 8 == 0);
    const int c = threadIdx.x % kChunks, r0 = threadIdx.x / kChunks;
    unsigned char* d = dst + swizzled_offset(ROWS, r0, c);  // rows r0 + j * kPass: same swizzle
#pragma unroll
    for (int j = 0; j < (ROWS + kPass - 1) / kPass; ++j) {
        const int r = r0 + j * kPass;
        if (ROWS % kPass != 0 && r >= ROWS) break;
        const bool ok = r < valid_rows;
        unsigned char* dj = d + j * kPass * 128;
        cp_async_16(dj, ok ? static_cast<const void*>(row_ptr(r) + c * 8) : dj, ok);
    }
}

// Descriptor of a 128-byte-swizzled operand at `p`. K-major operands (rows of K contiguous):
// 8-row groups `sbo` bytes apart, `lbo` unused. MN-major operands (transposed B): `lbo` bytes
// between 64-column atoms along N, `sbo` bytes between 8-row groups along K.
__device__ __forceinline__ uint64_t sw128_desc(const void* p, uint32_t lbo, uint32_t sbo) {
    const uint64_t addr = smem_addr(p);
    return ((addr & 0x3FFFF) >> 4) | (uint64_t{(lbo >> 4) & 0x3FFF} << 16) |
           (uint64_t{(sbo >> 4) & 0x3FFF} << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void wgmma_fence() {
#ifdef VELA_SM90A_DEVICE
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#ifdef VELA_SM90A_DEVICE
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#ifdef VELA_SM90A_DEVICE
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Makes writes by ordinary stores and cp.async visible to the tensor cores' async proxy.
__device__ __forceinline__ void fence_proxy_async() {
#ifdef VELA_SM90A_DEVICE
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Keeps the compiler from moving accesses of registers a wgmma reads or writes across its
// issue and wait.
template <int NT>
__device__ __forceinline__ void fence_regs(float (&d)[NT][4]) {
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[t][e])::"memory");
}

template <int NT>
__device__ __forceinline__ void fence_regs(uint32_t (&a)[NT][4]) {
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[t][e])::"memory");
}

#define VELA_D4(t) "+f"(d[t][0]), "+f"(d[t][1]), "+f"(d[t][2]), "+f"(d[t][3])
#define VELA_D32 \
    VELA_D4(0), VELA_D4(1), VELA_D4(2), VELA_D4(3), VELA_D4(4), VELA_D4(5), VELA_D4(6), VELA_D4(7)
#define VELA_D64                                                                                \
    VELA_D32, VELA_D4(8), VELA_D4(9), VELA_D4(10), VELA_D4(11), VELA_D4(12), VELA_D4(13), \
        VELA_D4(14), VELA_D4(15)
#define VELA_R32                                                                              \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, " \
    "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define VELA_R64                                                                              \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, " \
    "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "  \
    "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "  \
    "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
// D (+)= A(smem, K-major) * B(smem, K-major)^T; operand numbers follow the accumulators.
#define VELA_WGMMA_SS(N, TY, R, OPS, IA, IB, IS)                                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" IS ", 0;\n"                       \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " R     \
                 ", %" IA ", %" IB ", p, 1, 1, 0, 0;\n}\n"                              \
                 : OPS                                                                  \
                 : "l"(a), "l"(b), "r"(accumulate))
// D += A(registers) * B(smem, MN-major i.e. transposed).
#define VELA_WGMMA_RS(N, TY, R, OPS, I0, I1, I2, I3, IB, IS)                              \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" IS ", 0;\n"                       \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " R     \
                 ", {%" I0 ", %" I1 ", %" I2 ", %" I3 "}, %" IB ", p, 1, 1, 1;\n}\n"    \
                 : OPS                                                                  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1))

// Warpgroup D[64 x N] (+)= A[64 x 16] * B[N x 16]^T, both from shared memory; accumulate == 0
// overwrites D. Fragment d[0 .. N/8)[4] has the mma.sync m16n8 accumulator layout per warp.
template <class T, int N>
__device__ __forceinline__ void wgmma_ss(float (*d)[4], uint64_t a, uint64_t b, int accumulate) {
#ifdef VELA_SM90A_DEVICE
    static_assert(N == 64 || N == 128);
    if constexpr (std::is_same_v<T, __half>) {
        if constexpr (N == 64) {
            VELA_WGMMA_SS(64, "f16", VELA_R32, VELA_D32, "32", "33", "34");
        } else {
            VELA_WGMMA_SS(128, "f16", VELA_R64, VELA_D64, "64", "65", "66");
        }
    } else {
        if constexpr (N == 64) {
            VELA_WGMMA_SS(64, "bf16", VELA_R32, VELA_D32, "32", "33", "34");
        } else {
            VELA_WGMMA_SS(128, "bf16", VELA_R64, VELA_D64, "64", "65", "66");
        }
    }
#endif
}

// Warpgroup D[64 x N] += A[64 x 16] * B[16 x N]: A from registers (the m16n8k16 A fragment
// layout per warp), B from shared memory stored N-contiguous (MN-major).
template <class T, int N>
__device__ __forceinline__ void wgmma_rs(float (*d)[4], const uint32_t (&a)[4], uint64_t b) {
#ifdef VELA_SM90A_DEVICE
    static_assert(N == 64 || N == 128);
    if constexpr (std::is_same_v<T, __half>) {
        if constexpr (N == 64) {
            VELA_WGMMA_RS(64, "f16", VELA_R32, VELA_D32, "32", "33", "34", "35", "36", "37");
        } else {
            VELA_WGMMA_RS(128, "f16", VELA_R64, VELA_D64, "64", "65", "66", "67", "68", "69");
        }
    } else {
        if constexpr (N == 64) {
            VELA_WGMMA_RS(64, "bf16", VELA_R32, VELA_D32, "32", "33", "34", "35", "36", "37");
        } else {
            VELA_WGMMA_RS(128, "bf16", VELA_R64, VELA_D64, "64", "65", "66", "67", "68", "69");
        }
    }
#endif
}

// D (+)= A * B with both operands in shared memory stored MN-major (A: M contiguous, i.e. the
// transpose of a K-major A; B: N contiguous, as in wgmma_rs). The backward's dQ = dS K reads dS
// from its key-major (dS^T) staging tile this way. Descriptors as for wgmma_rs's B.
#define VELA_WGMMA_SS_MN(N, TY, R, OPS, IA, IB, IS)                                      \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" IS ", 0;\n"                       \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " R     \
                 ", %" IA ", %" IB ", p, 1, 1, 1, 1;\n}\n"                              \
                 : OPS                                                                  \
                 : "l"(a), "l"(b), "r"(accumulate))
template <class T, int N>
__device__ __forceinline__ void wgmma_ss_mn(float (*d)[4], uint64_t a, uint64_t b,
                                            int accumulate) {
#ifdef VELA_SM90A_DEVICE
    static_assert(N == 64 || N == 128);
    if constexpr (std::is_same_v<T, __half>) {
        if constexpr (N == 64) {
            VELA_WGMMA_SS_MN(64, "f16", VELA_R32, VELA_D32, "32", "33", "34");
        } else {
            VELA_WGMMA_SS_MN(128, "f16", VELA_R64, VELA_D64, "64", "65", "66");
        }
    } else {
        if constexpr (N == 64) {
            VELA_WGMMA_SS_MN(64, "bf16", VELA_R32, VELA_D32, "32", "33", "34");
        } else {
            VELA_WGMMA_SS_MN(128, "bf16", VELA_R64, VELA_D64, "64", "65", "66");
        }
    }
#endif
}

#undef VELA_WGMMA_SS_MN
#undef VELA_WGMMA_RS
#undef VELA_WGMMA_SS
#undef VELA_R64
#undef VELA_R32
#undef VELA_D64
#undef VELA_D32
#undef VELA_D4

}  // namespace vela::cuda::detail
