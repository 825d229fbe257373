// AVX-512 (F/BW/VL/VNNI) kernels. Built with per-file flags; everything here has internal
// linkage so no AVX-512 code can be picked by the linker for a baseline caller.
//
// The integer kernel handles two weight blocks per step in one zmm: bytes 0..31 are block b,
// bytes 32..63 block b + 1, and every weight is w_i = dw * u_i + cw with u_i unsigned, so one
// vpdpbusd (u8 x s8 -> s32, no saturation) gives 8 partial sums per block. Per lane then
// acc += (dw * dx) * isum + (cw / 8) * sx: the 8 lanes of a block add up to the exact block dot.
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/kernels.h"

namespace vela::cpu {
namespace {

#define VELA_INLINE inline __attribute__((always_inline))

alignas(64) constexpr uint8_t kZeroBlock[64] = {};
constexpr ActBlock kZeroAct = {};

VELA_INLINE uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <Q8Kind K>
struct Traits {
    static constexpr bool kMin = K == Q8Kind::Q4_1 || K == Q8Kind::Q5_1;
    static constexpr bool kFive = K == Q8Kind::Q5_0 || K == Q8Kind::Q5_1;
    static constexpr size_t kQhOffset = kMin ? 4 : 2;
    static constexpr size_t kQsOffset = kQhOffset + (kFive ? 4 : 0);
    static constexpr size_t kBytes = K == Q8Kind::Q8_0 ? 34 : kQsOffset + 16;
    // cw / dw for the types without a stored minimum (offset of the unsigned code).
    static constexpr float kOffset = K == Q8Kind::Q8_0 ? 128.0f : kFive ? 16.0f : 8.0f;
};

// Lane index vectors: lanes 0..7 take element lo, lanes 8..15 element hi.
VELA_INLINE __m512i spread(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi32(lo), _mm256_set1_epi32(hi), 1);
}

struct WeightPair {
    __m512i u;
    __m512 d;   // dw per lane
    __m512 c8;  // cw / 8 per lane
};

template <Q8Kind K>
VELA_INLINE WeightPair decode_pair(const uint8_t* p0, const uint8_t* p1) {
    using T = Traits<K>;
    WeightPair out;
    if constexpr (K == Q8Kind::Q8_0) {
        const __m512i q = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0 + 2))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1 + 2)), 1);
        out.u = _mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80)));
    } else {
        const __m256i v = _mm256_inserti128_si256(
            _mm256_castsi128_si256(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(p0 + T::kQsOffset))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1 + T::kQsOffset)), 1);
        const __m256i mask = _mm256_set1_epi8(0x0F);
        const __m256i lo = _mm256_and_si256(v, mask);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
        // [lo(b), hi(b), lo(b+1), hi(b+1)] in 16-byte quarters = elements 0..31 of each block.
        const __m512i idx = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
        out.u =
            _mm512_permutex2var_epi64(_mm512_castsi256_si512(lo), idx, _mm512_castsi256_si512(hi));
        if constexpr (T::kFive) {
            const uint64_t bits = load_u32(p0 + T::kQhOffset) |
                                  (static_cast<uint64_t>(load_u32(p1 + T::kQhOffset)) << 32);
            out.u = _mm512_mask_add_epi8(out.u, bits, out.u, _mm512_set1_epi8(16));
        }
    }
    // [d0, m0, d1, m1] (m is garbage for types without one and never used then).
    const __m512 h = _mm512_castps128_ps512(_mm_cvtph_ps(
        _mm_set_epi32(0, 0, static_cast<int>(load_u32(p1)), static_cast<int>(load_u32(p0)))));
    out.d = _mm512_permutexvar_ps(spread(0, 2), h);
    if constexpr (T::kMin) {
        out.c8 = _mm512_mul_ps(_mm512_permutexvar_ps(spread(1, 3), h), _mm512_set1_ps(0.125f));
    } else {
        out.c8 = _mm512_mul_ps(out.d, _mm512_set1_ps(-T::kOffset / 8.0f));
    }
    return out;
}

struct ActPair {
    __m512i q;
    __m512 d;  // dx per lane
    __m512 s;  // sx per lane
};

VELA_INLINE ActPair load_act_pair(const ActBlock* x0, const ActBlock* x1) {
    ActPair out;
    out.q = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0->q))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1->q)), 1);
    const __m512 h = _mm512_castps128_ps512(
        _mm_castsi128_ps(_mm_unpacklo_epi64(_mm_loadu_si64(x0), _mm_loadu_si64(x1))));
    out.d = _mm512_permutexvar_ps(spread(0, 2), h);
    out.s = _mm512_permutexvar_ps(spread(1, 3), h);
    return out;
}

// acc[r][c] += block pair (b, b + 1) of weight rows w[] against activation rows c (the
// second block of the pair is the zero block at an odd tail).
template <int R, int C, bool kTail>
VELA_INLINE void accumulate(const TileArgs& a, int64_t b, const WeightPair (&w)[R],
                            __m512 (&acc)[R][C]) {
    for (int c = 0; c < C; ++c) {
        const ActBlock* x0 = a.x + c * a.x_stride + b;
        const ActPair x = load_act_pair(x0, kTail ? &kZeroAct : x0 + 1);
        for (int r = 0; r < R; ++r) {
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[r].u, x.q);
            acc[r][c] =
                _mm512_fmadd_ps(_mm512_mul_ps(w[r].d, x.d), _mm512_cvtepi32_ps(dot), acc[r][c]);
            acc[r][c] = _mm512_fmadd_ps(w[r].c8, x.s, acc[r][c]);
        }
    }
}

template <Q8Kind K, int R, int C, bool kTail>
VELA_INLINE void tile_step(const TileArgs& a, int64_t b, __m512 (&acc)[R][C]) {
    constexpr size_t kBytes = Traits<K>::kBytes;
    WeightPair w[R];
    for (int r = 0; r < R; ++r) {
        const uint8_t* p0 = a.w + r * a.w_stride + b * kBytes;
        w[r] = decode_pair<K>(p0, kTail ? kZeroBlock : p0 + kBytes);
    }
    accumulate<R, C, kTail>(a, b, w, acc);
}

// Packed rows (see pack_rows): the decode is done, each pair is three plain loads.
template <int R, int C, bool kTail>
VELA_INLINE void packed_step(const TileArgs& a, int64_t b, __m512 (&acc)[R][C]) {
    WeightPair w[R];
    for (int r = 0; r < R; ++r) {
        w[r] = reinterpret_cast<const WeightPair*>(a.w + r * a.w_stride)[b / 2];
    }
    accumulate<R, C, kTail>(a, b, w, acc);
}

template <int R, int C>
VELA_INLINE void store(const TileArgs& a, __m512 (&acc)[R][C]) {
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) a.y[c * a.ldy + r] = _mm512_reduce_add_ps(acc[r][c]);
    }
}

// kKind == Q8Kind::Count marks packed weight rows.
template <Q8Kind K, int R, int C>
void tile_fixed(const TileArgs& a) {
    __m512 acc[R][C];
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
    }
    int64_t b = 0;
    if constexpr (K == Q8Kind::Count) {
        for (; b + 2 <= a.nb; b += 2) packed_step<R, C, false>(a, b, acc);
        if (b < a.nb) packed_step<R, C, true>(a, b, acc);
    } else {
        for (; b + 2 <= a.nb; b += 2) tile_step<K, R, C, false>(a, b, acc);
        if (b < a.nb) tile_step<K, R, C, true>(a, b, acc);
    }
    store(a, acc);
}

template <Q8Kind K, int R>
void tile_rows(const TileArgs& a) {
    switch (a.nc) {
        case 1:
            return tile_fixed<K, R, 1>(a);
        case 2:
            return tile_fixed<K, R, 2>(a);
        case 3:
            return tile_fixed<K, R, 3>(a);
        default:
            return tile_fixed<K, R, 4>(a);
    }
}

template <Q8Kind K>
void tile(const TileArgs& a) {
    switch (a.nr) {
        case 1:
            return tile_rows<K, 1>(a);
        case 2:
            return tile_rows<K, 2>(a);
        case 3:
            return tile_rows<K, 3>(a);
        default:
            return tile_rows<K, 4>(a);
    }
}

size_t packed_row_bytes(int64_t nb) {
    return static_cast<size_t>((nb + 1) / 2) * sizeof(WeightPair);
}

template <Q8Kind K>
void pack_rows(const uint8_t* w, size_t w_stride, int nr, int64_t nb, void* out) {
    constexpr size_t kBytes = Traits<K>::kBytes;
    auto* dst = static_cast<WeightPair*>(out);
    for (int r = 0; r < nr; ++r) {
        const uint8_t* row = w + r * w_stride;
        for (int64_t b = 0; b < nb; b += 2) {
            const uint8_t* p0 = row + b * kBytes;
            const WeightPair wp = decode_pair<K>(p0, b + 1 < nb ? p0 + kBytes : kZeroBlock);
            *dst++ = wp;
        }
    }
}

void quantize_act(const float* x, ActBlock* out, int64_t k) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / 32; ++b, x += 32) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const __m512 amax = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        const float d = _mm512_reduce_max_ps(amax) / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        // cvtps rounds half to even under the default MXCSR, like the scalar nearbyint.
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q + 16), _mm512_cvtsepi32_epi8(q1));
        out[b].d = d;
        out[b].s = d * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    }
}

float dot_f32(const float* a, const float* b, int64_t k) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i < k; i += 16) {
        const __mmask16 m =
            k - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - i)) - 1);
        acc0 =
            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t k) {
    for (int64_t i = 0; i < k; i += 16) {
        const __mmask16 m =
            k - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - i)) - 1);
        const __m256i h = _mm256_maskz_loadu_epi16(m, src + i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(h));
    }
}

}  // namespace

const KernelSet& kernels_avx512() {
    static const KernelSet set = {
        4,
        {tile<Q8Kind::Q4_0>, tile<Q8Kind::Q4_1>, tile<Q8Kind::Q5_0>, tile<Q8Kind::Q5_1>,
         tile<Q8Kind::Q8_0>},
        quantize_act,
        dot_f32,
        f16_to_f32,
        packed_row_bytes,
        {pack_rows<Q8Kind::Q4_0>, pack_rows<Q8Kind::Q4_1>, pack_rows<Q8Kind::Q5_0>,
         pack_rows<Q8Kind::Q5_1>, pack_rows<Q8Kind::Q8_0>},
        tile<Q8Kind::Count>,
        kquant_kernels_avx512(),
    };
    return set;
}

}  // namespace vela::cpu
