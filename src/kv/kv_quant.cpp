#include "kv/kv_quant.h"

#include <algorithm>
#include <cmath>

#include "core/fp16.h"

namespace vela {

void quantize_q8_row(const float* x, int64_t n, int8_t* q, uint16_t* scales) {
    for (int64_t g = 0; g * kQ8Group < n; ++g) {
        const int64_t begin = g * kQ8Group, end = std::min(n, begin + kQ8Group);
        float amax = 0.0f;
        for (int64_t i = begin; i < end; ++i) {
            // NaN must win the max (std::max would drop it), so that it reaches the scale.
            const float a = std::fabs(x[i]);
            amax = (a > amax || std::isnan(a)) ? a : amax;
        }
        const float exact = amax / 127.0f;
        uint16_t scale = fp32_to_fp16(exact);
        if (fp16_to_fp32(scale) < exact) ++scale;  // next fp16 up (exact is >= 0)
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

void dequantize_q8_row(const int8_t* q, const uint16_t* scales, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(q[i]) * fp16_to_fp32(scales[i / kQ8Group]);
}

}  // namespace vela
