#pragma once
// Launchers of the CUDA backend's KV-cache kernels (kv_ops.cu): appending a step's K/V rows
// (with RoPE fused in), and eviction's row moves. Plain C++ (no CUDA headers): every pointer is
// a device pointer, every `stream` a cudaStream_t.
#include <cstdint>

namespace vela::cuda_backend {

// How a KV value is stored: 16-bit floats, or 8-bit codes (int8, OCP FP8 e4m3) times one float
// scale per row (a token's head_dim values of one kv head). Int8: scale = max|x| / 127 rounded
// up to an fp16 value, code = round(x / scale) (ties to even), as the CPU's Q8 with one group a
// row. Fp8: scale = max|x| / 448, code = e4m3(x / scale) (to nearest, saturating). A row with a
// NaN gets a NaN scale.
enum class KvCode : uint8_t { F16, BF16, Int8, Fp8 };

constexpr bool is_8bit(KvCode c) {
    return c == KvCode::Int8 || c == KvCode::Fp8;
}

// One layer's K or V cache: blocks of block_bytes, each [kv head][block_size][head_dim] values
// and, for 8-bit codes, one float scale per row, [kv head][block_size], from byte scale_offset
// of the block on.
struct KvCacheShape {
    int64_t n_kv_heads = 0, head_dim = 0, block_size = 0, block_bytes = 0, scale_offset = 0;
    KvCode code = KvCode::F16;
};

// Stores `rows` rows of K and V (n_kv_heads x head_dim floats each) at their slots of one
// layer's caches.
struct KvWrite {
    const float* k = nullptr;
    const float* v = nullptr;
    const int64_t* slots = nullptr;
    int64_t rows = 0;
    void* k_cache = nullptr;
    void* v_cache = nullptr;
    KvCacheShape shape;
};
void write_kv(const KvWrite& w, void* stream);

// RoPE of q (n_heads heads) and of k (the shape's n_kv_heads), both in place, then write_kv()
// of the rotated k and of v: one launch for a layer's attention inputs.
struct RopeWriteKv {
    float* q = nullptr;
    float* k = nullptr;
    const float* v = nullptr;
    const float* cos = nullptr;
    const float* sin = nullptr;
    const int64_t* slots = nullptr;
    int64_t rows = 0, n_heads = 0, rot_dim = 0;
    bool neox = false;
    void* k_cache = nullptr;
    void* v_cache = nullptr;
    KvCacheShape shape;
};
void rope_write_kv(const RopeWriteKv& p, void* stream);

// Eviction's row moves (BlockOp::MoveRow): one token's rows (and scales) from flat slot src to
// flat slot dst, in `layer` (-1: all) and KV head `head` (-1: all), in the order given (a move
// may read a slot an earlier one wrote). `moves` is a device array; `cache` holds per layer the
// K then the V side, each side_bytes.
struct KvRowMove {
    int32_t src, dst, layer, head;
};
struct KvRowMoves {
    const KvRowMove* moves = nullptr;
    int64_t count = 0;
    void* cache = nullptr;
    int64_t side_bytes = 0, n_layers = 0;
    KvCacheShape shape;
};
void move_kv_rows(const KvRowMoves& m, void* stream);

}  // namespace vela::cuda_backend
