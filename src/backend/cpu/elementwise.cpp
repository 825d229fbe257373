// Elementwise ops of the forward pass. Plain loops the compiler vectorises for the baseline
// ISA: they touch O(hidden) floats per token, negligible next to the matmuls.
#include <algorithm>
#include <cmath>

#include "backend/cpu/ops.h"

namespace vela::cpu {

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
    // Accumulate in double: hidden sizes reach 8k and the result scales every element.
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * weight[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        y[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void gelu_mul(const float* gate, const float* up, float* y, int64_t n) {
    // GELU's tanh approximation, as Gemma was trained with (gelu_pytorch_tanh).
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        const float inner = kSqrt2OverPi * (g + 0.044715f * g * g * g);
        y[i] = 0.5f * g * (1.0f + std::tanh(inner)) * up[i];
    }
}

void softmax(float* x, int64_t n) {
    if (n <= 0) return;
    const float mx = *std::max_element(x, x + n);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float* cos,
          const float* sin, bool neox) {
    const int64_t half = rot_dim / 2;
    for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
            // neox rotates the two halves of the rotated span against each other; the GGUF
            // Llama layout rotates adjacent pairs.
            const int64_t i0 = neox ? i : 2 * i;
            const int64_t i1 = neox ? i + half : 2 * i + 1;
            const float a = v[i0], b = v[i1];
            v[i0] = a * cos[i] - b * sin[i];
            v[i1] = a * sin[i] + b * cos[i];
        }
    }
}

}  // namespace vela::cpu
