#pragma once
// Byte layouts of the GGUF block-quantised types (little-endian, packed, no padding), and of
// the 8-bit activation blocks the matmul quantises its input to. Only PODs here: this header is
// included by the per-ISA kernel files, which must not pull in inline code built for baseline.
#include <cstdint>

namespace vela::cpu {

constexpr int kQK = 32;    // elements per block of the legacy types
constexpr int kQKK = 256;  // elements per super-block of the K-quants

// Legacy types: x = d * q (+ m), element i < 16 in the low nibble of qs[i], i >= 16 in the
// high nibble of qs[i - 16]; the 5-bit types keep bit 4 of element i in bit i of qh.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[16];
};
struct BlockQ4_1 {
    uint16_t d, m;
    uint8_t qs[16];
};
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
};
struct BlockQ5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
};
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[32];
};

// K-quants: 256 elements in sub-blocks of 16 or 32, each with its own small integer scale.
struct BlockQ2_K {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
};
struct BlockQ3_K {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};
struct BlockQ4_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};
struct BlockQ5_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
struct BlockQ6_K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// One activation block: x_i ~= d * q_i, and s = d * sum(q_i) so that a weight block of the form
// w_i = dw * u_i + c contributes dw * d * dot(u, q) + c * s. Floats (not fp16) keep the
// activation error at the rounding of q alone.
struct ActBlock {
    float d;
    float s;
    int8_t q[32];
};
static_assert(sizeof(ActBlock) == 40);

// One activation super-block for the K-quant weights (llama.cpp's Q8_K idea): x_i ~= d * q_i over
// 256 values, with the sum of every 16 q (a weight sub-block of 16 or two of them make one of 32)
// so that per-sub-block weight minimums and offsets cost one small integer dot per super-block.
// One float scale per 256 keeps the integer dot running across all sub-blocks of a weight
// super-block; q first and the size a multiple of 64 keep q cache-line aligned in an array.
struct alignas(64) ActBlockK {
    int8_t q[256];
    int16_t bsums[16];
    float d;
};
static_assert(sizeof(ActBlockK) == 320);

}  // namespace vela::cpu
