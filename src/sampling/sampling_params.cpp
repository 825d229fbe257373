#include "sampling/sampling_params.h"

#include <cmath>

#include "core/error.h"

namespace vela {
namespace {

void require_finite(const char* field, float v) {
    if (!std::isfinite(v))
        fail<InvalidArgument>("sampling: {} must be a finite number, got {}", field, v);
}

void require_range(const char* field, float v, float lo, float hi, const char* range) {
    require_finite(field, v);
    if (!(v >= lo && v <= hi))
        fail<InvalidArgument>("sampling: {} must be in {}, got {}", field, range, v);
}

}  // namespace

void SamplingParams::validate() const {
    require_finite("temperature", temperature);
    if (temperature < 0.0f)
        fail<InvalidArgument>("sampling: temperature must be >= 0, got {}", temperature);
    require_finite("top_p", top_p);
    if (!(top_p > 0.0f && top_p <= 1.0f))
        fail<InvalidArgument>("sampling: top_p must be in (0, 1], got {}", top_p);
    require_range("min_p", min_p, 0.0f, 1.0f, "[0, 1]");
    require_finite("repetition_penalty", repetition_penalty);
    if (!(repetition_penalty > 0.0f))
        fail<InvalidArgument>("sampling: repetition_penalty must be > 0, got {}",
                              repetition_penalty);
    // OpenAI's documented range; beyond it the penalties swamp any logit and make no sense.
    require_range("frequency_penalty", frequency_penalty, -2.0f, 2.0f, "[-2, 2]");
    require_range("presence_penalty", presence_penalty, -2.0f, 2.0f, "[-2, 2]");
    if (penalty_last_n < -1)
        fail<InvalidArgument>("sampling: penalty_last_n must be >= -1 (-1 = whole context), got {}",
                              penalty_last_n);
}

}  // namespace vela
