// Hopper prefill forward (sm_90a): the FlashAttention-2 algorithm on warpgroup MMA (wgmma).
// One CTA = 64 query rows per warpgroup (2 warpgroups, 3 at head_dim 64) of one (sequence, head). K/V tiles of kN
// keys are double-buffered in 128-byte-swizzled shared memory by cp.async, which serves the
// contiguous and the paged layout (any block size) alike; S = Q K^T is a wgmma with both
// operands in shared memory, O += P V takes P straight from the S accumulators in registers.
// Masks (causal, window, block-sparse, sequence end) are the same as the mma.sync kernel's.
#include <cmath>

#include "cuda/launch.h"
#include "cuda/prefill_kernel.cuh"
#include "cuda/wgmma.cuh"

namespace vela::cuda::detail {
namespace {

template <int HD>
struct Sm90Shape {
    // head_dim 64 has half the MMA work per score of head_dim 128: a third warpgroup shares
    // each K/V tile and hides more of the softmax.
    static constexpr int kWarpGroups = HD == 64 ? 3 : 2;
    static constexpr int kThreads = 128 * kWarpGroups;
    static constexpr int kM = 64 * kWarpGroups;      // query rows per CTA
    static constexpr int kN = HD == 256 ? 64 : 128;  // keys per tile
    static constexpr int kPvN = HD == 64 ? 64 : 128;  // N of one P*V wgmma
    static constexpr int kQBytes = kM * HD * 2;
    static constexpr int kTileBytes = kN * HD * 2;  // one K or V tile
    // Q, then two stages of (K, V); +1 KB to align the swizzle atoms.
    static constexpr int kSmem = kQBytes + 4 * kTileBytes + 1024;
    static constexpr int kMaskCols = kN / PrefillParams::kBlockMaskSize;  // mask entries per tile
    static_assert(kM == kWarpGroups * PrefillParams::kBlockMaskSize &&
                  kN % PrefillParams::kBlockMaskSize == 0);
};

// Copies rows [0, ROWS) of a [*, HD] 16-bit matrix into a swizzled tile (wgmma.cuh); rows past
// `valid_rows` are zero-filled. Each thread copies the same 16-byte column chunk of every
// kPass-th row, so its shared-memory address only advances by a constant.
template <int HD, int ROWS, int THREADS, class RowPtr>
__device__ __forceinline__ void load_swizzled(unsigned char* dst, int valid_rows, RowPtr row_ptr) {
    constexpr int kChunks = HD / 8, kPass = THREADS / kChunks;
    static_assert(THREADS % kChunks == 0 && kPass % 8 == 0);
    const int c = threadIdx.x % kChunks, r0 = threadIdx.x / kChunks;
    unsigned char* d = dst + swizzled_offset(ROWS, r0, c);  // rows r0 + j * kPass: same swizzle
#pragma unroll
    for (int j = 0; j < (ROWS + kPass - 1) / kPass; ++j) {
        const int r = r0 + j * kPass;
        if (ROWS % kPass != 0 && r >= ROWS) break;
        const bool ok = r < valid_rows;
        unsigned char* dj = d + j * kPass * 128;
        cp_async_16(dj, ok ? static_cast<const void*>(row_ptr(r) + c * 8) : dj, ok);
    }
}

// Block-sparse bits of one tile: bit j set when mask column j of the tile is kept for query
// block `qb` (absent blocks, past the sequence ends, read as masked).
template <int kN>
__device__ __forceinline__ unsigned tile_keep_bits(const PrefillParams& p, const PrefillCta& c,
                                                   int qb, int t) {
    constexpr int kB = PrefillParams::kBlockMaskSize;
    if (c.block_mask == nullptr) return (1u << (kN / kB)) - 1;
    if (qb * kB >= c.lq) return 0;
    unsigned bits = 0;
#pragma unroll
    for (int j = 0; j < kN / kB; ++j) {
        const int kb = t * (kN / kB) + j;
        if (kb * kB < c.lk && c.block_mask[qb * p.block_mask_row_stride + kb] != 0) bits |= 1u << j;
    }
    return bits;
}

template <class T, int HD>
__global__ void __launch_bounds__(Sm90Shape<HD>::kThreads, 1)
    prefill_sm90_kernel(const PrefillParams p) {
#ifdef VELA_SM90A_DEVICE
    using Shape = Sm90Shape<HD>;
    constexpr int kM = Shape::kM, kN = Shape::kN, kThreads = Shape::kThreads;
    extern __shared__ unsigned char smem_raw[];
    unsigned char* sQ = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
    unsigned char* sKV = sQ + Shape::kQBytes;

    const int m_block = gridDim.x - 1 - blockIdx.x;  // longest causal tiles start first
    PrefillCta c;
    if (!plan_prefill_cta<kM, kN>(p, m_block, c)) return;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const int g = lane / 4, tig = lane % 4;
    const int wg_lo = c.row_lo + wg * 64;  // this warpgroup's first query row
    const int qb = Shape::kWarpGroups * m_block + wg;  // its block-mask row

    const T* q =
        static_cast<const T*>(p.q) + (c.q0 + c.row_lo) * p.q_row_stride + c.h * p.q_head_stride;
    load_swizzled<HD, kM, kThreads>(sQ, c.rows, [&](int r) { return q + r * p.q_row_stride; });
    // Shared memory after Q: K buffers 0 and 1, then V buffers 0 and 1 (kTileBytes each).
    auto k_buf = [&](int i) { return sKV + (i % 2) * Shape::kTileBytes; };
    auto v_buf = [&](int i) { return sKV + (2 + i % 2) * Shape::kTileBytes; };
    auto load_rows = [&](unsigned char* dst, const char* base, int t) {
        const int key0 = t * kN;
        load_swizzled<HD, kN, kThreads>(dst, min(kN, c.lk - key0), [&](int r) {
            return reinterpret_cast<const T*>(base) + c.kv.offset(key0 + r);
        });
    };
    // Block-sparse: the pipeline runs over tiles that some warpgroup keeps.
    auto next_tile = [&](int t) {
        for (; t < c.t_end && c.block_mask != nullptr; ++t) {
            unsigned keep = 0;
#pragma unroll
            for (int w = 0; w < Shape::kWarpGroups; ++w)
                keep |= tile_keep_bits<kN>(p, c, Shape::kWarpGroups * m_block + w, t);
            if (keep != 0) break;
        }
        return t;
    };

    float o[HD / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
    const int qi_base = wg_lo + warp * 16 + g;  // rows qi_base and qi_base + 8

    // S = Q K^T of the tile in K buffer i, issued (not awaited).
    float s[kN / 8][4];
    auto issue_qk = [&](int i) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
            const int atom = kk / 4, col = (kk % 4) * 32;
            const uint64_t a = sw128_desc(sQ + atom * kM * 128 + wg * 64 * 128 + col, 16, 1024);
            const uint64_t b = sw128_desc(k_buf(i) + atom * kN * 128 + col, 16, 1024);
            wgmma_ss<T, kN>(s, a, b, kk > 0);
        }
        wgmma_commit();
    };
    // Masks s (tile t) and runs the online softmax on it; alpha rescales the output so far.
    auto softmax_tile = [&](int t, float (&alpha)[2]) {
        const int key0 = t * kN;
        const unsigned keep = tile_keep_bits<kN>(p, c, qb, t);
        const bool need_mask =
            keep != (1u << Shape::kMaskCols) - 1 || key0 + kN > c.lk ||
            (p.causal && key0 + kN - 1 > wg_lo + c.mask.diag) ||
            (p.window_left >= 0 && key0 < wg_lo + 63 + c.mask.diag - p.window_left);
        if (need_mask) {
            // Per row, the visible columns of this tile form one interval (then block bits).
            int lo[2], hi[2];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                c.mask.visible(qi_base + 8 * r, lo[r], hi[r]);
                lo[r] = max(lo[r], key0) - key0;
                hi[r] -= key0;
            }
#pragma unroll
            for (int nt = 0; nt < kN / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int col = nt * 8 + tig * 2 + (e % 2), r = e / 2;
                    if (col < lo[r] || col >= hi[r] ||
                        !(keep >> (col / PrefillParams::kBlockMaskSize) & 1u))
                        s[nt][e] = -INFINITY;
                }
        }
        softmax_step(s, m, l, alpha, scale_log2);
    };
    // P (the A operand of P V) packed from s.
    uint32_t pa[kN / 16][4];
    auto pack_p = [&] {
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk) {
            pa[kk][0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
    };

    // Software pipeline over the visible tiles t_0, t_1, ...: iteration i issues S of tile
    // i + 1 and O += P_i V_i back to back, runs the softmax of tile i + 1 while P_i V_i is still
    // on the tensor cores, and loads V_{i+1} and K_{i+2} meanwhile. K and V are double-buffered
    // with V one tile behind K, so every buffer a load targets was released before the barrier.
    int t = next_tile(c.t_begin);
    if (t < c.t_end) load_rows(k_buf(0), c.kv.k, t);
    cp_async_commit();
    int tn = t < c.t_end ? next_tile(t + 1) : c.t_end;
    if (t < c.t_end) load_rows(v_buf(0), c.kv.v, t);
    if (tn < c.t_end) load_rows(k_buf(1), c.kv.k, tn);
    cp_async_commit();
    if (t < c.t_end) {
        cp_async_wait<1>();  // Q and K_0
        fence_proxy_async();
        __syncthreads();
        wgmma_fence();
        issue_qk(0);
        wgmma_wait<0>();
        fence_regs(s);
        float alpha[2];
        softmax_tile(t, alpha);  // o is still zero: nothing to rescale
        pack_p();
    }
    // O += P_i V_i from V buffer i, issued (not awaited).
    auto issue_pv = [&](int i) {
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
            for (int n = 0; n < HD / Shape::kPvN; ++n) {
                // V is read transposed: N = head dim (64-column atoms kN * 128 bytes apart),
                // K = 16 keys (two 8-row groups of 1024 bytes).
                const uint64_t b = sw128_desc(
                    v_buf(i) + n * (Shape::kPvN / 64) * kN * 128 + kk * 16 * 128, kN * 128, 1024);
                wgmma_rs<T, Shape::kPvN>(o + n * (Shape::kPvN / 8), pa[kk], b);
            }
        }
        wgmma_commit();
    };
    int i = 0;
    for (; t < c.t_end; ++i) {
        cp_async_wait<0>();  // V_i and K_{i+1}
        fence_proxy_async();
        __syncthreads();  // ... visible to all; every warp is done with iteration i - 1
        if (tn >= c.t_end) break;  // the last tile has no successor: finished below
        wgmma_fence();
        issue_qk(i + 1);
        issue_pv(i);
        // V buffer i + 1 held V_{i-1} and K buffer i held K_i: both consumed before the barrier.
        const int tnn = next_tile(tn + 1);
        load_rows(v_buf(i + 1), c.kv.v, tn);
        if (tnn < c.t_end) load_rows(k_buf(i), c.kv.k, tnn);
        cp_async_commit();
        float alpha[2];
        wgmma_wait<1>();  // S of tile i + 1 (P_i V_i may still run)
        fence_regs(s);
        softmax_tile(tn, alpha);
        wgmma_wait<0>();
        fence_regs(o);
        fence_regs(pa);  // the in-flight P V read pa: keep its registers until here
        rescale_rows(o, alpha);
        pack_p();
        t = tn;
        tn = tnn;
    }
    if (t < c.t_end) {
        wgmma_fence();
        issue_pv(i);
        wgmma_wait<0>();
        fence_regs(o);
    }

    // Epilogue: normalise, stage the tile in sQ (swizzled, as Q was), write 16-byte chunks.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    cp_async_wait<0>();  // the Q load, when no tile ran
    __syncthreads();     // every warpgroup is done reading sQ
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        const int row = wg * 64 + warp * 16 + g + 8 * r;  // within the CTA
#pragma unroll
        for (int nt = 0; nt < HD / 8; ++nt)
            *reinterpret_cast<uint32_t*>(sQ + swizzled_offset(kM, row, nt) + tig * 4) =
                pack2<T>(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
        const int qi = qi_base + 8 * r;
        if (p.lse != nullptr && tig == 0 && qi < c.lq)
            p.lse[static_cast<int64_t>(c.q0 + qi) * p.num_heads + c.h] =
                l[r] > 0.f ? m[r] * p.softmax_scale + logf(l[r]) : -INFINITY;
    }
    __syncthreads();
    T* out = static_cast<T*>(p.o) + (c.q0 + c.row_lo) * p.o_row_stride + c.h * p.o_head_stride;
    constexpr int kChunks = HD / 8;
#pragma unroll 4
    for (int i = threadIdx.x; i < kM * kChunks; i += kThreads) {
        const int r = i / kChunks, ch = i % kChunks;
        if (r < c.rows)
            *reinterpret_cast<uint4*>(out + r * p.o_row_stride + ch * 8) =
                *reinterpret_cast<const uint4*>(sQ + swizzled_offset(kM, r, ch));
    }
#endif
}

template <class T, int HD>
cudaError_t launch(const PrefillParams& p, cudaStream_t stream) {
    using Shape = Sm90Shape<HD>;
    auto* kernel = &prefill_sm90_kernel<T, HD>;
    const cudaError_t e = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Shape::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 grid((p.max_seqlen_q + Shape::kM - 1) / Shape::kM, p.num_heads, p.batch);
    kernel<<<grid, Shape::kThreads, Shape::kSmem, stream>>>(p);
    return cudaGetLastError();
}

template <class T>
cudaError_t launch_dtype(const PrefillParams& p, cudaStream_t stream) {
    switch (p.head_dim) {
        case 64: return launch<T, 64>(p, stream);
        case 128: return launch<T, 128>(p, stream);
        default: return launch<T, 256>(p, stream);
    }
}

}  // namespace

cudaError_t launch_prefill_sm90(const PrefillParams& p, cudaStream_t stream) {
    return p.dtype == Dtype::kF16 ? launch_dtype<__half>(p, stream)
                                  : launch_dtype<__nv_bfloat16>(p, stream);
}

}  // namespace vela::cuda::detail
