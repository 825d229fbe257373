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
//
// Q4 is KIVI's 4-bit (kv/kv_quant.h, with its roundings): V rows as codes with an fp16 (scale,
// min) per `group` values; K per channel of a full block, one fp16 (scale, min) pair per channel
// of each (block, kv head), quantised when the block's last row is written. Until then a block's
// keys live in fp16 in a residual (KvResidual), and a query reads its own block from there unless
// it is the block's last row (kv/kivi_keys.h's rule: what a row reads depends on positions only).
enum class KvCode : uint8_t { F16, BF16, Int8, Fp8, Q4 };

constexpr bool is_8bit(KvCode c) {
    return c == KvCode::Int8 || c == KvCode::Fp8;
}

// One layer's K or V cache: blocks of block_bytes, each [kv head][block_size][head_dim] values
// and, for 8-bit codes, one float scale per row, [kv head][block_size], from byte scale_offset
// of the block on. Q4: head_dim / 2 bytes of codes a row, and from scale_offset on the fp16
// pairs: K [kv head][scales of every channel, then mins], V [kv head][block_size][group]
// (scale, min).
struct KvCacheShape {
    int64_t n_kv_heads = 0, head_dim = 0, block_size = 0, block_bytes = 0, scale_offset = 0;
    KvCode code = KvCode::F16;
    int64_t group = 0;  // Q4: values per V scale (32, 64 or 128)
};

// Q4's fp16 keys of open blocks: one layer's pool, [pool slot][kv head][block_size][head_dim],
// and every block's pool slot (-1: none; the same for every layer).
struct KvResidual {
    void* keys = nullptr;
    const int32_t* slot_of = nullptr;
};

// Stores `rows` rows of K and V (n_kv_heads x head_dim floats each) at their slots of one
// layer's caches; zeroes their attention scores when the layer keeps them (`scores`, laid out
// [block][kv head][block_size]).
struct KvWrite {
    const float* k = nullptr;
    const float* v = nullptr;
    const int64_t* slots = nullptr;
    int64_t rows = 0;
    void* k_cache = nullptr;
    void* v_cache = nullptr;
    float* scores = nullptr;
    // [n_kv_heads][head_dim], subtracted from k before 8-bit codes store it, or nullptr
    // (KvLayout::key_offsets).
    const float* k_offsets = nullptr;
    KvCacheShape shape;
    KvResidual residual;  // Q4 only
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
    float* scores = nullptr;           // as KvWrite's
    const float* k_offsets = nullptr;  // as KvWrite's
    KvCacheShape shape;
    KvResidual residual;  // Q4 only
};
void rope_write_kv(const RopeWriteKv& p, void* stream);

// Q4 (kv_q4.cu). write_kv's kernel for Q4 rows.
void write_kv_q4(const KvWrite& w, void* stream);
// Quantises the keys of blocks blocks[0, *count) (a device count, at most max_count: the launch
// fits the largest step of its shape, as a recorded graph needs) from their residuals, per
// channel: codes and the (scale, min) pairs into k_cache. The residuals stay.
void close_q4_blocks(void* k_cache, const KvResidual& r, const KvCacheShape& s,
                     const int32_t* blocks, const int32_t* count, int64_t max_count,
                     void* stream);
// The dequantised keys of blocks[0, n) into their residuals (a closed block written again).
void reopen_q4_blocks(const void* k_cache, const KvResidual& r, const KvCacheShape& s,
                      const int32_t* blocks, int64_t n, void* stream);
// Eviction's row moves for Q4 keys, every layer and head (KvRowMoves moves the V side): moves
// holds (src slot, dst slot, 1 when the source row is read from its block's residual, 0 when
// from its codes) triples, in order; every destination block has a residual. k_cache is layer
// 0's K side, each layer's 2 * side_bytes further; residuals the pool, residual_layer_bytes a
// layer.
void move_q4_keys(const void* k_cache, int64_t side_bytes, void* residuals,
                  int64_t residual_layer_bytes, const int32_t* slot_of, const KvCacheShape& s,
                  int64_t n_layers, const int32_t* moves, int64_t n, void* stream);
// slot_of[pairs[2 i]] = pairs[2 i + 1] for i < n.
void patch_slots(int32_t* slot_of, const int32_t* pairs, int64_t n, void* stream);

// The eviction policies' attention statistics (KvScoreMode, kv/kv_storage.h): for every key of
// each sequence, the softmax weight the step's query rows give it (Accumulate: all rows, added
// to the score; Last: the last row, replacing it), summed over the query heads of its kv head.
// The weights are exp(scale q.k - lse) with the attention kernel's own LSE, so they are the
// probabilities that kernel used; keys outside a row's window get none.
struct KvScores {
    const void* q = nullptr;  // [rows][n_heads][head_dim], 16-bit (bf16 when q_bf16)
    bool q_bf16 = false;
    const float* lse = nullptr;  // [rows][n_heads], natural log
    float scale = 0.f;
    int64_t n_heads = 0;
    int64_t window = 0;  // keys within the last `window` positions of a row; 0: all
    bool last = false;
    const void* k_cache = nullptr;
    KvCacheShape shape;
    const int32_t* block_table = nullptr;  // [n_seqs][table_stride]
    int64_t table_stride = 0;
    const int32_t* query_start = nullptr;  // [n_seqs + 1]
    const int32_t* kv_len = nullptr;       // [n_seqs]
    int64_t n_seqs = 0, max_kv_len = 0;
    float* scores = nullptr;  // the layer's, as KvWrite's
};
void attention_scores(const KvScores& s, void* stream);

// out[i * n_kv_heads + h] = scores[(slot_i / block_size * n_kv_heads + h) * block_size +
// slot_i % block_size] for the n slots of `slots`.
void gather_scores(const float* scores, const int64_t* slots, int64_t n, int64_t n_kv_heads,
                   int64_t block_size, float* out, void* stream);

// Eviction's row moves (BlockOp::MoveRow): one token's rows (scales, scores) from flat slot src to
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
    float* scores = nullptr;  // every layer's, scores_per_layer floats apart; moved with the K side
    int64_t scores_per_layer = 0;
    KvCacheShape shape;
};
void move_kv_rows(const KvRowMoves& m, void* stream);

}  // namespace vela::cuda_backend
