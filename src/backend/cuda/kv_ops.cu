// KV-cache kernels of the CUDA backend (kv_ops.h): the append of a step's K/V rows, in 16 bits,
// quantised to 8 bits with a scale per row, or in Q4 (kv_q4.cuh), and eviction's row moves.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "backend/cuda/kv_ops.h"
#include "backend/cuda/kv_q4.cuh"
#include "backend/cuda/launch.cuh"

namespace vela::cuda_backend {
namespace {

__device__ __forceinline__ void store(__half* p, float v) {
    *p = __float2half_rn(v);
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
}

__device__ __forceinline__ int64_t elem_bytes(KvCode c) {
    return is_8bit(c) ? 1 : 2;
}

// Bytes of one row (a token's head_dim values of one kv head) in a cache of shape s.
__device__ __forceinline__ int64_t row_bytes(const KvCacheShape& s) {
    return s.code == KvCode::Q4 ? s.head_dim / 2 : s.head_dim * elem_bytes(s.code);
}

// The first byte of (slot, kv head)'s row in a cache of shape s.
__device__ __forceinline__ char* row_at(void* cache, const KvCacheShape& s, int64_t slot,
                                        int64_t head) {
    const int64_t blk = slot / s.block_size, off = slot % s.block_size;
    return static_cast<char*>(cache) + blk * s.block_bytes +
           (head * s.block_size + off) * row_bytes(s);
}

// The attention score of (slot, kv head) in a layer's scores, [block][kv head][block_size].
__device__ __forceinline__ float& score_at(float* scores, const KvCacheShape& s, int64_t slot,
                                           int64_t head) {
    const int64_t blk = slot / s.block_size, off = slot % s.block_size;
    return scores[(blk * s.n_kv_heads + head) * s.block_size + off];
}

// The scale of (slot, kv head)'s row in an 8-bit cache: after the block's rows.
__device__ __forceinline__ float* scale_at(void* cache, const KvCacheShape& s, int64_t slot,
                                           int64_t head) {
    const int64_t blk = slot / s.block_size, off = slot % s.block_size;
    return reinterpret_cast<float*>(static_cast<char*>(cache) + blk * s.block_bytes +
                                    s.scale_offset) +
           head * s.block_size + off;
}

// One warp quantises the row x[0, hd) less `offsets` (nullptr: none) into dst and *scale
// (kv_ops.h gives the definitions).
template <KvCode C>
__device__ void store_8bit_row(const float* x, const float* offsets, int64_t hd, uint8_t* dst,
                               float* scale, int lane) {
    auto at = [&](int64_t d) { return offsets != nullptr ? x[d] - offsets[d] : x[d]; };
    float amax = 0.f;
    bool nan = false;
    for (int64_t d = lane; d < hd; d += 32) {
        const float a = fabsf(at(d));
        nan = nan || a != a;
        amax = fmaxf(amax, a);
    }
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    nan = __any_sync(0xffffffffu, nan);
    float s = C == KvCode::Int8 ? __half2float(__float2half_ru(amax / 127.f)) : amax / 448.f;
    if (nan) s = __int_as_float(0x7fc00000);
    for (int64_t d = lane; d < hd; d += 32) {
        if constexpr (C == KvCode::Int8) {
            const float r = s > 0.f ? fminf(fmaxf(rintf(at(d) / s), -127.f), 127.f) : 0.f;
            dst[d] = static_cast<uint8_t>(static_cast<int8_t>(r));
        } else {
            dst[d] = s > 0.f ? __nv_cvt_float_to_fp8(at(d) / s, __NV_SATFINITE, __NV_E4M3) : 0;
        }
    }
    if (lane == 0) *scale = s;
}

// 16-bit codes: one thread per stored element of K and of V, (row, kv head, dim).
template <class T>
__global__ void write_kv_kernel(KvWrite w) {
    const KvCacheShape& s = w.shape;
    const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t per_row = s.n_kv_heads * s.head_dim;
    if (t >= w.rows * per_row) return;
    const int64_t row = t / per_row, head = t % per_row / s.head_dim, d = t % s.head_dim;
    const int64_t slot = w.slots[row];
    store(reinterpret_cast<T*>(row_at(w.k_cache, s, slot, head)) + d, w.k[t]);
    store(reinterpret_cast<T*>(row_at(w.v_cache, s, slot, head)) + d, w.v[t]);
    if (w.scores != nullptr && d == 0) score_at(w.scores, s, slot, head) = 0.f;
}

// 8-bit codes: one warp per (row, kv head, side).
template <KvCode C>
__global__ void write_kv_8bit_kernel(KvWrite w) {
    const KvCacheShape& s = w.shape;
    const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
    if (warp >= w.rows * s.n_kv_heads * 2) return;
    const bool value = warp % 2 != 0;
    const int64_t row = warp / 2 / s.n_kv_heads, head = warp / 2 % s.n_kv_heads;
    void* cache = value ? w.v_cache : w.k_cache;
    const int64_t slot = w.slots[row];
    const float* offsets =
        !value && w.k_offsets != nullptr ? w.k_offsets + head * s.head_dim : nullptr;
    store_8bit_row<C>((value ? w.v : w.k) + (row * s.n_kv_heads + head) * s.head_dim, offsets,
                      s.head_dim, reinterpret_cast<uint8_t*>(row_at(cache, s, slot, head)),
                      scale_at(cache, s, slot, head), threadIdx.x % 32);
    if (w.scores != nullptr && !value && threadIdx.x % 32 == 0)
        score_at(w.scores, s, slot, head) = 0.f;
}

// Rotates row `row`'s query heads and key heads in place (the block's threads share the items:
// n_heads x half query pairs, then per kv head the half key pairs and the head_dim - rot_dim
// unrotated key elements), handing every key element to store_key(head, dim, value).
template <class StoreKey>
__device__ void rope_row(const RopeWriteKv& p, int64_t row, StoreKey store_key) {
    const int hd = static_cast<int>(p.shape.head_dim), half = static_cast<int>(p.rot_dim / 2);
    const int nkv = static_cast<int>(p.shape.n_kv_heads), kitems = hd - half;
    const float* cr = p.cos + row * half;
    const float* sr = p.sin + row * half;
    const int nq = static_cast<int>(p.n_heads) * half, nk = nkv * kitems;
    for (int t = threadIdx.x; t < nq + nk; t += blockDim.x) {
        const bool key = t >= nq;
        const int u = key ? t - nq : t, per = key ? kitems : half;
        const int head = u / per, i = u % per;
        float* x = key ? p.k + (row * nkv + head) * hd : p.q + (row * p.n_heads + head) * hd;
        if (i < half) {
            const int i0 = p.neox ? i : 2 * i, i1 = p.neox ? i + half : 2 * i + 1;
            const float c = cr[i], s = sr[i];
            const float a = x[i0], b = x[i1];
            const float r0 = a * c - b * s, r1 = a * s + b * c;
            x[i0] = r0;
            x[i1] = r1;
            if (key) {
                store_key(head, i0, r0);
                store_key(head, i1, r1);
            }
        } else {  // keys only: an element past the rotated dims
            const int e = 2 * half + (i - half);
            store_key(head, e, x[e]);
        }
    }
}

// 16-bit codes, one block per row: rope_row storing the keys as they rotate, then the values.
template <class T>
__global__ void rope_write_kv_kernel(RopeWriteKv p) {
    const KvCacheShape& s = p.shape;
    const int64_t row = blockIdx.x, slot = p.slots[row];
    rope_row(p, row, [&](int head, int e, float x) {
        store(reinterpret_cast<T*>(row_at(p.k_cache, s, slot, head)) + e, x);
    });
    const int hd = static_cast<int>(s.head_dim), nv = static_cast<int>(s.n_kv_heads) * hd;
    for (int u = threadIdx.x; u < nv; u += blockDim.x) {
        const int head = u / hd, e = u % hd;
        store(reinterpret_cast<T*>(row_at(p.v_cache, s, slot, head)) + e,
              p.v[(row * s.n_kv_heads + head) * hd + e]);
        if (p.scores != nullptr && e == 0) score_at(p.scores, s, slot, head) = 0.f;
    }
}

// 8-bit or Q4 codes, one block per row: rope_row in place, then a warp per (kv head, side)
// quantises the finished rows (a row's scale needs all of it; Q4 keys go to the residual of
// their block: kv_q4.cuh).
template <KvCode C>
__global__ void rope_write_kv_rows_kernel(RopeWriteKv p) {
    const KvCacheShape& s = p.shape;
    const int64_t row = blockIdx.x, slot = p.slots[row];
    rope_row(p, row, [](int, int, float) {});
    __syncthreads();  // the block's rotated keys visible to every warp
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (int i = warp; i < 2 * s.n_kv_heads; i += warps) {
        const bool value = i % 2 != 0;
        const int64_t head = i / 2;
        void* cache = value ? p.v_cache : p.k_cache;
        const float* x = (value ? p.v : p.k) + (row * s.n_kv_heads + head) * s.head_dim;
        if constexpr (C == KvCode::Q4) {
            if (value) {
                q4::store_q4_value_row(x, cache, s, slot, head, lane);
            } else {
                q4::store_q4_key_row(x, p.residual, s, slot, head, lane);
            }
        } else {
            const float* offsets =
                !value && p.k_offsets != nullptr ? p.k_offsets + head * s.head_dim : nullptr;
            store_8bit_row<C>(x, offsets, s.head_dim,
                              reinterpret_cast<uint8_t*>(row_at(cache, s, slot, head)),
                              scale_at(cache, s, slot, head), lane);
            if (p.scores != nullptr && !value && lane == 0) score_at(p.scores, s, slot, head) = 0.f;
        }
    }
}

// KvScores: a warp per (32 keys, kv head, sequence). The keys' rows are widened to float in
// shared memory (a padded stride: lane j reads row j without bank conflicts); each lane then
// sums its key's weights over the step's rows and the group's query heads, whose q values every
// lane reads at once (broadcast).
constexpr int kScoreKeys = 32;

__device__ __forceinline__ float q_value(const KvScores& s, int64_t i) {
    const auto* q = static_cast<const uint16_t*>(s.q);
    return s.q_bf16 ? __bfloat162float(__ushort_as_bfloat16(q[i]))
                    : __half2float(__ushort_as_half(q[i]));
}

__device__ __forceinline__ float k_value(const KvScores& s, const char* row, float scale, int d) {
    switch (s.shape.code) {
        case KvCode::F16:
            return __half2float(reinterpret_cast<const __half*>(row)[d]);
        case KvCode::BF16:
            return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(row)[d]);
        case KvCode::Int8:
            return static_cast<float>(reinterpret_cast<const int8_t*>(row)[d]) * scale;
        case KvCode::Fp8: {
            __nv_fp8_e4m3 x;
            x.__x = static_cast<uint8_t>(row[d]);
            return static_cast<float>(x) * scale;
        }
        case KvCode::Q4:
            break;  // refused: a Q4 storage keeps no scores (CudaBackend::make_kv_storage)
    }
    return NAN;
}

__global__ void attention_scores_kernel(KvScores s) {
    extern __shared__ float k_tile[];  // [kScoreKeys][head_dim + 1]
    const int64_t b = blockIdx.z, kvh = blockIdx.y, hd = s.shape.head_dim, stride = hd + 1;
    const int lane = threadIdx.x;
    const int64_t kv_len = s.kv_len[b], key = blockIdx.x * kScoreKeys + lane;
    if (blockIdx.x * kScoreKeys >= kv_len) return;
    const int64_t q0 = s.query_start[b], q_len = s.query_start[b + 1] - q0;
    if (q_len == 0) return;
    const int32_t* table = s.block_table + b * s.table_stride;
    const bool valid = key < kv_len;
    const int64_t slot = valid ? int64_t{table[key / s.shape.block_size]} * s.shape.block_size +
                                     key % s.shape.block_size
                               : 0;
    void* cache = const_cast<void*>(s.k_cache);
    const float scale = valid && is_8bit(s.shape.code) ? *scale_at(cache, s.shape, slot, kvh) : 1.f;
    const char* row = valid ? row_at(cache, s.shape, slot, kvh) : nullptr;
    for (int64_t d = 0; d < hd; ++d)
        k_tile[lane * stride + d] = valid ? k_value(s, row, scale, d) : 0.f;
    __syncwarp();
    if (!valid) return;
    const int64_t group = s.n_heads / s.shape.n_kv_heads;
    float acc = 0.f;
    for (int64_t r = s.last ? q_len - 1 : 0; r < q_len; ++r) {
        const int64_t pos = kv_len - q_len + r;
        if (key > pos || (s.window > 0 && key <= pos - s.window)) continue;
        for (int64_t g = 0; g < group; ++g) {
            const int64_t vec = (q0 + r) * s.n_heads + kvh * group + g;
            float dot = 0.f;
            for (int64_t d = 0; d < hd; ++d)
                dot += q_value(s, vec * hd + d) * k_tile[lane * stride + d];
            acc += __expf(dot * s.scale - s.lse[vec]);
        }
    }
    float& score = score_at(s.scores, s.shape, slot, kvh);
    if (s.last) {
        score = acc;
    } else {
        atomicAdd(&score, acc);  // sequences sharing a block add into the same scores
    }
}

__global__ void gather_scores_kernel(const float* scores, const int64_t* slots, int64_t n,
                                     int64_t nkv, int64_t bs, float* out) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n * nkv) return;
    const int64_t slot = slots[i / nkv], h = i % nkv;
    out[i] = scores[(slot / bs * nkv + h) * bs + slot % bs];
}

// One block per (layer, side): the moves touch each (layer, side) apart from every other, so
// blocks run independently, while inside one the moves go in order (a barrier after each).
__global__ void move_kv_rows_kernel(KvRowMoves m) {
    const KvCacheShape& s = m.shape;
    const int64_t layer = blockIdx.x / 2, row_bytes = vela::cuda_backend::row_bytes(s);
    void* side = static_cast<char*>(m.cache) + m.side_bytes * static_cast<int64_t>(blockIdx.x);
    for (int64_t i = 0; i < m.count; ++i) {
        const KvRowMove mv = m.moves[i];
        // Q4 keys move through their residuals (move_q4_keys); the V side moves here.
        const bool skip = s.code == KvCode::Q4 && blockIdx.x % 2 == 0;
        if (!skip && (mv.layer < 0 || mv.layer == layer)) {
            const int64_t h0 = mv.head < 0 ? 0 : mv.head, nh = mv.head < 0 ? s.n_kv_heads : 1;
            if (s.code == KvCode::Q4) {  // the row's (scale, min) pairs
                const int64_t groups = (s.head_dim + s.group - 1) / s.group;
                auto* pairs = reinterpret_cast<uint32_t*>(static_cast<char*>(side) +
                                                          s.scale_offset);
                auto pair_at = [&](int64_t slot, int64_t h, int64_t g) -> uint32_t& {
                    const int64_t blk = slot / s.block_size, off = slot % s.block_size;
                    return *(reinterpret_cast<uint32_t*>(reinterpret_cast<char*>(pairs) +
                                                         blk * s.block_bytes) +
                             (h * s.block_size + off) * groups + g);
                };
                for (int64_t t = threadIdx.x; t < nh * groups; t += blockDim.x)
                    pair_at(mv.dst, h0 + t / groups, t % groups) =
                        pair_at(mv.src, h0 + t / groups, t % groups);
            }
            for (int64_t t = threadIdx.x; t < nh * row_bytes; t += blockDim.x) {
                const int64_t h = h0 + t / row_bytes, b = t % row_bytes;
                row_at(side, s, mv.dst, h)[b] = row_at(side, s, mv.src, h)[b];
            }
            if (is_8bit(s.code)) {
                for (int64_t h = h0 + threadIdx.x; h < h0 + nh; h += blockDim.x)
                    *scale_at(side, s, mv.dst, h) = *scale_at(side, s, mv.src, h);
            }
            if (m.scores != nullptr && blockIdx.x % 2 == 0) {  // once a layer: with its K side
                float* scores = m.scores + layer * m.scores_per_layer;
                for (int64_t h = h0 + threadIdx.x; h < h0 + nh; h += blockDim.x)
                    score_at(scores, s, mv.dst, h) = score_at(scores, s, mv.src, h);
            }
        }
        __syncthreads();
    }
}

}  // namespace

void write_kv(const KvWrite& w, void* stream) {
    const KvCacheShape& s = w.shape;
    if (w.rows == 0) return;
    const cudaStream_t st = as_stream(stream);
    const int64_t elems = w.rows * s.n_kv_heads * s.head_dim, warps = w.rows * s.n_kv_heads * 2;
    switch (s.code) {
        case KvCode::F16:
            write_kv_kernel<__half><<<blocks_for(elems), kThreads, 0, st>>>(w);
            break;
        case KvCode::BF16:
            write_kv_kernel<__nv_bfloat16><<<blocks_for(elems), kThreads, 0, st>>>(w);
            break;
        case KvCode::Int8:
            write_kv_8bit_kernel<KvCode::Int8><<<blocks_for(32 * warps), kThreads, 0, st>>>(w);
            break;
        case KvCode::Fp8:
            write_kv_8bit_kernel<KvCode::Fp8><<<blocks_for(32 * warps), kThreads, 0, st>>>(w);
            break;
        case KvCode::Q4:
            write_kv_q4(w, stream);
            break;
    }
}

void rope_write_kv(const RopeWriteKv& p, void* stream) {
    if (p.rows == 0) return;
    const auto grid = static_cast<unsigned>(p.rows);
    const cudaStream_t st = as_stream(stream);
    switch (p.shape.code) {
        case KvCode::F16:
            rope_write_kv_kernel<__half><<<grid, kThreads, 0, st>>>(p);
            break;
        case KvCode::BF16:
            rope_write_kv_kernel<__nv_bfloat16><<<grid, kThreads, 0, st>>>(p);
            break;
        case KvCode::Int8:
            rope_write_kv_rows_kernel<KvCode::Int8><<<grid, kThreads, 0, st>>>(p);
            break;
        case KvCode::Fp8:
            rope_write_kv_rows_kernel<KvCode::Fp8><<<grid, kThreads, 0, st>>>(p);
            break;
        case KvCode::Q4:
            rope_write_kv_rows_kernel<KvCode::Q4><<<grid, kThreads, 0, st>>>(p);
            break;
    }
}

void attention_scores(const KvScores& s, void* stream) {
    if (s.n_seqs == 0 || s.max_kv_len == 0) return;
    const dim3 grid(static_cast<unsigned>((s.max_kv_len + kScoreKeys - 1) / kScoreKeys),
                    static_cast<unsigned>(s.shape.n_kv_heads), static_cast<unsigned>(s.n_seqs));
    const size_t smem = sizeof(float) * kScoreKeys * static_cast<size_t>(s.shape.head_dim + 1);
    attention_scores_kernel<<<grid, kScoreKeys, smem, as_stream(stream)>>>(s);
}

void gather_scores(const float* scores, const int64_t* slots, int64_t n, int64_t n_kv_heads,
                   int64_t block_size, float* out, void* stream) {
    if (n == 0) return;
    gather_scores_kernel<<<blocks_for(n * n_kv_heads), kThreads, 0, as_stream(stream)>>>(
        scores, slots, n, n_kv_heads, block_size, out);
}

void move_kv_rows(const KvRowMoves& m, void* stream) {
    if (m.count == 0 || m.n_layers == 0) return;
    move_kv_rows_kernel<<<static_cast<unsigned>(2 * m.n_layers), kThreads, 0, as_stream(stream)>>>(
        m);
}

}  // namespace vela::cuda_backend
