#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace vela {
namespace {

// YaRN: the dimension below which (in rotation count over the original context) frequencies
// are interpolated rather than extrapolated (Peng et al. 2023, eq. for d(r)).
double yarn_corr_dim(int64_t n_dims, int64_t n_ctx_orig, double n_rot, double base) {
    return n_dims * std::log(n_ctx_orig / (n_rot * 2 * std::numbers::pi)) / (2 * std::log(base));
}

}  // namespace

void rope_cos_sin(const RopeParams& r, const float* freq_factors, int64_t pos, float* cos,
                  float* sin) {
    const int64_t half = r.dim / 2;
    const bool yarn = r.scaling == RopeScaling::Yarn;
    const double freq_scale = (r.scaling == RopeScaling::Linear || yarn) ? 1.0 / r.factor : 1.0;
    double low = 0, high = 0, mscale = r.attn_factor;
    if (yarn) {
        low = std::max(
            0.0, std::floor(yarn_corr_dim(r.dim, r.original_context, r.yarn_beta_fast, r.theta)));
        high = std::min<double>(r.dim - 1, std::ceil(yarn_corr_dim(r.dim, r.original_context,
                                                                   r.yarn_beta_slow, r.theta)));
        mscale *= 1.0 + 0.1 * std::log(1.0 / freq_scale);
    }
    for (int64_t i = 0; i < half; ++i) {
        double freq = std::pow(static_cast<double>(r.theta), -2.0 * i / r.dim);
        if (freq_factors != nullptr) freq /= freq_factors[i];
        const double extrap = pos * freq;
        double angle = extrap * freq_scale;
        if (yarn) {
            const double y = (i - low) / std::max(0.001, high - low);
            const double ramp = (1.0 - std::clamp(y, 0.0, 1.0)) * r.yarn_ext_factor;
            angle = angle * (1 - ramp) + extrap * ramp;
        }
        cos[i] = static_cast<float>(std::cos(angle) * mscale);
        sin[i] = static_cast<float>(std::sin(angle) * mscale);
    }
}

}  // namespace vela
