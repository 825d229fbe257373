// Portable path: plain loops (the compiler may vectorise what it can prove safe).
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
