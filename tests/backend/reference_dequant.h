#pragma once
// Float64 decoders of every weight type the CPU backend reads, written from the GGUF block
// layouts (ggml's documented formats) without any of src/'s code, so that the conformance suite's
// reference does not share a bug with the backend it checks. Byte offsets are spelled out here
// on purpose instead of reusing backend/cpu/quant_blocks.h.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace vela::test {

// IEEE binary16 bits to double: subnormals are mant * 2^-24, normals (1024 + mant) * 2^(e-25).
inline double half_to_double(uint16_t h) {
    const int exp = (h >> 10) & 0x1f;
    const int mant = h & 0x3ff;
    const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
    if (exp == 0x1f) return mant != 0 ? std::nan("") : sign * INFINITY;
    if (exp == 0) return sign * std::ldexp(mant, -24);
    return sign * std::ldexp(1024 + mant, exp - 25);
}

// bfloat16 is the top half of a binary32: 8 exponent bits, 7 mantissa bits.
inline double bf16_to_double(uint16_t h) {
    const int exp = (h >> 7) & 0xff;
    const int mant = h & 0x7f;
    const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
    if (exp == 0xff) return mant != 0 ? std::nan("") : sign * INFINITY;
    if (exp == 0) return sign * std::ldexp(mant, -133);
    return sign * std::ldexp(128 + mant, exp - 134);
}

namespace dequant_detail {

inline uint16_t u16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline double f16(const uint8_t* p) {
    return half_to_double(u16(p));
}

// Q4_0 (18 B): d, 16 bytes of nibbles; element j < 16 is the low nibble of byte j, element
// j + 16 the high one; value d * (q - 8).  Q4_1 (20 B) adds a min m: d * q + m.
inline void q4(const uint8_t* b, bool has_min, double* y) {
    const double d = f16(b), m = has_min ? f16(b + 2) : 0.0;
    const uint8_t* qs = b + (has_min ? 4 : 2);
    const int offset = has_min ? 0 : 8;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * ((qs[j] & 0xf) - offset) + m;
        y[j + 16] = d * ((qs[j] >> 4) - offset) + m;
    }
}

// Q5_0 (22 B): d, 32 high bits (bit j of the little-endian word is bit 4 of element j), then
// nibbles as Q4_0; value d * (q - 16).  Q5_1 (24 B): d, m, high bits, nibbles; d * q + m.
inline void q5(const uint8_t* b, bool has_min, double* y) {
    const double d = f16(b), m = has_min ? f16(b + 2) : 0.0;
    const uint8_t* qh = b + (has_min ? 4 : 2);
    const uint8_t* qs = qh + 4;
    const int offset = has_min ? 0 : 16;
    auto high = [&](int j) { return ((qh[j / 8] >> (j % 8)) & 1) << 4; };
    for (int j = 0; j < 16; ++j) {
        y[j] = d * (((qs[j] & 0xf) | high(j)) - offset) + m;
        y[j + 16] = d * (((qs[j] >> 4) | high(j + 16)) - offset) + m;
    }
}

// Q8_0 (34 B): d, 32 signed bytes.
inline void q8(const uint8_t* b, double* y) {
    const double d = f16(b);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<int8_t>(b[2 + j]);
}

// Q2_K (84 B): scales[16] (low nibble scale, high nibble min, per 16 elements), qs[64] (2-bit
// codes), d, dmin. Each 128-element half uses 32 bytes of qs; its four 32-element groups are the
// bit pairs 0-1, 2-3, 4-5, 6-7 of those bytes, each group split in two 16-element sub-blocks.
inline void q2_k(const uint8_t* b, double* y) {
    const uint8_t* scales = b;
    const uint8_t* qs = b + 16;
    const double d = f16(b + 80), dmin = f16(b + 82);
    for (int e = 0; e < 256; ++e) {
        const int half = e / 128, group = (e % 128) / 32, l = e % 32;
        const int sub = e / 16;  // == half * 8 + group * 2 + l / 16
        const int q = (qs[half * 32 + l] >> (2 * group)) & 3;
        y[e] = d * (scales[sub] & 0xf) * q - dmin * (scales[sub] >> 4);
    }
}

// The 6-bit scale i (0..15) of Q3_K: its low 4 bits in byte i (i < 8) or the high nibble of byte
// i - 8, its top 2 bits in byte 8 + i % 4 at bit 2 * (i / 4); stored with a bias of 32.
inline int q3_k_scale(const uint8_t* sc, int i) {
    const int low = i < 8 ? sc[i] & 0xf : sc[i - 8] >> 4;
    const int top = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (low | (top << 4)) - 32;
}

// Q3_K (110 B): hmask[32], qs[64], scales[12], d. Codes as Q2_K's; the third bit of element
// (half, group, l) is bit (half * 4 + group) of hmask[l], and a clear bit subtracts 4.
inline void q3_k(const uint8_t* b, double* y) {
    const uint8_t* hmask = b;
    const uint8_t* qs = b + 32;
    const uint8_t* scales = b + 96;
    const double d = f16(b + 108);
    for (int e = 0; e < 256; ++e) {
        const int half = e / 128, group = (e % 128) / 32, l = e % 32;
        const int low = (qs[half * 32 + l] >> (2 * group)) & 3;
        const bool hbit = (hmask[l] >> (half * 4 + group)) & 1;
        y[e] = d * q3_k_scale(scales, e / 16) * (low - (hbit ? 0 : 4));
    }
}

// The 6-bit scale and min j (0..7) of Q4_K/Q5_K's 12 scale bytes: j < 4 take bytes j and j + 4
// whole; j >= 4 take the nibbles of byte j + 4 plus the top two bits of bytes j - 4 and j.
inline void k4_scale_min(const uint8_t* s, int j, int& scale, int& min) {
    if (j < 4) {
        scale = s[j] & 63;
        min = s[j + 4] & 63;
    } else {
        scale = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K (144 B): d, dmin, scales[12], qs[128]. Each 64-element chunk c uses 32 bytes: low nibbles
// are sub-block 2c, high nibbles sub-block 2c + 1; value d * scale * q - dmin * min.
// Q5_K (176 B): d, dmin, scales[12], qh[32], qs[128]; bit 4 of element (sub-block s, l) is bit s
// of qh[l].
inline void q45_k(const uint8_t* b, bool five, double* y) {
    const double d = f16(b), dmin = f16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + (five ? 48 : 16);
    for (int e = 0; e < 256; ++e) {
        const int sub = e / 32, chunk = e / 64, l = e % 32;
        const uint8_t byte = qs[chunk * 32 + l];
        int q = sub % 2 == 0 ? byte & 0xf : byte >> 4;
        if (five) q |= ((qh[l] >> sub) & 1) << 4;
        int sc = 0, mn = 0;
        k4_scale_min(scales, sub, sc, mn);
        y[e] = d * sc * q - dmin * mn;
    }
}

// Q6_K (210 B): ql[128], qh[64], scales[16] (int8, per 16 elements), d. Per 128-element half h
// and l < 32, the four elements l, l + 32, l + 64, l + 96 take low nibbles of ql[64h + l],
// ql[64h + 32 + l], then high nibbles of the same, with bit pairs 0-1, 2-3, 4-5, 6-7 of
// qh[32h + l] as their top bits; value d * scale * (q - 32).
inline void q6_k(const uint8_t* b, double* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
    const double d = f16(b + 208);
    for (int e = 0; e < 256; ++e) {
        const int half = e / 128, quarter = (e % 128) / 32, l = e % 32;
        const uint8_t lbyte = ql[64 * half + 32 * (quarter % 2) + l];
        const int low = quarter < 2 ? lbyte & 0xf : lbyte >> 4;
        const int top = (qh[32 * half + l] >> (2 * quarter)) & 3;
        y[e] = d * scales[e / 16] * ((low | (top << 4)) - 32);
    }
}

}  // namespace dequant_detail

// One row of `k` elements of type `t` at `src`, in float64.
inline std::vector<double> dequantize_row_f64(DType t, const uint8_t* src, int64_t k) {
    namespace dd = dequant_detail;
    std::vector<double> y(static_cast<size_t>(k));
    if (t == DType::F32) {
        for (int64_t i = 0; i < k; ++i) {
            float f;
            std::memcpy(&f, src + 4 * i, 4);
            y[i] = f;
        }
        return y;
    }
    if (t == DType::F16 || t == DType::BF16) {
        for (int64_t i = 0; i < k; ++i) {
            const uint16_t h = dd::u16(src + 2 * i);
            y[i] = t == DType::F16 ? half_to_double(h) : bf16_to_double(h);
        }
        return y;
    }
    const DTypeInfo& info = dtype_info(t);
    VELA_ASSERT(k % info.block_size == 0);
    for (int64_t blk = 0; blk < k / info.block_size; ++blk) {
        const uint8_t* b = src + blk * info.type_size;
        double* out = y.data() + blk * info.block_size;
        switch (t) {
            case DType::Q4_0:
                dd::q4(b, false, out);
                break;
            case DType::Q4_1:
                dd::q4(b, true, out);
                break;
            case DType::Q5_0:
                dd::q5(b, false, out);
                break;
            case DType::Q5_1:
                dd::q5(b, true, out);
                break;
            case DType::Q8_0:
                dd::q8(b, out);
                break;
            case DType::Q2_K:
                dd::q2_k(b, out);
                break;
            case DType::Q3_K:
                dd::q3_k(b, out);
                break;
            case DType::Q4_K:
                dd::q45_k(b, false, out);
                break;
            case DType::Q5_K:
                dd::q45_k(b, true, out);
                break;
            case DType::Q6_K:
                dd::q6_k(b, out);
                break;
            default:
                fail<InvalidArgument>("no float64 reference for {}", dtype_name(t));
        }
    }
    return y;
}

// x rounded to the nearest value of a binary float with `mant_bits` stored mantissa bits and
// smallest normal exponent `min_exp` (ties to even): what a KV store in F16 (10, -14) or BF16
// (7, -126) holds for x. Overflow is not modelled (tests stay far from it).
inline double round_to_format(double x, int mant_bits, int min_exp) {
    if (x == 0.0 || !std::isfinite(x)) return x;
    int e = 0;
    std::frexp(x, &e);  // |x| in [2^(e-1), 2^e)
    const int exp = std::max(e - 1, min_exp);
    const double quantum = std::ldexp(1.0, exp - mant_bits);
    return std::nearbyint(x / quantum) * quantum;  // the default rounding mode: ties to even
}

}  // namespace vela::test
