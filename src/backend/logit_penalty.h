#pragma once
// Backend::apply_penalties' entry: plain data, shared by the backends and their device kernels.
#include <cstdint>

namespace vela {

// One penalised logit, x[row][token], seen `count` times in its row's penalty window:
// divided by `repetition` when positive, multiplied by it otherwise, then lowered by
// count * frequency + presence, in float as sampling::penalised_logit computes it.
struct LogitPenalty {
    int32_t row = 0, token = 0, count = 0;
    float repetition = 1.0f, frequency = 0.0f, presence = 0.0f;
};

}  // namespace vela
