// Portable path: plain loops (the compiler may vectorise what it can prove safe).
#include <algorithm>
#include <cmath>

#include "attention/attention_kernel.h"
#include "core/fp16.h"

namespace vela::attention_detail {
namespace {

struct ScalarOps {
    // out[j] = q . rows[j] for j < n.
    static void dot_rows(const float* q, const float* const* rows, int64_t n, int64_t hd,
                         float* out) {
        for (int64_t j = 0; j < n; ++j) {
            float s = 0.0f;
            for (int64_t d = 0; d < hd; ++d) s += q[d] * rows[j][d];
            out[j] = s;
        }
    }
    // acc += sum_j w[j] * rows[j], in j order for every element.
    static void accumulate(const float* w, const float* const* rows, int64_t n, float* acc,
                           int64_t hd) {
        for (int64_t j = 0; j < n; ++j) {
            for (int64_t d = 0; d < hd; ++d) acc[d] += w[j] * rows[j][d];
        }
    }
    // out[j] = q . (rows[j] dequantised with scales[j * groups ...]): one multiply per group.
    static void dot_rows_q8(const float* q, const int8_t* const* rows, const float* scales,
                            int64_t n, int64_t hd, int64_t group, float* out) {
        const int64_t groups = kv_groups(hd, group);
        for (int64_t j = 0; j < n; ++j) {
            float s = 0.0f;
            for (int64_t g = 0; g < groups; ++g) {
                float part = 0.0f;
                for (int64_t d = g * group; d < std::min(hd, (g + 1) * group); ++d) {
                    part += q[d] * static_cast<float>(rows[j][d]);
                }
                s += scales[j * groups + g] * part;
            }
            out[j] = s;
        }
    }
    // acc += sum_j w[j] * rows[j] dequantised: the scale folds into the row's weight.
    static void accumulate_q8(const float* w, const int8_t* const* rows, const float* scales,
                              int64_t n, float* acc, int64_t hd, int64_t group) {
        const int64_t groups = kv_groups(hd, group);
        for (int64_t j = 0; j < n; ++j) {
            for (int64_t d = 0; d < hd; ++d) {
                acc[d] += w[j] * scales[j * groups + d / group] * static_cast<float>(rows[j][d]);
            }
        }
    }
    // acc += sum_j w[j] * rows[j] dequantised (min + q * scale per group): the scale and the
    // minimum fold into the row's weight.
    static void accumulate_q4(const float* w, const uint8_t* const* rows, const float* scale_min,
                              int64_t n, float* acc, int64_t hd, int64_t group) {
        const int64_t groups = kv_groups(hd, group);
        for (int64_t j = 0; j < n; ++j) {
            for (int64_t d = 0; d < hd; ++d) {
                const float* sm = scale_min + (j * groups + d / group) * 2;
                acc[d] += w[j] * sm[0] * static_cast<float>(q4_nibble(rows[j], d)) + w[j] * sm[1];
            }
        }
    }
    static void scale(float* y, float a, int64_t n) {
        for (int64_t i = 0; i < n; ++i) y[i] *= a;
    }
    // x[i] = exp(x[i] - shift); returns the sum.
    static float exp_shift_sum(float* x, int64_t n, float shift) {
        float s = 0.0f;
        for (int64_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - shift));
        return s;
    }
    static void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
        for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
    }
    // A Q4 K row of a full block: value c = min_c + code * scale_c (scale_min: head_dim scales,
    // then head_dim minima).
    static void q4_channels_to_f32(const uint8_t* q, const float* scale_min, int64_t hd,
                                   float* out) {
        for (int64_t c = 0; c < hd; ++c) {
            out[c] = scale_min[hd + c] + static_cast<float>(q4_nibble(q, c)) * scale_min[c];
        }
    }
    static void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
        for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
    }
};

}  // namespace

void run_attention_scalar(const PagedAttentionParams& p, std::span<const AttentionWork> work,
                          ThreadPool& pool) {
    run_attention<ScalarOps>(p, work, pool);
}

}  // namespace vela::attention_detail
