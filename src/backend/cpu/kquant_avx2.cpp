// AVX2 + FMA + F16C K-quant kernels. Built with per-file flags; everything here has internal
// linkage so no AVX2 code can be picked by the linker for a baseline caller.
//
// One ymm holds 32 unsigned weight codes in element order. maddubs (u8 x s8, pairs to int16; no
// saturation: codes <= 63, |q| <= 127) then madd against the sub-block scale in every int16
// lane gives int32 lanes that add up over the whole super-block. Per super-block and token: one
// int -> float conversion and one FMA with d * dx; the minimums (Q4_K/Q5_K) or the code offset
// (Q6_K) come from the activation's bsums.
#include <immintrin.h>

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

VELA_INLINE __m256i load32(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// 32 activations of chunk j (elements 32j..32j+31).
VELA_INLINE __m256i act_q(const ActBlockK* x, int j) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(x->q + 32 * j));
}

VELA_INLINE __m256i act_bsums(const ActBlockK* x) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(x->bsums));
}

// dot of 32 codes with 32 activations, scaled per int16 lane: 8 int32 partial sums.
VELA_INLINE __m256i scaled_dot(__m256i u, __m256i q, __m256i scale) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), scale);
}

// Q4_K (kFive = false) and Q5_K: chunk 2g = low nibbles of qs[32g..32g+31], 2g + 1 = high
// nibbles; Q5_K adds bit j of qh[l] as bit 4 of chunk j.
template <bool kFive>
struct Q45K {
    using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
    static constexpr size_t kBytes = sizeof(Block);

    template <int C>
    static VELA_INLINE void run(const uint8_t* p, const ActBlockK* const (&x)[C],
                                __m256 (&acc)[C]) {
        const Q4KScales sm = unpack_q4k_scales(p + offsetof(Block, scales));
        const __m128i m8 = _mm_cvtsi64_si128(static_cast<long long>(sm.mins));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));  // m0 m0 m1 m1 ..
        const __m256i nibble = _mm256_set1_epi8(0x0F);
        __m256i qh = _mm256_setzero_si256();
        if constexpr (kFive) qh = load32(p + offsetof(Block, qh));
        __m256i isum[C];
        for (int c = 0; c < C; ++c) isum[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) {
            const __m256i v = load32(p + offsetof(Block, qs) + 32 * g);
            __m256i lo = _mm256_and_si256(v, nibble);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
            if constexpr (kFive) {
                const __m256i b0 = _mm256_set1_epi8(static_cast<char>(1 << (2 * g)));
                const __m256i b1 = _mm256_set1_epi8(static_cast<char>(1 << (2 * g + 1)));
                const __m256i sixteen = _mm256_set1_epi8(16);
                lo = _mm256_or_si256(
                    lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0), sixteen));
                hi = _mm256_or_si256(
                    hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), sixteen));
            }
            const __m256i s_lo =
                _mm256_set1_epi16(static_cast<short>((sm.scales >> (16 * g)) & 0xFF));
            const __m256i s_hi =
                _mm256_set1_epi16(static_cast<short>((sm.scales >> (16 * g + 8)) & 0xFF));
            for (int c = 0; c < C; ++c) {
                isum[c] = _mm256_add_epi32(
                    isum[c], _mm256_add_epi32(scaled_dot(lo, act_q(x[c], 2 * g), s_lo),
                                              scaled_dot(hi, act_q(x[c], 2 * g + 1), s_hi)));
            }
        }
        const float d = half_at(p + offsetof(Block, d));
        const float dmin = half_at(p + offsetof(Block, dmin));
        for (int c = 0; c < C; ++c) {
            const __m256i msum = _mm256_madd_epi16(act_bsums(x[c]), mins);
            acc[c] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_set1_ps(d * x[c]->d), acc[c]);
            acc[c] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(-dmin * x[c]->d), acc[c]);
        }
    }
};

// Scales of the 16-element sub-blocks 2j (low 128-bit lane) and 2j + 1 (high lane) in every
// int16 lane, from 16 int16 scales: a dword broadcast of the pair, then one int16 per lane.
VELA_INLINE __m256i scale_pair(__m256i sc16, int j) {
    const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2,
                                          3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    return _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(j)), pick);
}

// Q2_K/Q3_K: chunk 4h + t (elements 128h + 32t ..) is bit pair t of qs[32h + l]; Q3_K adds
// 4 * bit (4h + t) of hmask[l]. Scales per 16: Q2_K's low nibbles (its minimums the high ones),
// Q3_K's signed 6-bit ones with the code offset of 4 taken from the bsums.
template <bool kThree>
struct Q23K {
    using Block = std::conditional_t<kThree, BlockQ3_K, BlockQ2_K>;
    static constexpr size_t kBytes = sizeof(Block);

    template <int C>
    static VELA_INLINE void run(const uint8_t* p, const ActBlockK* const (&x)[C],
                                __m256 (&acc)[C]) {
        __m256i sc16, mins = _mm256_setzero_si256(), hmask = _mm256_setzero_si256();
        if constexpr (kThree) {
            const Q3KScales raw = unpack_q3k_scales(p + offsetof(Block, scales));
            sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(
                _mm_set_epi64x(static_cast<long long>(raw.hi), static_cast<long long>(raw.lo)),
                _mm_set1_epi8(32)));
            hmask = load32(p + offsetof(Block, hmask));
        } else {
            const __m128i raw =
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(Block, scales)));
            const __m128i low4 = _mm_set1_epi8(0x0F);
            sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, low4));
            mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), low4));
        }
        const __m256i three = _mm256_set1_epi8(3);
        __m256i isum[C];
        for (int c = 0; c < C; ++c) isum[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m256i v = load32(p + offsetof(Block, qs) + 32 * h);
#pragma GCC unroll 4
            for (int t = 0; t < 4; ++t) {
                const int j = 4 * h + t;
                __m256i u = _mm256_and_si256(_mm256_srli_epi16(v, 2 * t), three);
                if constexpr (kThree) {
                    const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << j));
                    u = _mm256_or_si256(
                        u, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hmask, bit), bit),
                                            _mm256_set1_epi8(4)));
                }
                const __m256i s = scale_pair(sc16, j);
                for (int c = 0; c < C; ++c)
                    isum[c] = _mm256_add_epi32(isum[c], scaled_dot(u, act_q(x[c], j), s));
            }
        }
        const float d = half_at(p + offsetof(Block, d));
        for (int c = 0; c < C; ++c) {
            if constexpr (kThree) {
                const __m256i offset =
                    _mm256_slli_epi32(_mm256_madd_epi16(act_bsums(x[c]), sc16), 2);
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[c], offset)),
                                         _mm256_set1_ps(d * x[c]->d), acc[c]);
            } else {
                const float dmin = half_at(p + offsetof(Block, dmin));
                const __m256i msum = _mm256_madd_epi16(act_bsums(x[c]), mins);
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_set1_ps(d * x[c]->d),
                                         acc[c]);
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(-dmin * x[c]->d),
                                         acc[c]);
            }
        }
    }
};

// Q6_K: chunk 4h + t (elements 128h + 32t ..): low nibbles of ql[64h..+31] (t = 0) and of
// ql[64h+32..+63] (t = 1), high nibbles of the same (t = 2, 3); the 2 high bits are bit pair t
// of qh[32h + l]. Codes are u - 32: the 32 * scale * sum(q) term comes from the bsums.
struct Q6K {
    static constexpr size_t kBytes = sizeof(BlockQ6_K);

    template <int C>
    static VELA_INLINE void run(const uint8_t* p, const ActBlockK* const (&x)[C],
                                __m256 (&acc)[C]) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(BlockQ6_K, scales))));
        const __m256i nibble = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
        __m256i isum[C];
        for (int c = 0; c < C; ++c) isum[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load32(p + offsetof(BlockQ6_K, ql) + 64 * h);
            const __m256i ql1 = load32(p + offsetof(BlockQ6_K, ql) + 64 * h + 32);
            const __m256i qh = load32(p + offsetof(BlockQ6_K, qh) + 32 * h);
            const __m256i u[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, nibble),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 4), top)),
                _mm256_or_si256(_mm256_and_si256(ql1, nibble),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 2), top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), nibble),
                                _mm256_and_si256(qh, top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), nibble),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), top)),
            };
#pragma GCC unroll 4
            for (int t = 0; t < 4; ++t) {
                const int j = 4 * h + t;
                const __m256i s = scale_pair(sc16, j);
                for (int c = 0; c < C; ++c)
                    isum[c] = _mm256_add_epi32(isum[c], scaled_dot(u[t], act_q(x[c], j), s));
            }
        }
        const float d = half_at(p + offsetof(BlockQ6_K, d));
        for (int c = 0; c < C; ++c) {
            const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(act_bsums(x[c]), sc16), 5);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[c], offset)),
                                     _mm256_set1_ps(d * x[c]->d), acc[c]);
        }
    }
};

VELA_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

template <class T, int R, int C>
void tile_fixed(const KTileArgs& a) {
    __m256 acc[R][C];
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < a.nb; ++b) {
        const ActBlockK* x[C];
        for (int c = 0; c < C; ++c) x[c] = a.x + c * a.x_stride + b;
        for (int r = 0; r < R; ++r) {
            T::template run<C>(a.w + r * a.w_stride + b * T::kBytes, x, acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) a.y[c * a.ldy + r] = hsum(acc[r][c]);
    }
}

template <class T, int R>
void tile_rows(const KTileArgs& a) {
    if (a.nc == 1) return tile_fixed<T, R, 1>(a);
    return tile_fixed<T, R, 2>(a);
}

template <class T>
void tile(const KTileArgs& a) {
    switch (a.nr) {
        case 1:
            return tile_rows<T, 1>(a);
        case 2:
            return tile_rows<T, 2>(a);
        case 3:
            return tile_rows<T, 3>(a);
        default:
            return tile_rows<T, 4>(a);
    }
}

VELA_INLINE float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

VELA_INLINE int hsum_epi32(__m256i v) {
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return _mm_cvtsi128_si32(t);
}

void quantize_act(const float* x, ActBlockK* out, int64_t k) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / kQKK; ++b, x += kQKK) {
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 32; ++j)
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * j)));
        const float d = hmax(amax) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        for (int j = 0; j < 8; ++j) {
            __m256i q[4];
            for (int i = 0; i < 4; ++i)
                q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * j + 8 * i), id));
            // Packing interleaves 128-bit lanes; the final permute restores element order.
            const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
            const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
            const __m256i p8 = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].q + 32 * j), p8);
            out[b].bsums[2 * j] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q[0], q[1])));
            out[b].bsums[2 * j + 1] =
                static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q[2], q[3])));
        }
        out[b].d = d;
    }
}

}  // namespace

KQuantKernels kquant_kernels_avx2() {
    return {2,
            quantize_act,
            {tile<Q23K<false>>, tile<Q23K<true>>, tile<Q45K<false>>, tile<Q45K<true>>, tile<Q6K>}};
}

}  // namespace vela::cpu
