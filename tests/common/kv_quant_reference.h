#pragma once
// Double-precision references of the quantised KV formats, written from their definitions
// (src/kv/kv_quant.h) without the code under test: what a row should read back as, and how far
// an implementation in float may be from it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace vela::test {

// The spacing of IEEE binary16 values around x >= 0 (10 stored mantissa bits, subnormals
// below 2^-14).
inline double fp16_quantum(double x) {
    int e = 0;
    std::frexp(x, &e);
    return std::ldexp(1.0, std::max(e - 1, -14) - 10);
}

// Whether v sits within `eps` of a rounding tie (k + 1/2): there a float computation may
// legitimately land on either side.
inline bool near_tie(double v, double eps) {
    return std::fabs(v - std::floor(v) - 0.5) < eps;
}

struct QuantRow {
    std::vector<double> value;  // what the row should read back as
    std::vector<double> slack;  // per element: how far a float implementation may be from it
    std::vector<double> scale;  // per element: the scale of its group
};

// Q8: per group of `group` values (32 unless the storage was made with another), scale = max|x| /
// 127 rounded up to fp16, q = round(x / scale) (ties to even), value = q * scale. Slack: one step
// where x / scale is a near-tie, or where max|x| / 127 is (nearly) an fp16 value (float may then
// round the scale either way).
inline QuantRow q8_reference(const float* x, int64_t n, int64_t group) {
    QuantRow r{std::vector<double>(n), std::vector<double>(n), std::vector<double>(n)};
    for (int64_t g = 0; g * group < n; ++g) {
        const int64_t begin = g * group, end = std::min<int64_t>(n, begin + group);
        double amax = 0.0;
        for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(double{x[i]}));
        const double exact = amax / 127.0, quantum = fp16_quantum(exact);
        const double scale = std::ceil(exact / quantum) * quantum;
        const bool scale_tie = exact > 0.0 && near_tie(exact / quantum + 0.5, 1e-4);
        for (int64_t i = begin; i < end; ++i) {
            const double v = scale > 0.0 ? x[i] / scale : 0.0;
            r.value[i] = std::nearbyint(v) * scale;
            r.slack[i] = (scale_tie || near_tie(v, 1e-4)) ? 1.01 * scale : 0.0;
            r.scale[i] = scale;
        }
    }
    return r;
}

// The nearest OCP FP8 e4m3 value to v (ties to even; beyond the largest finite value, 448, it
// saturates), and in `step` the spacing of e4m3 values where v lies.
inline double e4m3_round(double v, double& step) {
    const double a = std::fabs(v);
    int e = 0;
    std::frexp(a, &e);                                // a in [2^(e-1), 2^e)
    step = std::ldexp(1.0, std::max(e - 1, -6) - 3);  // 3 mantissa bits, subnormals below 2^-6
    const double r = std::min(std::nearbyint(a / step) * step, 448.0);
    return v < 0 ? -r : r;
}

// FP8 (the CUDA backend's, one group a row): scale = max|x| / 448 (in float), value =
// e4m3(x / scale) * scale. Slack: one step where x / scale is a near-tie, plus half a float ulp
// of the value (e4m3 times a float scale is rounded to float when read).
inline QuantRow fp8_reference(const float* x, int64_t n) {
    QuantRow r{std::vector<double>(n), std::vector<double>(n), std::vector<double>(n)};
    float amax = 0.f;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
    const double scale = amax / 448.f;
    for (int64_t i = 0; i < n; ++i) {
        double step = 0.0;
        const double v = scale > 0.0 ? x[i] / scale : 0.0;
        r.value[i] = e4m3_round(v, step) * scale;
        r.slack[i] = (near_tie(std::fabs(v) / step, 1e-4) ? 1.01 * step * scale : 0.0) +
                     std::fabs(r.value[i]) * 0x1p-24;
        r.scale[i] = scale;
    }
    return r;
}

// Q4: per group of `group` values, min = min(x) rounded down to fp16, scale = (max(x) - min) / 15
// rounded up to fp16, q = round((x - min) / scale) (ties to even), value = min + q * scale.
// Slack as for Q8, plus half a float ulp of the result (the sum is rounded to float).
inline QuantRow q4_reference(const float* x, int64_t n, int64_t group) {
    QuantRow r{std::vector<double>(n), std::vector<double>(n), std::vector<double>(n)};
    for (int64_t g = 0; g * group < n; ++g) {
        const int64_t begin = g * group, end = std::min<int64_t>(n, begin + group);
        double lo = x[begin], hi = x[begin];
        for (int64_t i = begin; i < end; ++i) {
            lo = std::min(lo, double{x[i]});
            hi = std::max(hi, double{x[i]});
        }
        const double min_quantum = fp16_quantum(std::fabs(lo));
        // Rounding down may cross into the binade below a negative power of two: still exact.
        const double min = std::floor(lo / min_quantum) * min_quantum;
        const double exact = (hi - min) / 15.0, quantum = fp16_quantum(exact);
        const double scale = std::ceil(exact / quantum) * quantum;
        const bool scale_tie = exact > 0.0 && near_tie(exact / quantum + 0.5, 1e-4);
        for (int64_t i = begin; i < end; ++i) {
            const double v = scale > 0.0 ? (x[i] - min) / scale : 0.0;
            r.value[i] = min + std::nearbyint(v) * scale;
            // Plus the float rounding of min + q * scale (q * scale itself is exact).
            r.slack[i] = ((scale_tie || near_tie(v, 1e-4)) ? 1.01 * scale : 0.0) +
                         std::fabs(r.value[i]) * 0x1p-24;
            r.scale[i] = scale > 0.0 ? scale : 2 * min_quantum;  // all equal: min's rounding
        }
    }
    return r;
}

}  // namespace vela::test
