// KIVI's 4-bit KV on the GPU (kv_ops.h, KvCode::Q4): the append of a step's rows (V as codes
// with an fp16 (scale, min) per group of a row, K in fp16 into its open block's residual), the
// per-channel quantisation of the K blocks a step filled, a block's keys back into a residual
// (a closed block written again), and the residual map's updates.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backend/cuda/kv_ops.h"
#include "backend/cuda/kv_q4.cuh"
#include "backend/cuda/launch.cuh"

namespace vela::cuda_backend {
namespace {

using namespace q4;

// One warp per (row, kv head, side).
__global__ void write_kv_q4_kernel(KvWrite w) {
    const KvCacheShape& s = w.shape;
    const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
    if (warp >= w.rows * s.n_kv_heads * 2) return;
    const int lane = threadIdx.x % 32;
    const bool value = warp % 2 != 0;
    const int64_t row = warp / 2 / s.n_kv_heads, head = warp / 2 % s.n_kv_heads;
    const float* x = (value ? w.v : w.k) + (row * s.n_kv_heads + head) * s.head_dim;
    if (value) {
        store_q4_value_row(x, w.v_cache, s, w.slots[row], head, lane);
    } else {
        store_q4_key_row(x, w.residual, s, w.slots[row], head, lane);
    }
}

// Channels 8 w .. 8 w + 7 of (block, head), one lane per w: per channel the (scale, min) of the
// block's rows in the residual, then every row's codes (one 32-bit word of the row per lane).
__global__ void close_q4_kernel(void* k_cache, KvResidual r, KvCacheShape s,
                                const int32_t* blocks, const int32_t* count) {
    const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (warp >= static_cast<int64_t>(*count) * s.n_kv_heads) return;
    const int64_t blk = blocks[warp / s.n_kv_heads], head = warp % s.n_kv_heads;
    const int64_t hd = s.head_dim, bs = s.block_size;
    if (lane >= hd / 8) return;
    const int32_t at = r.slot_of[blk];
    if (at < 0) return;
    const __half* rows =
        reinterpret_cast<const __half*>(r.keys) + (at * s.n_kv_heads + head) * bs * hd + 8 * lane;
    float lo[8], hi[8];
    bool nan[8];
    for (int i = 0; i < 8; ++i) {
        lo[i] = INFINITY;
        hi[i] = -INFINITY;
        nan[i] = false;
    }
    for (int64_t t = 0; t < bs; ++t) {
        const uint4 u = *reinterpret_cast<const uint4*>(rows + t * hd);
        const __half* h = reinterpret_cast<const __half*>(&u);
        for (int i = 0; i < 8; ++i) {
            const float v = __half2float(h[i]);
            nan[i] = nan[i] || v != v;
            lo[i] = fminf(lo[i], v);
            hi[i] = fmaxf(hi[i], v);
        }
    }
    char* block = static_cast<char*>(k_cache) + blk * s.block_bytes;
    __half* params = reinterpret_cast<__half*>(block + s.scale_offset) + head * 2 * hd;
    __half scale[8], mn[8];
    float sf[8], mf[8];
    for (int i = 0; i < 8; ++i) {
        q4_scale_min(lo[i], hi[i], nan[i], scale[i], mn[i]);
        sf[i] = __half2float(scale[i]);
        mf[i] = __half2float(mn[i]);
    }
    *reinterpret_cast<uint4*>(params + 8 * lane) = *reinterpret_cast<const uint4*>(scale);
    *reinterpret_cast<uint4*>(params + hd + 8 * lane) = *reinterpret_cast<const uint4*>(mn);
    for (int64_t t = 0; t < bs; ++t) {
        const uint4 u = *reinterpret_cast<const uint4*>(rows + t * hd);
        const __half* h = reinterpret_cast<const __half*>(&u);
        uint32_t word = 0;
        for (int i = 0; i < 8; ++i)
            word |= q4_code(__half2float(h[i]), sf[i], mf[i]) << (8 * (i % 4) + (i < 4 ? 0 : 4));
        *reinterpret_cast<uint32_t*>(block + code_offset(s, head, t) + 4 * lane) = word;
    }
}

// The inverse, for blocks written again after their residual was released: every row's
// dequantised keys (min + code * scale, rounded to fp16) into the block's residual.
__global__ void reopen_q4_kernel(const void* k_cache, KvResidual r, KvCacheShape s,
                                 const int32_t* blocks, int64_t n) {
    const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (warp >= n * s.n_kv_heads) return;
    const int64_t blk = blocks[warp / s.n_kv_heads], head = warp % s.n_kv_heads;
    const int64_t hd = s.head_dim, bs = s.block_size;
    if (lane >= hd / 8) return;
    const int32_t at = r.slot_of[blk];
    if (at < 0) return;
    const char* block = static_cast<const char*>(k_cache) + blk * s.block_bytes;
    const __half* params = reinterpret_cast<const __half*>(block + s.scale_offset) + head * 2 * hd;
    __half* rows = reinterpret_cast<__half*>(r.keys) + (at * s.n_kv_heads + head) * bs * hd;
    for (int64_t t = 0; t < bs; ++t) {
        const uint32_t word =
            *reinterpret_cast<const uint32_t*>(block + code_offset(s, head, t) + 4 * lane);
        __half out[8];
        for (int i = 0; i < 8; ++i) {
            const uint32_t c = word >> (8 * (i % 4) + (i < 4 ? 0 : 4)) & 0xFu;
            const int64_t ch = 8 * lane + i;
            out[i] = __float2half_rn(__half2float(params[hd + ch]) +
                                     static_cast<float>(c) * __half2float(params[ch]));
        }
        *reinterpret_cast<uint4*>(rows + t * hd + 8 * lane) = *reinterpret_cast<const uint4*>(out);
    }
}

// One block per layer: the moves in order (a move may read a row an earlier one wrote), each
// row's keys of every head into the destination block's residual: from the source block's
// residual, or dequantised from its codes as kv/kivi_keys.h's read() gives them.
__global__ void move_q4_keys_kernel(const char* k_cache, int64_t side_bytes, char* residuals,
                                    int64_t residual_layer_bytes, const int32_t* slot_of,
                                    KvCacheShape s, const int32_t* moves, int64_t n) {
    const int64_t layer = blockIdx.x, hd = s.head_dim, bs = s.block_size;
    const char* cache = k_cache + 2 * layer * side_bytes;  // the layer's K side
    auto* res = reinterpret_cast<__half*>(residuals + layer * residual_layer_bytes);
    auto row_of = [&](int32_t at, int64_t head, int64_t off) {
        return res + ((at * s.n_kv_heads + head) * bs + off) * hd;
    };
    for (int64_t i = 0; i < n; ++i) {
        const int32_t src = moves[3 * i], dst = moves[3 * i + 1];
        const bool from_residual = moves[3 * i + 2] != 0;
        const int64_t sb = src / bs, so = src % bs, db = dst / bs, dof = dst % bs;
        for (int64_t t = threadIdx.x; t < s.n_kv_heads * hd; t += blockDim.x) {
            const int64_t head = t / hd, d = t % hd;
            __half v;
            if (from_residual) {
                v = row_of(slot_of[sb], head, so)[d];
            } else {
                const char* block = cache + sb * s.block_bytes;
                const auto* pairs =
                    reinterpret_cast<const __half*>(block + s.scale_offset) + head * 2 * hd;
                const auto byte = static_cast<uint8_t>(
                    block[(head * bs + so) * (hd / 2) + d / 8 * 4 + d % 4]);
                const uint32_t code = d % 8 < 4 ? byte & 0xFu : byte >> 4;
                v = __float2half_rn(__half2float(pairs[hd + d]) +
                                    static_cast<float>(code) * __half2float(pairs[d]));
            }
            row_of(slot_of[db], head, dof)[d] = v;
        }
        __syncthreads();
    }
}

__global__ void patch_slots_kernel(int32_t* slot_of, const int32_t* pairs, int64_t n) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < n) slot_of[pairs[2 * i]] = pairs[2 * i + 1];
}

}  // namespace

void write_kv_q4(const KvWrite& w, void* stream) {
    if (w.rows == 0) return;
    const int64_t warps = w.rows * w.shape.n_kv_heads * 2;
    write_kv_q4_kernel<<<blocks_for(32 * warps), kThreads, 0, as_stream(stream)>>>(w);
}

void close_q4_blocks(void* k_cache, const KvResidual& r, const KvCacheShape& s,
                     const int32_t* blocks, const int32_t* count, int64_t max_count,
                     void* stream) {
    if (max_count == 0) return;
    close_q4_kernel<<<blocks_for(32 * max_count * s.n_kv_heads), kThreads, 0,
                      as_stream(stream)>>>(k_cache, r, s, blocks, count);
}

void reopen_q4_blocks(const void* k_cache, const KvResidual& r, const KvCacheShape& s,
                      const int32_t* blocks, int64_t n, void* stream) {
    if (n == 0) return;
    reopen_q4_kernel<<<blocks_for(32 * n * s.n_kv_heads), kThreads, 0, as_stream(stream)>>>(
        k_cache, r, s, blocks, n);
}

void move_q4_keys(const void* k_cache, int64_t side_bytes, void* residuals,
                  int64_t residual_layer_bytes, const int32_t* slot_of, const KvCacheShape& s,
                  int64_t n_layers, const int32_t* moves, int64_t n, void* stream) {
    if (n == 0 || n_layers == 0) return;
    move_q4_keys_kernel<<<static_cast<unsigned>(n_layers), kThreads, 0, as_stream(stream)>>>(
        static_cast<const char*>(k_cache), side_bytes, static_cast<char*>(residuals),
        residual_layer_bytes, slot_of, s, moves, n);
}

void patch_slots(int32_t* slot_of, const int32_t* pairs, int64_t n, void* stream) {
    if (n == 0) return;
    patch_slots_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(slot_of, pairs, n);
}

}  // namespace vela::cuda_backend
