#pragma once
// Rotary position embedding angles, including the context-extension schemes found in GGUF
// metadata: linear position interpolation, YaRN, and Llama-3's per-frequency factors (stored as
// the `rope_freqs.weight` tensor).
#include <cstdint>

#include "model/hparams.h"

namespace vela {

// Fills cos/sin (rope.dim / 2 entries each) for one absolute position. freq_factors may be null.
void rope_cos_sin(const RopeParams& rope, const float* freq_factors, int64_t pos, float* cos,
                  float* sin);

}  // namespace vela
