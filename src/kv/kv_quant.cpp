#include "kv/kv_quant.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/fp16.h"

namespace vela {

namespace {

// x rounded to fp16 upwards (x >= 0) or downwards (any x): bounds a scale must not fall below
// and a minimum must not rise above.
uint16_t fp16_up(float x) {
    uint16_t h = fp32_to_fp16(x);
    if (fp16_to_fp32(h) < x) ++h;  // x >= 0: the next fp16 up
    return h;
}
uint16_t fp16_down(float x) {
    uint16_t h = fp32_to_fp16(x);
    if (fp16_to_fp32(h) > x) h = x > 0.0f ? h - 1 : (h == 0 ? 0x8001 : h + 1);  // one ulp down
    return h;
}

// KIVI's asymmetric 4-bit range of values in [lo, hi] (fp16 bits, scale then min): min rounded
// down and scale = (hi - min) / 15 rounded up, so min + 15 * scale >= hi and no value needs
// clamping; NaN in, NaN out.
std::pair<uint16_t, uint16_t> q4_scale_min(float lo, float hi, bool nan) {
    if (nan) return {uint16_t{0x7e00}, uint16_t{0x7e00}};
    const uint16_t min16 = fp16_down(lo);
    return {fp16_up((hi - fp16_to_fp32(min16)) / 15.0f), min16};
}

// x's code against (scale, min) as stored, so the only error is the rounding of
// (x - min) / scale.
uint8_t q4_code(float x, float scale, float min) {
    float r = scale > 0.0f ? std::nearbyint((x - min) / scale) : 0.0f;  // ties to even
    r = std::clamp(r, 0.0f, 15.0f);  // only float rounding can reach past 15
    return static_cast<uint8_t>(std::isnan(r) ? 0.0f : r);
}

void put_nibble(uint8_t* q, int64_t i, uint8_t v) {
    q[i / 8 * 4 + i % 4] |= static_cast<uint8_t>(i % 8 < 4 ? v : v << 4);
}

}  // namespace

void quantize_q8_row(const float* x, int64_t n, int64_t group, int8_t* q, uint16_t* scales) {
    for (int64_t g = 0; g * group < n; ++g) {
        const int64_t begin = g * group, end = std::min(n, begin + group);
        float amax = 0.0f;
        for (int64_t i = begin; i < end; ++i) {
            // NaN must win the max (std::max would drop it), so that it reaches the scale.
            const float a = std::fabs(x[i]);
            amax = (a > amax || std::isnan(a)) ? a : amax;
        }
        const uint16_t scale = fp16_up(amax / 127.0f);
        scales[g] = scale;
        // Quantise against the scale as stored, so the only error is the rounding of x / scale.
        const float d = fp16_to_fp32(scale);
        for (int64_t i = begin; i < end; ++i) {
            float r = d > 0.0f ? std::nearbyint(x[i] / d) : 0.0f;  // ties to even
            r = std::clamp(r, -127.0f, 127.0f);  // only float rounding can reach past 127
            q[i] = static_cast<int8_t>(std::isnan(r) ? 0.0f : r);
        }
    }
}

void quantize_q4_row(const float* x, int64_t n, int64_t group, uint8_t* q, uint16_t* scale_min) {
    std::fill_n(q, q4_row_bytes(n), uint8_t{0});
    for (int64_t g = 0; g * group < n; ++g) {
        const int64_t begin = g * group, end = std::min(n, begin + group);
        float lo = x[begin], hi = x[begin];
        bool nan = false;
        for (int64_t i = begin; i < end; ++i) {
            nan = nan || std::isnan(x[i]);
            lo = std::min(lo, x[i]);
            hi = std::max(hi, x[i]);
        }
        const auto [scale16, min16] = q4_scale_min(lo, hi, nan);
        scale_min[2 * g] = scale16;
        scale_min[2 * g + 1] = min16;
        const float scale = fp16_to_fp32(scale16), min = fp16_to_fp32(min16);
        for (int64_t i = begin; i < end; ++i) put_nibble(q, i, q4_code(x[i], scale, min));
    }
}

void quantize_q4_channels(const float* x, int64_t n_tokens, int64_t head_dim, uint8_t* q,
                          uint16_t* scale_min) {
    const int64_t row_bytes = q4_row_bytes(head_dim);
    std::fill_n(q, n_tokens * row_bytes, uint8_t{0});
    for (int64_t c = 0; c < head_dim; ++c) {
        float lo = x[c], hi = x[c];
        bool nan = false;
        for (int64_t t = 0; t < n_tokens; ++t) {
            const float v = x[t * head_dim + c];
            nan = nan || std::isnan(v);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        const auto [scale16, min16] = q4_scale_min(lo, hi, nan);
        scale_min[c] = scale16;
        scale_min[head_dim + c] = min16;
        const float scale = fp16_to_fp32(scale16), min = fp16_to_fp32(min16);
        for (int64_t t = 0; t < n_tokens; ++t) {
            put_nibble(q + t * row_bytes, c, q4_code(x[t * head_dim + c], scale, min));
        }
    }
}

void dequantize_q4_channels_row(const uint8_t* q_row, const uint16_t* scale_min, int64_t head_dim,
                                float* out) {
    for (int64_t c = 0; c < head_dim; ++c) {
        out[c] = fp16_to_fp32(scale_min[head_dim + c]) +
                 static_cast<float>(q4_nibble(q_row, c)) * fp16_to_fp32(scale_min[c]);
    }
}

void dequantize_q4_row(const uint8_t* q, const uint16_t* scale_min, int64_t n, int64_t group,
                       float* out) {
    for (int64_t i = 0; i < n; ++i) {
        const int64_t g = i / group;
        out[i] = fp16_to_fp32(scale_min[2 * g + 1]) +
                 static_cast<float>(q4_nibble(q, i)) * fp16_to_fp32(scale_min[2 * g]);
    }
}

void dequantize_q8_row(const int8_t* q, const uint16_t* scales, int64_t n, int64_t group,
                       float* out) {
    for (int64_t i = 0; i < n; ++i) {
        out[i] = static_cast<float>(q[i]) * fp16_to_fp32(scales[i / group]);
    }
}

}  // namespace vela
