#pragma once
// Unpacking of the 6-bit sub-block scales and minimums of Q4_K/Q5_K, shared by the per-ISA
// K-quant kernels. Plain integer code in an anonymous namespace: every kernel file gets its own
// internal copy built with its own flags, so no wide-ISA copy can be linked into another file.
#include <cstdint>
#include <cstring>

namespace vela::cpu {
namespace {

// The 12 scale bytes of a Q4_K/Q5_K super-block hold, for sub-blocks j = 0..7, a 6-bit scale
// and a 6-bit minimum: j < 4 in the low 6 bits of bytes j (scale) and j + 4 (minimum); j >= 4
// in the nibbles of byte j + 4 (scale low, minimum high) with the top 2 bits taken from the
// spare top bits of bytes j - 4 and j. Returns the 8 scales and the 8 minimums, one per byte.
struct Q4KScales {
    uint64_t scales;
    uint64_t mins;
};

[[gnu::always_inline]] inline Q4KScales unpack_q4k_scales(const uint8_t* s) {
    uint32_t u[3];
    std::memcpy(u, s, 12);
    constexpr uint32_t k6 = 0x3F3F3F3F, k4 = 0x0F0F0F0F, k2 = 0x03030303;
    const uint32_t sc_lo = u[0] & k6, mn_lo = u[1] & k6;
    const uint32_t sc_hi = (u[2] & k4) | (((u[0] >> 6) & k2) << 4);
    const uint32_t mn_hi = ((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4);
    return {sc_lo | (uint64_t{sc_hi} << 32), mn_lo | (uint64_t{mn_hi} << 32)};
}

// Q3_K's 16 signed 6-bit scales (12 bytes: low nibbles of sub-blocks 0..7 in bytes 0..7, high
// nibbles of 8..15 in the same bytes, top 2 bits in bit pair s / 4 of byte 8 + s % 4) as the
// bytes of two words, biased by 32 still: sub-block s in byte s % 8 of word s / 8.
struct Q3KScales {
    uint64_t lo, hi;  // sub-blocks 0..7, 8..15
};

[[gnu::always_inline]] inline Q3KScales unpack_q3k_scales(const uint8_t* s) {
    uint32_t u[3];
    std::memcpy(u, s, 12);
    constexpr uint32_t k4 = 0x0F0F0F0F, k2 = 0x03030303;
    const uint32_t s0 = (u[0] & k4) | ((u[2] & k2) << 4);
    const uint32_t s1 = (u[1] & k4) | (((u[2] >> 2) & k2) << 4);
    const uint32_t s2 = ((u[0] >> 4) & k4) | (((u[2] >> 4) & k2) << 4);
    const uint32_t s3 = ((u[1] >> 4) & k4) | (((u[2] >> 6) & k2) << 4);
    return {s0 | (uint64_t{s1} << 32), s2 | (uint64_t{s3} << 32)};
}

}  // namespace
}  // namespace vela::cpu
