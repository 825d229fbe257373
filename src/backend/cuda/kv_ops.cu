// KV-cache kernels of the CUDA backend (kv_ops.h): the append of a step's K/V rows, in 16 bits or
// quantised to 8 bits with a scale per row, and eviction's row moves.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "backend/cuda/kv_ops.h"

namespace vela::cuda_backend {
namespace {

constexpr int kThreads = 256;

cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}

unsigned blocks_for(int64_t n) {
    return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

__device__ __forceinline__ void store(__half* p, float v) {
    *p = __float2half_rn(v);
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
}

__device__ __forceinline__ int64_t elem_bytes(KvCode c) {
    return is_8bit(c) ? 1 : 2;
}

// The first byte of (slot, kv head)'s row in a cache of shape s.
__device__ __forceinline__ char* row_at(void* cache, const KvCacheShape& s, int64_t slot,
                                        int64_t head) {
    const int64_t blk = slot / s.block_size, off = slot % s.block_size;
    return static_cast<char*>(cache) + blk * s.block_bytes +
           (head * s.block_size + off) * s.head_dim * elem_bytes(s.code);
}

// The scale of (slot, kv head)'s row in an 8-bit cache: after the block's rows.
__device__ __forceinline__ float* scale_at(void* cache, const KvCacheShape& s, int64_t slot,
                                           int64_t head) {
    const int64_t blk = slot / s.block_size, off = slot % s.block_size;
    return reinterpret_cast<float*>(static_cast<char*>(cache) + blk * s.block_bytes +
                                    s.scale_offset) +
           head * s.block_size + off;
}

// One warp quantises the row x[0, hd) into dst and *scale (kv_ops.h gives the definitions).
template <KvCode C>
__device__ void store_8bit_row(const float* x, int64_t hd, uint8_t* dst, float* scale, int lane) {
    float amax = 0.f;
    bool nan = false;
    for (int64_t d = lane; d < hd; d += 32) {
        const float a = fabsf(x[d]);
        nan = nan || a != a;
        amax = fmaxf(amax, a);
    }
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    nan = __any_sync(0xffffffffu, nan);
    float s = C == KvCode::Int8 ? __half2float(__float2half_ru(amax / 127.f)) : amax / 448.f;
    if (nan) s = __int_as_float(0x7fc00000);
    for (int64_t d = lane; d < hd; d += 32) {
        if constexpr (C == KvCode::Int8) {
            const float r = s > 0.f ? fminf(fmaxf(rintf(x[d] / s), -127.f), 127.f) : 0.f;
            dst[d] = static_cast<uint8_t>(static_cast<int8_t>(r));
        } else {
            dst[d] = s > 0.f ? __nv_cvt_float_to_fp8(x[d] / s, __NV_SATFINITE, __NV_E4M3) : 0;
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
    store_8bit_row<C>((value ? w.v : w.k) + (row * s.n_kv_heads + head) * s.head_dim, s.head_dim,
                      reinterpret_cast<uint8_t*>(row_at(cache, s, slot, head)),
                      scale_at(cache, s, slot, head), threadIdx.x % 32);
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
    }
}

// 8-bit codes, one block per row: rope_row in place, then a warp per (kv head, side) quantises
// the finished rows (a row's scale needs all of it).
template <KvCode C>
__global__ void rope_write_kv_8bit_kernel(RopeWriteKv p) {
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
        store_8bit_row<C>(x, s.head_dim, reinterpret_cast<uint8_t*>(row_at(cache, s, slot, head)),
                          scale_at(cache, s, slot, head), lane);
    }
}

// One block per (layer, side): the moves touch each (layer, side) apart from every other, so
// blocks run independently, while inside one the moves go in order (a barrier after each).
__global__ void move_kv_rows_kernel(KvRowMoves m) {
    const KvCacheShape& s = m.shape;
    const int64_t layer = blockIdx.x / 2, row_bytes = s.head_dim * elem_bytes(s.code);
    void* side = static_cast<char*>(m.cache) + m.side_bytes * static_cast<int64_t>(blockIdx.x);
    for (int64_t i = 0; i < m.count; ++i) {
        const KvRowMove mv = m.moves[i];
        if (mv.layer < 0 || mv.layer == layer) {
            const int64_t h0 = mv.head < 0 ? 0 : mv.head, nh = mv.head < 0 ? s.n_kv_heads : 1;
            for (int64_t t = threadIdx.x; t < nh * row_bytes; t += blockDim.x) {
                const int64_t h = h0 + t / row_bytes, b = t % row_bytes;
                row_at(side, s, mv.dst, h)[b] = row_at(side, s, mv.src, h)[b];
            }
            if (is_8bit(s.code)) {
                for (int64_t h = h0 + threadIdx.x; h < h0 + nh; h += blockDim.x)
                    *scale_at(side, s, mv.dst, h) = *scale_at(side, s, mv.src, h);
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
            rope_write_kv_8bit_kernel<KvCode::Int8><<<grid, kThreads, 0, st>>>(p);
            break;
        case KvCode::Fp8:
            rope_write_kv_8bit_kernel<KvCode::Fp8><<<grid, kThreads, 0, st>>>(p);
            break;
    }
}

void move_kv_rows(const KvRowMoves& m, void* stream) {
    if (m.count == 0 || m.n_layers == 0) return;
    move_kv_rows_kernel<<<static_cast<unsigned>(2 * m.n_layers), kThreads, 0, as_stream(stream)>>>(
        m);
}

}  // namespace vela::cuda_backend
