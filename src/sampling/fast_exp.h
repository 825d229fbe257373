#pragma once
// exp(x) for x <= 0, branch-free so loops over a whole vocabulary vectorise (libm's expf is a
// call per element). Samplers only exponentiate logit - max, hence the restricted domain.
// Accuracy: within 3e-7 relative of exp(x) on [-87, 0] (tests/sampling checks it); 0 below,
// where exp(x) < 2e-38 is nothing next to the maximum's weight of 1.
#include <bit>
#include <cstdint>

namespace vela::sampling {

inline float exp_nonpositive(float x) {
    constexpr float kLog2e = 1.44269504088896341f;
    // ln 2 split so n * kLn2Hi is exact for |n| < 2^11: r keeps full precision.
    constexpr float kLn2Hi = 0.693145751953125f;
    constexpr float kLn2Lo = 1.42860682030941723212e-6f;
    constexpr float kMin = -87.0f;  // 2^n stays a normal float
    const float xc = x < kMin ? kMin : (x > 0.0f ? 0.0f : x);
    // x = n ln2 + r, |r| <= ln2/2; xc <= 0 so truncating (t - 0.5) rounds to nearest.
    const auto n = static_cast<int32_t>(xc * kLog2e - 0.5f);
    const float nf = static_cast<float>(n);
    const float r = (xc - nf * kLn2Hi) - nf * kLn2Lo;
    // Taylor series of e^r to degree 7: truncation error < 6e-9 for |r| <= ln2/2.
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float scale = std::bit_cast<float>(static_cast<uint32_t>(n + 127) << 23);
    return x < kMin ? 0.0f : p * scale;
}

}  // namespace vela::sampling
