#pragma once
// n / d and n % d for 0 <= n < 2^31 by a multiply-high and a shift instead of the ~20-instruction
// integer division (Granlund and Montgomery, "Division by invariant integers using
// multiplication", 1994): for l = ceil(log2 d) and m = floor(2^32 (2^l - d) / d) + 1,
// n / d = (umulhi(n, m) + n) >> l. Built once per thread, used per key for block-table lookups.
// Host-callable too, so it is tested without a GPU.
#include <cstdint>

#if defined(__CUDACC__)
#define VELA_HOST_DEVICE __host__ __device__
#else
#define VELA_HOST_DEVICE
#endif

namespace vela::cuda::detail {

struct FastDivmod {
    int d;
    uint32_t mul, shift;

    VELA_HOST_DEVICE explicit FastDivmod(int divisor) : d(divisor) {
#if defined(__CUDA_ARCH__)
        shift = 32 - __clz(static_cast<uint32_t>(divisor) - 1);  // ceil(log2 d)
#else
        shift = 0;
        while ((uint64_t{1} << shift) < static_cast<uint64_t>(divisor)) ++shift;
#endif
        mul = static_cast<uint32_t>((((uint64_t{1} << shift) - divisor) << 32) / divisor) + 1;
    }
    VELA_HOST_DEVICE int div(int n) const {
        const auto u = static_cast<uint32_t>(n);
#if defined(__CUDA_ARCH__)
        const uint32_t hi = __umulhi(u, mul);
#else
        const auto hi = static_cast<uint32_t>((uint64_t{u} * mul) >> 32);
#endif
        return static_cast<int>((hi + u) >> shift);
    }
    VELA_HOST_DEVICE int mod(int n) const { return n - div(n) * d; }
};

}  // namespace vela::cuda::detail
