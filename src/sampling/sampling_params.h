#pragma once
// The knobs of one sequence's sampler, with the defaults llama.cpp users expect.
#include <cstdint>

namespace vela {

struct SamplingParams {
    float temperature = 0.8f;         // 0 => greedy (argmax, ties to the lowest id)
    int32_t top_k = 40;               // <= 0 => disabled
    float top_p = 0.95f;              // 1 => disabled
    float min_p = 0.05f;              // 0 => disabled
    float repetition_penalty = 1.0f;  // CTRL style: divide positive logits, multiply negative
    float frequency_penalty = 0.0f;   // OpenAI style: subtracted once per occurrence
    float presence_penalty = 0.0f;    // OpenAI style: subtracted once if present at all
    int32_t penalty_last_n = 64;      // recent tokens the penalties look at (-1 = all, 0 = off)
    uint64_t seed = kRandomSeed;      // kRandomSeed => drawn from std::random_device

    static constexpr uint64_t kRandomSeed = 0xFFFFFFFFFFFFFFFFull;

    // Throws vela::InvalidArgument naming the field and the value (NaN, negative temperature,
    // top_p outside (0, 1], ...). Call at the library boundary, before building a Sampler.
    void validate() const;

    bool penalties_enabled() const {
        return penalty_last_n != 0 && (repetition_penalty != 1.0f || frequency_penalty != 0.0f ||
                                       presence_penalty != 0.0f);
    }
};

}  // namespace vela
