// Portable path: plain loops (the compiler may vectorise what it can prove safe).
#include <cmath>

#include "attention/attention_kernel.h"
#include "core/fp16.h"

namespace vela::attention_detail {
namespace {

struct ScalarOps {
    static float dot(const float* a, const float* b, int64_t n) {
        float s = 0.0f;
        for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
        return s;
    }
    static void axpy(float a, const float* x, float* y, int64_t n) {
        for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
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
};

}  // namespace

void run_attention_scalar(const PagedAttentionParams& p, std::span<const AttentionWork> work,
                          ThreadPool& pool) {
    run_attention<ScalarOps>(p, work, pool);
}

}  // namespace vela::attention_detail
