#include "kv/kv_quant.h"

#include <algorithm>
#include <cmath>

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

}  // namespace

void quantize_q8_row(const float* x, int64_t n, int8_t* q, uint16_t* scales) {
    for (int64_t g = 0; g * kKvGroup < n; ++g) {
        const int64_t begin = g * kKvGroup, end = std::min(n, begin + kKvGroup);
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


void quantize_q4_row(const float* x, int64_t n, uint8_t* q, uint16_t* scale_min) {
    std::fill_n(q, q4_row_bytes(n), uint8_t{0});
    for (int64_t g = 0; g * kKvGroup < n; ++g) {
        const int64_t begin = g * kKvGroup, end = std::min(n, begin + kKvGroup);
        float lo = x[begin], hi = x[begin];
        bool nan = false;
        for (int64_t i = begin; i < end; ++i) {
            nan = nan || std::isnan(x[i]);
            lo = std::min(lo, x[i]);
            hi = std::max(hi, x[i]);
        }
        const uint16_t min16 = nan ? uint16_t{0x7e00} : fp16_down(lo);
        const float min = fp16_to_fp32(min16);
        const uint16_t scale16 = nan ? uint16_t{0x7e00} : fp16_up((hi - min) / 15.0f);
        const float scale = fp16_to_fp32(scale16);
        scale_min[2 * g] = scale16;
        scale_min[2 * g + 1] = min16;
        for (int64_t i = begin; i < end; ++i) {
            float r = scale > 0.0f ? std::nearbyint((x[i] - min) / scale) : 0.0f;
            r = std::clamp(r, 0.0f, 15.0f);  // only float rounding can reach past 15
            const auto v = static_cast<uint8_t>(std::isnan(r) ? 0.0f : r);
            q[i / 8 * 4 + i % 4] |= static_cast<uint8_t>(i % 8 < 4 ? v : v << 4);
        }
    }
}

void dequantize_q4_row(const uint8_t* q, const uint16_t* scale_min, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        const int64_t g = i / kKvGroup;
        out[i] = fp16_to_fp32(scale_min[2 * g + 1]) +
                 static_cast<float>(q4_nibble(q, i)) * fp16_to_fp32(scale_min[2 * g]);
    }
}

void dequantize_q8_row(const int8_t* q, const uint16_t* scales, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        out[i] = static_cast<float>(q[i]) * fp16_to_fp32(scales[i / kKvGroup]);
    }
}

}  // namespace vela
