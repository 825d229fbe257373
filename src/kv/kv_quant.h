#pragma once
// Row codecs of the quantised KV formats, shared by the host storage (quantisation fused into
// the KV append, reads for tests) and the attention kernels (which take the scales as they are
// stored and dequantise in registers).
//
// Q8: symmetric int8 with one fp16 scale per group of kQ8Group values of a row (a row is one
// token's K or V of one KV head), value = q * scale, q in [-127, 127], scale = max|x| / 127
// rounded up to fp16 (up, so that no value needs clamping: |x - value| <= scale / 2 always). A group of 32 (as llama.cpp's q8_0) rather than one scale per row: keys of
// real models have outlier channels (Qwen2.5's reach 10-100x the median), and one outlier then
// only coarsens its own 32 values; the kernels apply the scale once per group of a dot product,
// so the cost is one multiply per 32 values.
#include <cstdint>

namespace vela {

inline constexpr int64_t kQ8Group = 32;

inline int64_t q8_groups(int64_t head_dim) {
    return (head_dim + kQ8Group - 1) / kQ8Group;
}

// x[0, n) -> q[0, n), scales[0, q8_groups(n)) (fp16 bits). A group with a NaN keeps NaN in its
// scale (so a poisoned row reads back NaN); an all-zero group has scale 0.
void quantize_q8_row(const float* x, int64_t n, int8_t* q, uint16_t* scales);
void dequantize_q8_row(const int8_t* q, const uint16_t* scales, int64_t n, float* out);

}  // namespace vela
