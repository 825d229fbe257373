// AVX2 + FMA + F16C path. Every header is included first; the target pragma then covers only
// the kernel defined below, so inline functions shared with other files (std::, fp16.h) are
// never compiled with AVX2 and cannot leak into code that runs on older CPUs.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "attention/attention_work.h"
#include "core/fp16.h"
#include "kv/kv_dtype.h"
#include "kv/kv_quant.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include "attention/attention_kernel.h"

namespace vela::attention_detail {
namespace {

float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// e^x for x <= 0 as 2^n * e^r with |r| <= ln2/2; e^r by its degree-6 Taylor polynomial
// (relative error ~1.2e-7, about one float ulp). Inputs below -87 give ~e^-87, not 0, which
// is far below what a softmax sum of at least one 1.0 can register.
__m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// Eight int8 values widened to float in registers.
__m256 load_i8x8(const int8_t* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

// Eight 4-bit values (4 bytes: values 0-3 in the low nibbles, 4-7 in the high ones) widened
// to float in registers.
__m256 load_q4x8(const uint8_t* p) {
    int32_t bytes;
    std::memcpy(&bytes, p, sizeof bytes);
    const __m128i x = _mm_cvtsi32_si128(bytes);
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(x, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), mask);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi32(lo, hi)));
}

struct Avx2Ops {
    // out[j] = q . rows[j]; four rows at a time share the q loads and one horizontal
    // reduction, and give the FMA units four independent chains.
    static void dot_rows(const float* q, const float* const* rows, int64_t n, int64_t hd,
                         float* out) {
        const int64_t hd8 = hd / 8 * 8;
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) {
            const float *r0 = rows[j], *r1 = rows[j + 1], *r2 = rows[j + 2], *r3 = rows[j + 3];
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t d = 0; d < hd8; d += 8) {
                const __m256 qv = _mm256_loadu_ps(q + d);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r0 + d), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r1 + d), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r2 + d), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r3 + d), a3);
            }
            const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            _mm_storeu_ps(out + j,
                          _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
            for (int64_t d = hd8; d < hd; ++d) {
                out[j] += q[d] * r0[d];
                out[j + 1] += q[d] * r1[d];
                out[j + 2] += q[d] * r2[d];
                out[j + 3] += q[d] * r3[d];
            }
        }
        for (; j < n; ++j) out[j] = dot(q, rows[j], hd);
    }
    static float dot(const float* a, const float* b, int64_t n) {
        __m256 s0 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        float s = hsum(s0);
        for (; i < n; ++i) s += a[i] * b[i];
        return s;
    }
    // acc += sum_j w[j] * rows[j]: 32 accumulator columns stay in registers across all rows.
    static void accumulate(const float* w, const float* const* rows, int64_t n, float* acc,
                           int64_t hd) {
        int64_t d = 0;
        for (; d + 32 <= hd; d += 32) {
            __m256 c0 = _mm256_loadu_ps(acc + d), c1 = _mm256_loadu_ps(acc + d + 8);
            __m256 c2 = _mm256_loadu_ps(acc + d + 16), c3 = _mm256_loadu_ps(acc + d + 24);
            for (int64_t j = 0; j < n; ++j) {
                const __m256 wj = _mm256_set1_ps(w[j]);
                const float* r = rows[j] + d;
                c0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r), c0);
                c1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r + 8), c1);
                c2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r + 16), c2);
                c3 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r + 24), c3);
            }
            _mm256_storeu_ps(acc + d, c0);
            _mm256_storeu_ps(acc + d + 8, c1);
            _mm256_storeu_ps(acc + d + 16, c2);
            _mm256_storeu_ps(acc + d + 24, c3);
        }
        for (; d + 8 <= hd; d += 8) {
            __m256 c = _mm256_loadu_ps(acc + d);
            for (int64_t j = 0; j < n; ++j) {
                c = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_loadu_ps(rows[j] + d), c);
            }
            _mm256_storeu_ps(acc + d, c);
        }
        for (; d < hd; ++d) {
            for (int64_t j = 0; j < n; ++j) acc[d] += w[j] * rows[j][d];
        }
    }
    // out[j] = q . rows[j] dequantised: each group's partial dot is scaled once.
    static void dot_rows_q8(const float* q, const int8_t* const* rows, const float* scales,
                            int64_t n, int64_t hd, int64_t group, float* out) {
        const int64_t groups = kv_groups(hd, group);
        for (int64_t j = 0; j < n; ++j) {
            const int8_t* r = rows[j];
            const float* sc = scales + j * groups;
            __m256 total = _mm256_setzero_ps();
            float tail = 0.0f;
            for (int64_t g = 0; g < groups; ++g) {
                const int64_t end = std::min(hd, (g + 1) * group);
                __m256 part = _mm256_setzero_ps();
                int64_t d = g * group;
                for (; d + 8 <= end; d += 8) {
                    part = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_i8x8(r + d), part);
                }
                total = _mm256_fmadd_ps(part, _mm256_set1_ps(sc[g]), total);
                float part_tail = 0.0f;
                for (; d < end; ++d) part_tail += q[d] * static_cast<float>(r[d]);
                tail += sc[g] * part_tail;
            }
            out[j] = hsum(total) + tail;
        }
    }
    // acc += sum_j w[j] * rows[j] dequantised: 32 columns (within one scale group: groups are
    // multiples of 32) in registers, the group's scale folded into each row's weight.
    static void accumulate_q8(const float* w, const int8_t* const* rows, const float* scales,
                              int64_t n, float* acc, int64_t hd, int64_t group) {
        const int64_t groups = kv_groups(hd, group);
        int64_t d = 0;
        for (; d + 32 <= hd; d += 32) {
            const int64_t g = d / group;
            __m256 c0 = _mm256_loadu_ps(acc + d), c1 = _mm256_loadu_ps(acc + d + 8);
            __m256 c2 = _mm256_loadu_ps(acc + d + 16), c3 = _mm256_loadu_ps(acc + d + 24);
            for (int64_t j = 0; j < n; ++j) {
                const __m256 wj = _mm256_set1_ps(w[j] * scales[j * groups + g]);
                const int8_t* r = rows[j] + d;
                c0 = _mm256_fmadd_ps(wj, load_i8x8(r), c0);
                c1 = _mm256_fmadd_ps(wj, load_i8x8(r + 8), c1);
                c2 = _mm256_fmadd_ps(wj, load_i8x8(r + 16), c2);
                c3 = _mm256_fmadd_ps(wj, load_i8x8(r + 24), c3);
            }
            _mm256_storeu_ps(acc + d, c0);
            _mm256_storeu_ps(acc + d + 8, c1);
            _mm256_storeu_ps(acc + d + 16, c2);
            _mm256_storeu_ps(acc + d + 24, c3);
        }
        for (; d + 8 <= hd; d += 8) {
            const int64_t g = d / group;
            __m256 c = _mm256_loadu_ps(acc + d);
            for (int64_t j = 0; j < n; ++j) {
                const __m256 wj = _mm256_set1_ps(w[j] * scales[j * groups + g]);
                c = _mm256_fmadd_ps(wj, load_i8x8(rows[j] + d), c);
            }
            _mm256_storeu_ps(acc + d, c);
        }
        for (; d < hd; ++d) {
            const int64_t g = d / group;
            for (int64_t j = 0; j < n; ++j) {
                acc[d] += w[j] * scales[j * groups + g] * static_cast<float>(rows[j][d]);
            }
        }
    }
    // acc += sum_j w[j] * rows[j] dequantised (min + q * scale per group): 8 columns at a time
    // in a register; each row's w * min is summed per group and added once at the end.
    static void accumulate_q4(const float* w, const uint8_t* const* rows, const float* scale_min,
                              int64_t n, float* acc, int64_t hd, int64_t group) {
        const int64_t groups = kv_groups(hd, group);
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t begin = g * group, end = std::min(hd, begin + group);
            float min_sum = 0.0f;
            for (int64_t j = 0; j < n; ++j) min_sum += w[j] * scale_min[(j * groups + g) * 2 + 1];
            int64_t d = begin;
            for (; d + 8 <= end; d += 8) {
                __m256 c = _mm256_loadu_ps(acc + d);
                for (int64_t j = 0; j < n; ++j) {
                    const __m256 wj = _mm256_set1_ps(w[j] * scale_min[(j * groups + g) * 2]);
                    c = _mm256_fmadd_ps(wj, load_q4x8(rows[j] + d / 2), c);
                }
                _mm256_storeu_ps(acc + d, _mm256_add_ps(c, _mm256_set1_ps(min_sum)));
            }
            for (; d < end; ++d) {
                for (int64_t j = 0; j < n; ++j) {
                    acc[d] += w[j] * scale_min[(j * groups + g) * 2] *
                              static_cast<float>(q4_nibble(rows[j], d));
                }
                acc[d] += min_sum;
            }
        }
    }
    static void scale(float* y, float a, int64_t n) {
        const __m256 va = _mm256_set1_ps(a);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
        for (; i < n; ++i) y[i] *= a;
    }
    static float exp_shift_sum(float* x, int64_t n, float shift) {
        const __m256 vs = _mm256_set1_ps(shift);
        __m256 acc = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
            _mm256_storeu_ps(x + i, e);
            acc = _mm256_add_ps(acc, e);
        }
        float s = hsum(acc);
        if (i < n) {  // tail through the same polynomial, so every key sees one exp()
            alignas(32) float tail[8] = {};
            std::copy(x + i, x + n, tail);
            _mm256_store_ps(tail, exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(tail), vs)));
            for (int64_t j = 0; i + j < n; ++j) s += (x[i + j] = tail[j]);
        }
        return s;
    }
    static void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
        }
        for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
    }
    // A Q4 K row of a full block: value c = min_c + code * scale_c (scale_min: head_dim scales,
    // then head_dim minima).
    static void q4_channels_to_f32(const uint8_t* q, const float* scale_min, int64_t hd,
                                   float* out) {
        int64_t c = 0;
        for (; c + 8 <= hd; c += 8) {
            _mm256_storeu_ps(out + c,
                             _mm256_fmadd_ps(load_q4x8(q + c / 2), _mm256_loadu_ps(scale_min + c),
                                             _mm256_loadu_ps(scale_min + hd + c)));
        }
        for (; c < hd; ++c) {
            out[c] = scale_min[hd + c] + static_cast<float>(q4_nibble(q, c)) * scale_min[c];
        }
    }
    // bfloat16 is the upper half of a float: widen and shift.
    static void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
            const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
        }
        for (; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
    }
};

}  // namespace

void run_attention_avx2(const PagedAttentionParams& p, std::span<const AttentionWork> work,
                        ThreadPool& pool) {
    run_attention<Avx2Ops>(p, work, pool);
}

}  // namespace vela::attention_detail

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
