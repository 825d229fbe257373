// AVX2 + FMA + F16C kernels. Built with per-file flags; everything here has internal linkage so
// no AVX2 code can be picked by the linker for a baseline caller.
//
// One weight block per step in a ymm. Types without a stored minimum are made signed
// (u - offset) and use maddubs(|w|, sign(x, w)), which cannot saturate for |w| <= 128 and
// |x| <= 127; Q4_1/Q5_1 keep unsigned codes and add m * sx per block.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"

namespace vela::cpu {
namespace {

#define VELA_INLINE inline __attribute__((always_inline))

VELA_INLINE uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

VELA_INLINE float half_to_float(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

template <Q8Kind K>
struct Traits {
    static constexpr bool kMin = K == Q8Kind::Q4_1 || K == Q8Kind::Q5_1;
    static constexpr bool kFive = K == Q8Kind::Q5_0 || K == Q8Kind::Q5_1;
    static constexpr size_t kQhOffset = kMin ? 4 : 2;
    static constexpr size_t kQsOffset = kQhOffset + (kFive ? 4 : 0);
    static constexpr size_t kBytes = K == Q8Kind::Q8_0 ? 34 : kQsOffset + 16;
    static constexpr int kOffset = kFive ? 16 : 8;
};

// Bit i of the 32-bit word -> 0x10 in byte i.
VELA_INLINE __m256i expand_bits(uint32_t bits) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

struct WeightBlock {
    __m256i w;  // signed codes, or unsigned ones for kMin types
    __m256i abs_w;
    float d;
    float m;
};

template <Q8Kind K>
VELA_INLINE WeightBlock decode(const uint8_t* p) {
    using T = Traits<K>;
    WeightBlock out;
    out.d = half_to_float(p);
    out.m = T::kMin ? half_to_float(p + 2) : 0.0f;
    if constexpr (K == Q8Kind::Q8_0) {
        out.w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    } else {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + T::kQsOffset));
        __m256i u =
            _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
        if constexpr (T::kFive) u = _mm256_or_si256(u, expand_bits(load_u32(p + T::kQhOffset)));
        if constexpr (!T::kMin) u = _mm256_sub_epi8(u, _mm256_set1_epi8(T::kOffset));
        out.w = u;
    }
    if constexpr (!T::kMin) out.abs_w = _mm256_sign_epi8(out.w, out.w);
    return out;
}

template <Q8Kind K>
VELA_INLINE __m256 block_dot(const WeightBlock& w, __m256i xq) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i prod;
    if constexpr (Traits<K>::kMin) {
        prod = _mm256_maddubs_epi16(w.w, xq);
    } else {
        prod = _mm256_maddubs_epi16(w.abs_w, _mm256_sign_epi8(xq, w.w));
    }
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(prod, ones));
}

template <Q8Kind K, int R, int C>
void tile_fixed(const TileArgs& a) {
    constexpr size_t kBytes = Traits<K>::kBytes;
    __m256 acc[R][C];
    float corr[R][C] = {};
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < a.nb; ++b) {
        WeightBlock w[R];
        for (int r = 0; r < R; ++r) w[r] = decode<K>(a.w + r * a.w_stride + b * kBytes);
        for (int c = 0; c < C; ++c) {
            const ActBlock& x = a.x[c * a.x_stride + b];
            const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q));
            for (int r = 0; r < R; ++r) {
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(w[r].d * x.d), block_dot<K>(w[r], xq),
                                            acc[r][c]);
                // One fused multiply-add in every tile shape: left to the compiler, some
                // shapes contract it and others do not, and a row's result would depend on the
                // batch it came in.
                if constexpr (Traits<K>::kMin) corr[r][c] = std::fma(w[r].m, x.s, corr[r][c]);
            }
        }
    }
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) {
            const __m256 v = acc[r][c];
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            a.y[c * a.ldy + r] = _mm_cvtss_f32(s) + corr[r][c];
        }
    }
}

template <Q8Kind K, int R>
void tile_rows(const TileArgs& a) {
    if (a.nc == 1) return tile_fixed<K, R, 1>(a);
    return tile_fixed<K, R, 2>(a);
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

VELA_INLINE float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

void quantize_act(const float* x, ActBlock* out, int64_t k) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / 32; ++b, x += 32) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
        }
        const float d = hmax(amax) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        __m256i q[4];
        for (int j = 0; j < 4; ++j) q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], id));
        // Packing interleaves 128-bit lanes; the final permute restores element order.
        const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b),
                                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].q), p8);
        const __m256i s =
            _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
        out[b].d = d;
        out[b].s = d * static_cast<float>(_mm_cvtsi128_si32(t));
    }
}

float dot_f32(const float* a, const float* b, int64_t k) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    const __m256 v = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float acc = _mm_cvtss_f32(s);
    for (; i < k; ++i) acc += a[i] * b[i];
    return acc;
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t k) {
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        _mm256_storeu_ps(
            dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    }
    for (; i < k; ++i) dst[i] = _cvtsh_ss(src[i]);
}

}  // namespace

const KernelSet& kernels_avx2() {
    static const KernelSet set = {
        2,
        {tile<Q8Kind::Q4_0>, tile<Q8Kind::Q4_1>, tile<Q8Kind::Q5_0>, tile<Q8Kind::Q5_1>,
         tile<Q8Kind::Q8_0>},
        quantize_act,
        dot_f32,
        f16_to_f32,
        nullptr,
        {},
        nullptr,
        kquant_kernels_avx2(),
    };
    return set;
}

}  // namespace vela::cpu
