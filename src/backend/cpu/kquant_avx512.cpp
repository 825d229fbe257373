// AVX-512 (F/BW/VL/VNNI) K-quant kernels. Built with per-file flags; everything here has
// internal linkage so no AVX-512 code can be picked by the linker for a baseline caller.
//
// One zmm holds 64 unsigned weight codes in element order. vpmaddubsw (u8 x s8, pairs to
// int16; no saturation: codes <= 63, |q| <= 127) then vpdpwssd against the sub-block scales
// spread over the int16 lanes sums code x activation x scale into int32 lanes, across the whole
// super-block. Per super-block and token: one int -> float conversion and one FMA with d * dx;
// the minimums (Q4_K/Q5_K) or the code offset (Q6_K) come from the activation's bsums.
#include <immintrin.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kquant_scales.h"

namespace vela::cpu {
namespace {

#define VELA_INLINE inline __attribute__((always_inline))

VELA_INLINE float half_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

VELA_INLINE __m512i broadcast_32_bytes(const uint8_t* p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Low 256 bits from a, high 256 bits from b.
VELA_INLINE __m512i halves(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

// vpermw indices: int16 lane k of group g takes scale g * 32 / kLanesPer + k / kLanesPer, i.e.
// the scale of the sub-block its pair of codes belongs to (16 lanes per sub-block of 32 for
// Q4_K/Q5_K, 8 lanes per sub-block of 16 for Q6_K).
template <int kLanesPer>
constexpr std::array<std::array<int16_t, 32>, 4> scale_index() {
    std::array<std::array<int16_t, 32>, 4> idx{};
    for (int g = 0; g < 4; ++g) {
        for (int k = 0; k < 32; ++k) idx[g][k] = static_cast<int16_t>((g * 32 + k) / kLanesPer);
    }
    return idx;
}
alignas(64) constexpr auto kIdx32 = scale_index<16>();
alignas(64) constexpr auto kIdx16 = scale_index<8>();

VELA_INLINE __m512i load_idx(const std::array<int16_t, 32>& idx) {
    return _mm512_load_si512(idx.data());
}

VELA_INLINE __m512i act_q(const ActBlockK* x, int g) {
    return _mm512_load_si512(x->q + 64 * g);
}

VELA_INLINE __m256i act_bsums(const ActBlockK* x) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(x->bsums));
}

// Sum over the 4 groups of 64 codes of code x activation x scale, in 16 int32 lanes (two
// independent chains of two, so no vpdpwssd waits on the one before it for long).
VELA_INLINE __m512i dot4(const __m512i (&u)[4], const __m512i (&s)[4], const ActBlockK* x) {
    const __m512i a =
        _mm512_dpwssd_epi32(_mm512_madd_epi16(_mm512_maddubs_epi16(u[0], act_q(x, 0)), s[0]),
                            _mm512_maddubs_epi16(u[1], act_q(x, 1)), s[1]);
    const __m512i b =
        _mm512_dpwssd_epi32(_mm512_madd_epi16(_mm512_maddubs_epi16(u[2], act_q(x, 2)), s[2]),
                            _mm512_maddubs_epi16(u[3], act_q(x, 3)), s[3]);
    return _mm512_add_epi32(a, b);
}

// Q4_K (kFive = false) and Q5_K: group g = sub-blocks 2g (low nibbles of qs[32g..32g+31]) and
// 2g + 1 (high nibbles); Q5_K adds bit 2g / 2g + 1 of qh[l] as bit 4.
template <bool kFive>
struct Q45K {
    using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
    static constexpr size_t kBytes = sizeof(Block);

    template <int C>
    static VELA_INLINE void run(const uint8_t* p, const ActBlockK* const (&x)[C],
                                __m512 (&acc)[C]) {
        const Q4KScales sm = unpack_q4k_scales(p + offsetof(Block, scales));
        const __m512i sc = _mm512_castsi128_si512(
            _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sm.scales))));
        const __m128i m8 = _mm_cvtsi64_si128(static_cast<long long>(sm.mins));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));  // m0 m0 m1 m1 ..
        const float d = half_at(p + offsetof(Block, d));
        const float dmin = half_at(p + offsetof(Block, dmin));
        const __m512i shift = halves(_mm256_setzero_si256(), _mm256_set1_epi16(4));
        const __m512i nibble = _mm512_set1_epi8(0x0F);
        __m512i u[4], s[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) {
            const __m512i v = broadcast_32_bytes(p + offsetof(Block, qs) + 32 * g);
            u[g] = _mm512_and_si512(_mm512_srlv_epi16(v, shift), nibble);
            if constexpr (kFive) {
                const __m512i qh = broadcast_32_bytes(p + offsetof(Block, qh));
                const __m512i bit = halves(_mm256_set1_epi8(static_cast<char>(1 << (2 * g))),
                                           _mm256_set1_epi8(static_cast<char>(1 << (2 * g + 1))));
                u[g] = _mm512_mask_add_epi8(u[g], _mm512_test_epi8_mask(qh, bit), u[g],
                                            _mm512_set1_epi8(16));
            }
            s[g] = _mm512_permutexvar_epi16(load_idx(kIdx32[g]), sc);
        }
        for (int c = 0; c < C; ++c) {
            const __m512i isum = dot4(u, s, x[c]);
            const __m256i msum = _mm256_madd_epi16(act_bsums(x[c]), mins);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * x[c]->d), acc[c]);
            acc[c] = _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(msum)),
                                     _mm512_set1_ps(-dmin * x[c]->d), acc[c]);
        }
    }
};

// Q6_K: group g = elements 64g..64g+63 = half g / 2, low (g even) or high nibbles of its 64 ql
// bytes; the 2 high bits come from qh[32h + l] at bit pair 0/1 (g even) or 2/3 (g odd) for
// l < 32 and l >= 32. Codes are u - 32: the 32 * scale * sum(q) term comes from the bsums.
struct Q6K {
    static constexpr size_t kBytes = sizeof(BlockQ6_K);

    template <int C>
    static VELA_INLINE void run(const uint8_t* p, const ActBlockK* const (&x)[C],
                                __m512 (&acc)[C]) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(BlockQ6_K, scales))));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        const float d = half_at(p + offsetof(BlockQ6_K, d));
        const __m512i nibble = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
        const __m512i up = halves(_mm256_set1_epi16(4), _mm256_set1_epi16(2));
        const __m512i down = halves(_mm256_setzero_si256(), _mm256_set1_epi16(2));
        __m512i u[4], s[4];
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = _mm512_loadu_si512(p + offsetof(BlockQ6_K, ql) + 64 * h);
            const __m512i qh = broadcast_32_bytes(p + offsetof(BlockQ6_K, qh) + 32 * h);
            u[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, nibble),
                                       _mm512_and_si512(_mm512_sllv_epi16(qh, up), top));
            u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), nibble),
                                           _mm512_and_si512(_mm512_srlv_epi16(qh, down), top));
        }
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) s[g] = _mm512_permutexvar_epi16(load_idx(kIdx16[g]), sc);
        for (int c = 0; c < C; ++c) {
            __m512i isum = dot4(u, s, x[c]);
            const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(act_bsums(x[c]), sc16), 5);
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(offset));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * x[c]->d), acc[c]);
        }
    }
};

// 2-bit planes of Q2_K/Q3_K: group g = elements 64g..64g+63 = bit pairs 2 * (g % 2) (first 32)
// and 2 * (g % 2) + 1 (last 32) of qs[32 * (g / 2) + l].
VELA_INLINE void two_bit_codes(const uint8_t* qs, __m512i (&u)[4]) {
    const __m512i three = _mm512_set1_epi8(3);
    const __m512i even = halves(_mm256_setzero_si256(), _mm256_set1_epi16(2));
    const __m512i odd = halves(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        const __m512i v = broadcast_32_bytes(qs + 32 * h);
        u[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(v, even), three);
        u[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(v, odd), three);
    }
}

// Q2_K: w = d * (sc & 15) * u - dmin * (sc >> 4), one scale byte per 16.
struct Q2K {
    static constexpr size_t kBytes = sizeof(BlockQ2_K);

    template <int C>
    static VELA_INLINE void run(const uint8_t* p, const ActBlockK* const (&x)[C],
                                __m512 (&acc)[C]) {
        const __m128i raw =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(BlockQ2_K, scales)));
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0F)));
        const __m256i mins =
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        const float d = half_at(p + offsetof(BlockQ2_K, d));
        const float dmin = half_at(p + offsetof(BlockQ2_K, dmin));
        __m512i u[4], s[4];
        two_bit_codes(p + offsetof(BlockQ2_K, qs), u);
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) s[g] = _mm512_permutexvar_epi16(load_idx(kIdx16[g]), sc);
        for (int c = 0; c < C; ++c) {
            const __m512i isum = dot4(u, s, x[c]);
            const __m256i msum = _mm256_madd_epi16(act_bsums(x[c]), mins);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * x[c]->d), acc[c]);
            acc[c] = _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(msum)),
                                     _mm512_set1_ps(-dmin * x[c]->d), acc[c]);
        }
    }
};

// Q3_K: w = d * scale * (u - 4) with u = 2-bit code + 4 * (bit e / 32 of hmask[e % 32]); the
// 4 * scale * sum(q) term comes from the bsums.
struct Q3K {
    static constexpr size_t kBytes = sizeof(BlockQ3_K);

    template <int C>
    static VELA_INLINE void run(const uint8_t* p, const ActBlockK* const (&x)[C],
                                __m512 (&acc)[C]) {
        const Q3KScales raw = unpack_q3k_scales(p + offsetof(BlockQ3_K, scales));
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(
            _mm_set_epi64x(static_cast<long long>(raw.hi), static_cast<long long>(raw.lo)),
            _mm_set1_epi8(32)));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        const float d = half_at(p + offsetof(BlockQ3_K, d));
        __m512i u[4], s[4];
        two_bit_codes(p + offsetof(BlockQ3_K, qs), u);
        const __m512i hmask = broadcast_32_bytes(p + offsetof(BlockQ3_K, hmask));
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) {
            const __m512i bit = halves(_mm256_set1_epi8(static_cast<char>(1 << (2 * g))),
                                       _mm256_set1_epi8(static_cast<char>(1 << (2 * g + 1))));
            u[g] = _mm512_mask_add_epi8(u[g], _mm512_test_epi8_mask(hmask, bit), u[g],
                                        _mm512_set1_epi8(4));
            s[g] = _mm512_permutexvar_epi16(load_idx(kIdx16[g]), sc);
        }
        for (int c = 0; c < C; ++c) {
            __m512i isum = dot4(u, s, x[c]);
            const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(act_bsums(x[c]), sc16), 2);
            isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(offset));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * x[c]->d), acc[c]);
        }
    }
};

// One weight row against C tokens: each super-block is unpacked once and used C times, the C
// accumulators stay in registers (a 4-row tile's 16 accumulators, with the unpacked codes and
// scales, spill to the stack), and the rows of a tile are walked one after the other.
template <class T, int C>
void row_fixed(const KTileArgs& a, int r) {
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    const uint8_t* w = a.w + r * a.w_stride;
    for (int64_t b = 0; b < a.nb; ++b) {
        const ActBlockK* x[C];
        for (int c = 0; c < C; ++c) x[c] = a.x + c * a.x_stride + b;
        T::template run<C>(w + b * T::kBytes, x, acc);
    }
    for (int c = 0; c < C; ++c) a.y[c * a.ldy + r] = _mm512_reduce_add_ps(acc[c]);
}

template <class T, int C>
void rows_fixed(const KTileArgs& a) {
    for (int r = 0; r < a.nr; ++r) row_fixed<T, C>(a, r);
}

template <class T>
void tile(const KTileArgs& a) {
    switch (a.nc) {
        case 1:
            return rows_fixed<T, 1>(a);
        case 2:
            return rows_fixed<T, 2>(a);
        case 3:
            return rows_fixed<T, 3>(a);
        case 4:
            return rows_fixed<T, 4>(a);
        case 5:
            return rows_fixed<T, 5>(a);
        case 6:
            return rows_fixed<T, 6>(a);
        case 7:
            return rows_fixed<T, 7>(a);
        default:
            return rows_fixed<T, 8>(a);
    }
}

void quantize_act(const float* x, ActBlockK* out, int64_t k) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / kQKK; ++b, x += kQKK) {
        __m512 amax = _mm512_setzero_ps();
        for (int j = 0; j < 16; ++j)
            amax = _mm512_max_ps(amax, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + 16 * j)));
        const float d = _mm512_reduce_max_ps(amax) / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        for (int j = 0; j < 16; ++j) {
            // cvtps rounds half to even under the default MXCSR, like the scalar nearbyint.
            const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), id));
            _mm_store_si128(reinterpret_cast<__m128i*>(out[b].q + 16 * j),
                            _mm512_cvtsepi32_epi8(q));
            out[b].bsums[j] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
        }
        out[b].d = d;
    }
}

}  // namespace

KQuantKernels kquant_kernels_avx512() {
    return {
        8, quantize_act, {tile<Q2K>, tile<Q3K>, tile<Q45K<false>>, tile<Q45K<true>>, tile<Q6K>}};
}

}  // namespace vela::cpu
