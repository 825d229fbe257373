#pragma once
// FlashAttention-2 style prefill forward. One CTA = one (query tile of kM rows, head, sequence);
// each of its 4 warps owns 16 query rows and keeps Q fragments, the fp32 output accumulator and
// the running max/sum in registers, so the S x S score matrix never leaves the register file.
// K and V tiles are single-buffered in shared memory but loaded asynchronously: V_t is fetched
// while S = Q K_t^T is computed, and K_{t+1} while O += P V_t is computed.
#include <cuda_fp8.h>

#include <climits>
#include <cmath>
#include <type_traits>

#include "cuda/attention_params.h"
#include "cuda/mma.cuh"

namespace vela::cuda::detail {

template <int HD>
struct PrefillShape {
    static constexpr int kWarps = 4;
    static constexpr int kThreads = kWarps * 32;
    static constexpr int kM = 16 * kWarps;  // query rows per CTA
    static constexpr int kN = 64;           // keys per tile
    static constexpr int kStride = HD + 8;  // +16 bytes per row: ldmatrix rows hit distinct banks
    // One CTA tile is one block-mask entry; other tilings would have to combine entries.
    static_assert(kM == PrefillParams::kBlockMaskSize && kN == PrefillParams::kBlockMaskSize);
    template <class T>
    static constexpr int smem_bytes() {
        return (kM + 2 * kN) * kStride * static_cast<int>(sizeof(T));
    }
    // Q4 K/V adds a K tile: the keys of open blocks from their residual.
    template <class T>
    static constexpr int q4_smem_bytes() {
        return smem_bytes<T>() + kN * kStride * static_cast<int>(sizeof(T));
    }
};

// Where sequence b's key/value rows live: contiguous varlen or paged (16-bit, or 8-bit rows
// with a scale each: PagedKv).
struct KvRows {
    const char* k;
    const char* v;
    const int32_t* table;  // paged only
    int64_t row_stride, head_off, block_stride, token_stride;
    int block_size;
    KvFormat format;  // of paged rows; 16-bit formats mean the kernel's type T
    const float* k_scale;
    const float* v_scale;
    int64_t scale_block_stride;
    // Q4 (PagedKv): V pairs a row, the kv head, and the open blocks' fp16 keys.
    int groups, kvh, num_kv_heads;
    const __half* k_residual;
    const int32_t* residual_of;

    __device__ int64_t offset(int key) const {  // element offset of (key, kv head)
        if (table == nullptr) return key * row_stride + head_off;
        const int64_t blk = table[key / block_size];
        return blk * block_stride + (key % block_size) * token_stride + head_off;
    }
};

// Value i (0-3) of a word of four stored 8-bit values, as float.
__device__ __forceinline__ float widen_8bit(uint32_t w, int i, KvFormat f) {
    const auto byte = static_cast<uint8_t>(w >> (8 * i));
    if (f == KvFormat::kInt8) return static_cast<float>(static_cast<int8_t>(byte));
    __nv_fp8_e4m3 x;
    x.__x = byte;
    return static_cast<float>(x);
}

// load_tile for 8-bit paged rows: each thread reads 16 stored bytes, multiplies them by their
// row's scale and stores 16 values of type T. Synchronous loads (the conversion needs the
// bytes in registers): a prefill reading an 8-bit cache gives up the tile-load overlap.
template <class T, int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_8bit(T* dst, int valid_rows, const KvRows& kv, bool value,
                                               int key0) {
    constexpr int kChunks = HD / 16;
    constexpr int kStride = HD + 8;
    const char* base = value ? kv.v : kv.k;
    const float* scales = value ? kv.v_scale : kv.k_scale;
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * kChunks; i += THREADS) {
        const int r = i / kChunks, c = i % kChunks;
        uint4 w = {0u, 0u, 0u, 0u};
        float scale = 0.f;
        if (r < valid_rows) {
            const int key = key0 + r;
            const int64_t blk = kv.table[key / kv.block_size];
            const int64_t in_block = (key % kv.block_size) * kv.token_stride + kv.head_off;
            w = *reinterpret_cast<const uint4*>(base + blk * kv.block_stride + in_block + c * 16);
            scale = scales[blk * kv.scale_block_stride + in_block / HD];
        }
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
        uint32_t out[8];
#pragma unroll
        for (int j = 0; j < 8; ++j)
            out[j] = pack2<T>(widen_8bit(words[j / 2], 2 * (j % 2), kv.format) * scale,
                              widen_8bit(words[j / 2], 2 * (j % 2) + 1, kv.format) * scale);
        T* row = dst + r * kStride + c * 16;
        *reinterpret_cast<uint4*>(row) = make_uint4(out[0], out[1], out[2], out[3]);
        *reinterpret_cast<uint4*>(row + 8) = make_uint4(out[4], out[5], out[6], out[7]);
    }
}

// load_tile for Q4 paged rows: each thread widens 16 values of a row (8 bytes of codes) with
// their (scale, min) pairs (K: per channel of the row's block, V: per group of the row) to
// min + code * scale in float, as the CPU's Q4 reads them, and stores them as T. Synchronous, as
// the 8-bit loads.
template <class T, int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_q4(T* dst, int valid_rows, const KvRows& kv, bool value,
                                             int key0) {
    constexpr int kChunks = HD / 16;
    constexpr int kStride = HD + 8;
    const int group = HD / kv.groups;
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * kChunks; i += THREADS) {
        const int r = i / kChunks, c = i % kChunks;
        float x[16];
        if (r < valid_rows) {
            const int key = key0 + r, off = key % kv.block_size;
            const int64_t blk = kv.table[key / kv.block_size];
            const char* block = (value ? kv.v : kv.k) + blk * kv.block_stride;
            const uint2 w = *reinterpret_cast<const uint2*>(block + kv.head_off +
                                                            off * kv.token_stride + c * 8);
            const auto* pairs = reinterpret_cast<const __half*>(
                reinterpret_cast<const char*>(value ? kv.v_scale : kv.k_scale) +
                blk * kv.scale_block_stride * 4);
            const uint32_t words[2] = {w.x, w.y};
#pragma unroll
            for (int j = 0; j < 16; ++j) {
                const int d = 16 * c + j;
                const uint32_t code = words[j / 8] >> (8 * (j % 4) + (j % 8 < 4 ? 0 : 4)) & 0xFu;
                float scale, mn;
                if (value) {
                    const __half* g =
                        pairs + ((int64_t{kv.kvh} * kv.block_size + off) * kv.groups + d / group) * 2;
                    scale = __half2float(g[0]);
                    mn = __half2float(g[1]);
                } else {
                    const __half* h = pairs + int64_t{kv.kvh} * 2 * HD;
                    scale = __half2float(h[d]);
                    mn = __half2float(h[HD + d]);
                }
                x[j] = mn + static_cast<float>(code) * scale;
            }
        } else {
#pragma unroll
            for (int j = 0; j < 16; ++j) x[j] = 0.f;
        }
        uint32_t out[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) out[j] = pack2<T>(x[2 * j], x[2 * j + 1]);
        T* row = dst + r * kStride + c * 16;
        *reinterpret_cast<uint4*>(row) = make_uint4(out[0], out[1], out[2], out[3]);
        *reinterpret_cast<uint4*>(row + 8) = make_uint4(out[4], out[5], out[6], out[7]);
    }
}

// The keys of Q4 rows in open blocks, from their residuals (blocks without one: zeros, never read).
template <class T, int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_q4_residual(T* dst, int valid_rows, const KvRows& kv,
                                                      int key0) {
    constexpr int kChunks = HD / 8;
    constexpr int kStride = HD + 8;
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * kChunks; i += THREADS) {
        const int r = i / kChunks, c = i % kChunks;
        uint4 u = {0u, 0u, 0u, 0u};
        if (r < valid_rows) {
            const int key = key0 + r;
            const int32_t slot = kv.residual_of[kv.table[key / kv.block_size]];
            if (slot >= 0) {
                u = *reinterpret_cast<const uint4*>(
                    kv.k_residual +
                    ((int64_t{slot} * kv.num_kv_heads + kv.kvh) * kv.block_size +
                     key % kv.block_size) * HD + 8 * c);
            }
        }
        T* row = dst + r * kStride + c * 8;
        if constexpr (sizeof(T) == 2 && std::is_same_v<T, __half>) {
            *reinterpret_cast<uint4*>(row) = u;
        } else {
            const auto* h = reinterpret_cast<const __half2*>(&u);
            uint32_t out[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const float2 f = __half22float2(h[j]);
                out[j] = pack2<T>(f.x, f.y);
            }
            *reinterpret_cast<uint4*>(row) = make_uint4(out[0], out[1], out[2], out[3]);
        }
    }
}

// Copies rows [row0, row0 + ROWS) of a [*, HD] matrix into padded shared memory; rows past
// `valid_rows` are zero-filled.
template <class T, int HD, int ROWS, int THREADS, class RowPtr>
__device__ __forceinline__ void load_tile(T* dst, int valid_rows, RowPtr row_ptr) {
    constexpr int kChunks = HD / 8;  // 16-byte chunks per row
    constexpr int kStride = HD + 8;
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * kChunks; i += THREADS) {
        const int r = i / kChunks, c = i % kChunks;
        const bool ok = r < valid_rows;
        const T* src = ok ? row_ptr(r) + c * 8 : nullptr;
        cp_async_16(dst + r * kStride + c * 8, ok ? src : dst, ok);
    }
}

struct RowMask {
    int lk, diag, window;  // diag = lk - lq; window < 0: none
    bool causal;
    const uint8_t* tree;  // this sequence's lq x lq token-tree mask, or nullptr (PrefillParams)
    __device__ bool masked(int qi, int key) const {
        if (key >= lk) return true;
        if (causal && key > qi + diag) return true;
        if (tree != nullptr && key >= diag && tree[qi * (lk - diag) + key - diag] == 0) return true;
        return window >= 0 && key < qi + diag - window;
    }
    // The keys query qi sees form [lo, hi) (apart from a tree's holes): masked(qi, key) ==
    // !(lo <= key && key < hi) without a tree.
    __device__ void visible(int qi, int& lo, int& hi) const {
        hi = causal ? min(lk, qi + diag + 1) : lk;
        lo = window >= 0 ? qi + diag - window : INT_MIN;
    }
};

// Online-softmax step of one warp's 16 x kN score tile (s) against running max m and
// thread-partial sum l: exponentiates s in place and returns in alpha the factor by which the
// output accumulated so far must be rescaled. Scores stay in raw units.
template <int NT>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float (&m)[2], float (&l)[2],
                                             float (&alpha)[2], float scale_log2) {
    // Max and sum run as 4 independent chains each: a single chain over 2 * NT values would
    // leave the warp waiting on instruction latency (the kernels have few warps to hide it).
    constexpr int kChains = NT >= 4 ? 4 : NT;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float part[kChains];
#pragma unroll
        for (int c = 0; c < kChains; ++c) part[c] = -INFINITY;
#pragma unroll
        for (int t = 0; t < NT; ++t)
            part[t % kChains] = fmaxf(part[t % kChains], fmaxf(s[t][2 * r], s[t][2 * r + 1]));
        float mx = part[0];
#pragma unroll
        for (int c = 1; c < kChains; ++c) mx = fmaxf(mx, part[c]);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[r], mx);
        // A row with every key masked so far keeps m = -inf; exponentiate against 0 so that
        // exp2(-inf) = 0 instead of NaN from (-inf) - (-inf).
        const float base = (m_new == -INFINITY) ? 0.f : m_new * scale_log2;
        // Exactly 1 when the max holds: m * scale_log2 - base may contract to an fma that
        // leaves the rounding error of m * scale_log2, and exp2 of that can round above 1. A
        // tile whose keys this row cannot see (the CTA's other rows can) would then rescale
        // the row, so its bits would depend on which rows share its CTA: on the batch.
        alpha[r] = m_new == m[r] ? 1.f : fast_exp2(m[r] * scale_log2 - base);
        m[r] = m_new;
#pragma unroll
        for (int c = 0; c < kChains; ++c) part[c] = 0.f;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; ++e) {
                s[t][e] = fast_exp2(s[t][e] * scale_log2 - base);
                part[t % kChains] += s[t][e];
            }
        }
        float sum = part[0];
#pragma unroll
        for (int c = 1; c < kChains; ++c) sum += part[c];
        l[r] = l[r] * alpha[r] + sum;
    }
}

template <int OT>
__device__ __forceinline__ void rescale_rows(float (&o)[OT][4], const float (&alpha)[2]) {
#pragma unroll
    for (int t = 0; t < OT; ++t) {
        o[t][0] *= alpha[0];
        o[t][1] *= alpha[0];
        o[t][2] *= alpha[1];
        o[t][3] *= alpha[1];
    }
}

// softmax_step, then rescales the output accumulator o right away.
template <int NT, int OT>
__device__ __forceinline__ void softmax_update(float (&s)[NT][4], float (&o)[OT][4], float (&m)[2],
                                               float (&l)[2], float scale_log2) {
    float alpha[2];
    softmax_step(s, m, l, alpha, scale_log2);
    rescale_rows(o, alpha);
}

// What one CTA of a prefill kernel works on: kM query rows of one (sequence, head) and the
// range of kN-key tiles that can hold keys visible to them.
struct PrefillCta {
    int b, h, q0, lq, lk, row_lo, rows;
    KvRows kv;
    RowMask mask;
    int t_begin, t_end;
    const uint8_t* block_mask;  // this (sequence, head)'s block mask, or nullptr
};

// Plans query block m_block; false when it lies past the end of its sequence.
template <int kM, int kN>
__device__ bool plan_prefill_cta(const PrefillParams& p, int m_block, PrefillCta& c) {
    c.b = blockIdx.z;
    c.h = blockIdx.y;
    c.q0 = p.cu_seqlens_q[c.b];
    c.lq = p.cu_seqlens_q[c.b + 1] - c.q0;
    c.row_lo = m_block * kM;
    if (c.row_lo >= c.lq) return false;
    c.rows = min(kM, c.lq - c.row_lo);

    const int kvh = c.h / (p.num_heads / p.num_kv_heads);
    if (p.paged.block_table != nullptr) {
        c.lk = p.seqlens_k[c.b];
        c.kv = {static_cast<const char*>(p.paged.k_cache),
                static_cast<const char*>(p.paged.v_cache),
                p.paged.block_table + static_cast<int64_t>(c.b) * p.paged.block_table_stride,
                0,
                kvh * p.paged.head_stride,
                p.paged.block_stride,
                p.paged.token_stride,
                p.paged.block_size,
                p.kv_format,
                p.paged.k_scale,
                p.paged.v_scale,
                p.paged.scale_block_stride,
                (p.head_dim + p.paged.kv_group - 1) / p.paged.kv_group,
                kvh,
                p.num_kv_heads,
                static_cast<const __half*>(p.paged.k_residual),
                p.paged.residual_of};
    } else {
        const int k0 = p.cu_seqlens_k[c.b];
        c.lk = p.cu_seqlens_k[c.b + 1] - k0;
        const int64_t base = k0 * p.kv_row_stride + kvh * p.kv_head_stride;
        c.kv = {static_cast<const char*>(p.k) + base * 2,
                static_cast<const char*>(p.v) + base * 2,
                nullptr,
                p.kv_row_stride,
                0,
                0,
                0,
                1,
                p.dtype == Dtype::kF16 ? KvFormat::kF16 : KvFormat::kBf16,
                nullptr,
                nullptr,
                0,
                1,
                kvh,
                p.num_kv_heads,
                nullptr,
                nullptr};
    }
    const int64_t tree_at = p.tree_offset != nullptr ? p.tree_offset[c.b] : -1;
    c.mask = {c.lk, c.lk - c.lq, p.window_left, p.causal,
              tree_at >= 0 ? p.tree_mask + tree_at : nullptr};
    const int row_hi = c.row_lo + c.rows - 1;
    int n_end = c.lk, n_begin = 0;
    if (p.causal) n_end = max(0, min(c.lk, row_hi + c.mask.diag + 1));
    if (p.window_left >= 0) n_begin = max(0, c.row_lo + c.mask.diag - p.window_left);
    c.t_begin = n_begin / kN;
    c.t_end = n_end > n_begin ? (n_end + kN - 1) / kN : c.t_begin;
    c.block_mask = p.block_mask == nullptr ? nullptr
                                           : p.block_mask + c.b * p.block_mask_batch_stride +
                                                 c.h * p.block_mask_head_stride;
    return true;
}

template <class T, int HD>
__global__ void __launch_bounds__(PrefillShape<HD>::kThreads)
    prefill_fwd_kernel(const PrefillParams p) {
    using Shape = PrefillShape<HD>;
    constexpr int kM = Shape::kM, kN = Shape::kN, kS = Shape::kStride;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sK = sQ + kM * kS;
    T* sV = sK + kN * kS;
    T* sKr = sV + kN * kS;  // Q4 only (the launcher allots it)

    const int m_block = gridDim.x - 1 - blockIdx.x;  // longest causal tiles start first
    PrefillCta c;
    if (!plan_prefill_cta<kM, kN>(p, m_block, c)) return;
    const int h = c.h, q0 = c.q0, lq = c.lq, lk = c.lk, row_lo = c.row_lo;
    const int rows = c.rows, t_begin = c.t_begin, t_end = c.t_end;
    const KvRows& kv = c.kv;
    const RowMask& mask = c.mask;
    const int row_hi = row_lo + rows - 1;

    const T* q = static_cast<const T*>(p.q) + (q0 + row_lo) * p.q_row_stride + h * p.q_head_stride;
    load_tile<T, HD, kM, Shape::kThreads>(sQ, rows, [&](int r) { return q + r * p.q_row_stride; });
    const bool kv_8bit = kv.table != nullptr && is_8bit(kv.format);
    const bool kv_q4 = kv.table != nullptr && kv.format == KvFormat::kQ4;
    auto load_kv = [&](T* dst, bool value, int t) {
        const int key0 = t * kN;
        if (kv_8bit) {
            load_tile_8bit<T, HD, kN, Shape::kThreads>(dst, min(kN, lk - key0), kv, value, key0);
            return;
        }
        if (kv_q4) {
            load_tile_q4<T, HD, kN, Shape::kThreads>(dst, min(kN, lk - key0), kv, value, key0);
            return;
        }
        load_tile<T, HD, kN, Shape::kThreads>(dst, min(kN, lk - key0), [&](int r) {
            return reinterpret_cast<const T*>(value ? kv.v : kv.k) + kv.offset(key0 + r);
        });
    };
    // Block-sparse: the K/V pipeline runs over the unmasked tiles only.
    const uint8_t* tile_mask =
        c.block_mask == nullptr ? nullptr : c.block_mask + m_block * p.block_mask_row_stride;
    auto next_tile = [&](int t) {
        while (t < t_end && tile_mask != nullptr && tile_mask[t] == 0) ++t;
        return t;
    };
    const int t_first = next_tile(t_begin);
    if (t_first < t_end) load_kv(sK, false, t_first);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, tig = lane % 4;
    uint32_t qf[HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
        ldmatrix_x4(qf[kk], sQ + (warp * 16 + lane % 16) * kS + kk * 16 + (lane / 16) * 8);

    float o[HD / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
    const int qi_base = row_lo + warp * 16 + g;

    for (int t = t_first, t_next; t < t_end; t = t_next) {
        t_next = next_tile(t + 1);
        if (t > t_first) {
            cp_async_wait<0>();
            __syncthreads();  // K_t landed; every warp finished reading V_{t-1}
        }
        load_kv(sV, true, t);
        cp_async_commit();
        // Q4: a row reads its own block from the block's fp16 residual unless it is the block's
        // last row. Tiles that may hold such keys for some row of the CTA (uniform) load them.
        const int key0 = t * kN;
        const bool residual_tile = kv_q4 &&
                                   key0 + kN > (row_lo + mask.diag) / kv.block_size * kv.block_size &&
                                   key0 <= row_hi + mask.diag;
        if (residual_tile) {
            load_tile_q4_residual<T, HD, kN, Shape::kThreads>(sKr, min(kN, lk - key0), kv, key0);
            __syncthreads();
        }

        float s[kN / 8][4] = {};
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
            for (int nn = 0; nn < kN / 16; ++nn) {
                uint32_t bk[4];
                ldmatrix_x4(bk, sK + (nn * 16 + lane % 8 + (lane / 16) * 8) * kS + kk * 16 +
                                    ((lane / 8) % 2) * 8);
                mma_16816<T>(s[2 * nn], qf[kk], bk[0], bk[1]);
                mma_16816<T>(s[2 * nn + 1], qf[kk], bk[2], bk[3]);
            }
        }
        if (residual_tile) {
#pragma unroll
            for (int nn = 0; nn < kN / 16; ++nn) {
                float r[2][4] = {};
#pragma unroll
                for (int kk = 0; kk < HD / 16; ++kk) {
                    uint32_t bk[4];
                    ldmatrix_x4(bk, sKr + (nn * 16 + lane % 8 + (lane / 16) * 8) * kS + kk * 16 +
                                        ((lane / 8) % 2) * 8);
                    mma_16816<T>(r[0], qf[kk], bk[0], bk[1]);
                    mma_16816<T>(r[1], qf[kk], bk[2], bk[3]);
                }
#pragma unroll
                for (int u = 0; u < 2; ++u)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int pos = qi_base + (e / 2) * 8 + mask.diag;
                        const int key = key0 + (2 * nn + u) * 8 + tig * 2 + (e % 2);
                        if (key / kv.block_size == pos / kv.block_size &&
                            pos % kv.block_size != kv.block_size - 1)
                            s[2 * nn + u][e] = r[u][e];
                    }
            }
        }
        const bool need_mask = key0 + kN > lk || (p.causal && key0 + kN - 1 > row_lo + mask.diag) ||
                               (p.window_left >= 0 && key0 < row_hi + mask.diag - p.window_left) ||
                               (mask.tree != nullptr && key0 + kN > mask.diag);
        if (need_mask) {
#pragma unroll
            for (int nt = 0; nt < kN / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (mask.masked(qi_base + (e / 2) * 8, key0 + nt * 8 + tig * 2 + (e % 2)))
                        s[nt][e] = -INFINITY;
        }
        softmax_update(s, o, m, l, scale_log2);

        cp_async_wait<0>();
        __syncthreads();  // V_t landed; every warp finished reading K_t
        if (t_next < t_end) load_kv(sK, false, t_next);
        cp_async_commit();

#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk) {
            const uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                                   pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                   pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int nn = 0; nn < HD / 16; ++nn) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, sV + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kS +
                                          nn * 16 + (lane / 16) * 8);
                mma_16816<T>(o[2 * nn], a, bv[0], bv[1]);
                mma_16816<T>(o[2 * nn + 1], a, bv[2], bv[3]);
            }
        }
    }

    // Epilogue: normalise, stage this warp's 16 rows in its own slice of sQ (only it read
    // those rows), then write 16-byte chunks.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    // Orders this warp's Q-fragment ldmatrix reads before the staging writes below when no
    // K/V tile ran (a fully masked query block), where no __syncthreads() separated them.
    __syncwarp();
    T* sO = sQ + warp * 16 * kS;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
#pragma unroll
        for (int nt = 0; nt < HD / 8; ++nt)
            *reinterpret_cast<uint32_t*>(sO + (g + 8 * r) * kS + nt * 8 + tig * 2) =
                pack2<T>(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
        const int qi = qi_base + 8 * r;
        if (p.lse != nullptr && tig == 0 && qi < lq)
            p.lse[static_cast<int64_t>(q0 + qi) * p.num_heads + h] =
                l[r] > 0.f ? m[r] * p.softmax_scale + logf(l[r]) : -INFINITY;
    }
    __syncwarp();
    T* out =
        static_cast<T*>(p.o) + (q0 + row_lo + warp * 16) * p.o_row_stride + h * p.o_head_stride;
    constexpr int kChunks = HD / 8;
#pragma unroll
    for (int i = lane; i < 16 * kChunks; i += 32) {
        const int r = i / kChunks, c = i % kChunks;
        if (row_lo + warp * 16 + r < lq)
            *reinterpret_cast<uint4*>(out + r * p.o_row_stride + c * 8) =
                *reinterpret_cast<const uint4*>(sO + r * kS + c * 8);
    }
}

}  // namespace vela::cuda::detail
