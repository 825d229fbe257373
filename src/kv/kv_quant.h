#pragma once
// Codecs of the quantised KV formats, shared by the host storage (quantisation fused into the
// KV append, reads for tests) and the attention kernels (which take the scales as they are
// stored and dequantise in registers). A row is one token's K or V of one KV head; Q8 and Q4
// values quantise it in groups of `group` values (kKvGroup unless --kv-quant-group says
// otherwise: 32, 64 or 128), so a row's bytes depend on that row alone; Q4 keys quantise a block
// of rows per channel (below).
//
// Q8: symmetric int8, one fp16 scale per group: value = q * scale, q in [-127, 127], scale =
// max|x| / 127 rounded up to fp16 (up, so no value needs clamping: |x - value| <= scale / 2).
// A group of 32 (as llama.cpp's q8_0) rather than one scale per row: keys of real models have
// outlier channels (Qwen2.5's reach 10-100x the median), and one outlier then only coarsens its
// own 32 values; the kernels apply the scale once per group of a dot product.
//
// Q4 values (KIVI's per-token half): asymmetric 4-bit, an fp16 (scale, min) pair per group:
// value = min + q * scale, q in [0, 15], min rounded down and scale = (max - min) / 15 rounded
// up to fp16, so again |x - value| <= scale / 2. Nibbles are packed per 8 values in 4 bytes
// (byte i: value i in the low nibble, value i + 4 in the high one), which widens to 8 floats
// with one shift and one mask.
//
// Q4 keys (KIVI's per-channel half): the same rounding rules, but each channel of a full KV
// block of one head (block_size tokens) shares one (scale, min) pair: key outliers sit in
// channels, so a channel's range is narrow across tokens where a token's range across channels
// is not. Codes are packed per token row as for Q4 values (the kernels dot a row of codes with
// the query scaled per channel). Not row-local: a block is quantised once, when it is full
// (kv/kivi_keys.h keeps the open block in fp16 until then).
#include <cstdint>

namespace vela {

inline constexpr int64_t kKvGroup = 32;

// The group sizes a quantised row may use: multiples of 32, so that the kernels' 32-column
// register tiles never straddle two groups.
inline bool valid_kv_group(int64_t group) {
    return group == 32 || group == 64 || group == 128;
}

inline int64_t kv_groups(int64_t head_dim, int64_t group) {
    return (head_dim + group - 1) / group;
}

inline int64_t q4_row_bytes(int64_t head_dim) {
    return (head_dim + 7) / 8 * 4;
}

// x[0, n) -> q[0, n), scales[0, kv_groups(n, group)) (fp16 bits). A group with a NaN keeps NaN
// in its scale (so a poisoned row reads back NaN); an all-zero group has scale 0.
void quantize_q8_row(const float* x, int64_t n, int64_t group, int8_t* q, uint16_t* scales);
void dequantize_q8_row(const int8_t* q, const uint16_t* scales, int64_t n, int64_t group,
                       float* out);

// x[0, n) -> q[0, q4_row_bytes(n)), scale_min[0, 2 * kv_groups(n, group)) (fp16 bits: scale,
// min per group). A group with a NaN reads back NaN.
void quantize_q4_row(const float* x, int64_t n, int64_t group, uint8_t* q, uint16_t* scale_min);
void dequantize_q4_row(const uint8_t* q, const uint16_t* scale_min, int64_t n, int64_t group,
                       float* out);

// Keys of one full block of one head: x[t * head_dim + c] for t < n_tokens -> codes q (n_tokens
// rows of q4_row_bytes(head_dim)), scale_min[0, 2 * head_dim) (fp16 bits: the scale of every
// channel, then the min of every channel). A channel with a NaN reads back NaN.
void quantize_q4_channels(const float* x, int64_t n_tokens, int64_t head_dim, uint8_t* q,
                          uint16_t* scale_min);
// One token's key row of such a block back as float.
void dequantize_q4_channels_row(const uint8_t* q_row, const uint16_t* scale_min, int64_t head_dim,
                                float* out);

// The nibble of value d of a packed Q4 row.
inline int q4_nibble(const uint8_t* q, int64_t d) {
    const uint8_t byte = q[d / 8 * 4 + d % 4];
    return d % 8 < 4 ? byte & 0x0F : byte >> 4;
}

}  // namespace vela
