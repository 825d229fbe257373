// Hopper prefill forward (sm_90a): the FlashAttention-2 algorithm on warpgroup MMA (wgmma).
// One CTA covers 64 query rows per consumer warpgroup of one (sequence, head). K/V tiles of kN
// keys are double-buffered in 128-byte-swizzled shared memory; S = Q K^T is a wgmma with both
// operands in shared memory, O += P V takes P straight from the S accumulators in registers.
// Two ways to load (kTma):
// - contiguous K/V with known totals: a producer warpgroup (one thread) issues TMA bulk tensor
//   copies and hands buffers over through mbarriers; the consumer warpgroups never meet at a
//   CTA barrier and take turns on the tensor cores (ping-pong: one issues its MMAs while the
//   others run their softmax), as in FlashAttention-3;
// - otherwise (paged K/V of any block size, unknown totals): every thread copies with cp.async
//   and a CTA barrier per tile separates the stages.
// Masks (causal, window, block-sparse, sequence end) are the same as the mma.sync kernel's.
#include <cmath>

#include "cuda/dispatch.cuh"
#include "cuda/launch.h"
#include "cuda/prefill_kernel.cuh"
#include "cuda/sm90_sync.cuh"
#include "cuda/tma_map.h"
#include "cuda/wgmma.cuh"

namespace vela::cuda::detail {
namespace {

template <int HD, bool kTma>
struct Sm90Shape {
    // head_dim 64 has half the MMA work per score of head_dim 128: a third warpgroup shares
    // each K/V tile and hides more of the softmax.
    static constexpr int kConsumers = HD == 64 ? 3 : 2;
    static constexpr int kConsumerThreads = 128 * kConsumers;
    static constexpr int kThreads = kConsumerThreads + (kTma ? 128 : 0);
    static constexpr int kM = 64 * kConsumers;       // query rows per CTA
    static constexpr int kN = HD == 256 ? 64 : 128;  // keys per tile
    static constexpr int kPvN = HD == 64 ? 64 : 128;  // N of one P*V wgmma
    static constexpr int kQBytes = kM * HD * 2;
    static constexpr int kTileBytes = kN * HD * 2;  // one K or V tile
    // Q, two K and two V buffers, then (TMA only) the mbarriers, then (block masks) the staged
    // mask rows; +1 KB to align the swizzle atoms.
    static constexpr int kBarOffset = kQBytes + 4 * kTileBytes;
    static constexpr int kMaskOffset = kBarOffset + (kTma ? 9 * 8 : 0);
    static constexpr int kSmem = kMaskOffset + 1024;  // + the mask rows
    static constexpr int kMaskCols = kN / PrefillParams::kBlockMaskSize;  // mask entries per tile
    // Registers per thread after setmaxnreg: the producer keeps 24, the consumers share the rest
    // of the launch allocation (kThreads x 65536 / kThreads, in multiples of 8), at most 240.
    static constexpr int kProducerRegs = 24;
    static constexpr int kPool = kThreads * (65536 / kThreads / 8 * 8);
    static constexpr int kConsumerRegs =
        (kPool - 128 * kProducerRegs) / kConsumerThreads / 8 * 8 > 240
            ? 240
            : (kPool - 128 * kProducerRegs) / kConsumerThreads / 8 * 8;
    static_assert(128 * kProducerRegs + kConsumerThreads * kConsumerRegs <= kPool);
    static_assert(kM == kConsumers * PrefillParams::kBlockMaskSize &&
                  kN % PrefillParams::kBlockMaskSize == 0);
};

// TMA descriptors of Q, K and V: 3-d tensors (head_dim, rows, heads), boxes of 64 columns (one
// 128-byte swizzle atom) x kM (Q) or kN (K/V) rows of one head.
struct Sm90Maps {
    CUtensorMap q, k, v;
};

// Block-sparse bits of tile t for one query block whose mask row is `row`: bit j set when mask
// column j of the tile is kept (columns past the sequence's keys read as masked).
template <int kN>
__device__ __forceinline__ unsigned tile_keep_bits(const uint8_t* row, int lk, int t) {
    constexpr int kB = PrefillParams::kBlockMaskSize;
    unsigned bits = 0;
#pragma unroll
    for (int j = 0; j < kN / kB; ++j) {
        const int kb = t * (kN / kB) + j;
        if (kb * kB < lk && row[kb] != 0) bits |= 1u << j;
    }
    return bits;
}

// What every role of a CTA shares: the plan, the shared-memory layout and the tile order.
template <class T, int HD, bool kTma>
struct Sm90Cta {
    using Shape = Sm90Shape<HD, kTma>;
    const PrefillParams& p;
    PrefillCta c;
    int m_block;
    unsigned char* sQ;
    unsigned char* sKV;  // K buffers 0 and 1, then V buffers 0 and 1
    uint64_t* bar;       // Q full, K full 0/1, V full 0/1, K empty 0/1, V empty 0/1
    // Block-mask rows of the CTA's query blocks (block masks only): row w at mask + w *
    // mask_stride, in global memory or staged in shared memory by the consumers.
    const uint8_t* mask;
    int64_t mask_stride;

    __device__ unsigned char* k_buf(int i) const { return sKV + (i % 2) * Shape::kTileBytes; }
    __device__ unsigned char* v_buf(int i) const { return sKV + (2 + i % 2) * Shape::kTileBytes; }
    __device__ uint64_t* q_full() const { return bar; }
    __device__ uint64_t* k_full(int i) const { return bar + 1 + i % 2; }
    __device__ uint64_t* v_full(int i) const { return bar + 3 + i % 2; }
    __device__ uint64_t* k_empty(int i) const { return bar + 5 + i % 2; }
    __device__ uint64_t* v_empty(int i) const { return bar + 7 + i % 2; }
    // Parity of the phase that fills buffer i % 2 for the (i / 2)-th time.
    __device__ static int phase(int i) { return (i / 2) & 1; }

    // First tile >= t that some warpgroup computes (block-sparse masks skip the others), or -1;
    // keep gets the block-mask bits of every warpgroup (kMaskCols per warpgroup, first at bit 0).
    template <bool kMasked>
    __device__ int next_tile(int t, unsigned& keep) const {
        constexpr int kCols = Shape::kMaskCols, kB = PrefillParams::kBlockMaskSize;
        if constexpr (!kMasked) {
            keep = (1u << (kCols * Shape::kConsumers)) - 1;
            return t < c.t_end ? t : -1;
        } else {
            for (; t < c.t_end; ++t) {
                keep = 0;
#pragma unroll
                for (int w = 0; w < Shape::kConsumers; ++w)  // blocks past the queries: none kept
                    if ((Shape::kConsumers * m_block + w) * kB < c.lq)
                        keep |= tile_keep_bits<Shape::kN>(mask + w * mask_stride, c.lk, t)
                                << (w * kCols);
                if (keep != 0) return t;
            }
            keep = 0;
            return -1;
        }
    }
    // cp.async loads by all consumer threads (the non-TMA path).
    __device__ void load_q() const {
        const T* q = static_cast<const T*>(p.q) + (c.q0 + c.row_lo) * p.q_row_stride +
                     c.h * p.q_head_stride;
        load_swizzled<HD, Shape::kM, Shape::kConsumerThreads>(
            sQ, c.rows, [&](int r) { return q + r * p.q_row_stride; });
    }
    __device__ void load_tile(unsigned char* dst, const char* base, int t) const {
        const int key0 = t * Shape::kN;
        load_swizzled<HD, Shape::kN, Shape::kConsumerThreads>(
            dst, min(Shape::kN, c.lk - key0),
            [&](int r) { return reinterpret_cast<const T*>(base) + c.kv.offset(key0 + r); });
    }
};

// Producer (one thread of the producer warpgroup): Q, then K_j and V_j of each visible tile j
// into buffer j % 2 once every consumer warp released the buffer's previous contents. Rows past
// the sequence's end belong to the next sequence (or are zero-filled past the tensor): the
// consumers mask their scores, so they never reach the output.
template <class T, int HD, bool kMasked>
__device__ __forceinline__ void produce(const Sm90Cta<T, HD, true>& x, const Sm90Maps& maps) {
    using Shape = Sm90Shape<HD, true>;
    const PrefillParams& p = x.p;
    const PrefillCta& c = x.c;
    const int kvh = c.h / (p.num_heads / p.num_kv_heads);
    const int k0 = p.cu_seqlens_k[c.b];
    mbar_arrive_expect_tx(x.q_full(), Shape::kQBytes);
#pragma unroll
    for (int a = 0; a < HD / 64; ++a)
        tma_load_3d(x.sQ + a * Shape::kM * 128, &maps.q, a * 64, c.q0 + c.row_lo, c.h, x.q_full());
    auto load = [&](unsigned char* dst, const CUtensorMap* map, int t, uint64_t* full) {
        mbar_arrive_expect_tx(full, Shape::kTileBytes);
#pragma unroll
        for (int a = 0; a < HD / 64; ++a)
            tma_load_3d(dst + a * Shape::kN * 128, map, a * 64, k0 + t * Shape::kN, kvh, full);
    };
    unsigned keep = 0;
    for (int j = 0, t = x.template next_tile<kMasked>(c.t_begin, keep); t >= 0;
         t = x.template next_tile<kMasked>(t + 1, keep), ++j) {
        if (j >= 2) mbar_wait(x.k_empty(j), x.phase(j - 2));
        load(x.k_buf(j), &maps.k, t, x.k_full(j));
        if (j >= 2) mbar_wait(x.v_empty(j), x.phase(j - 2));
        load(x.v_buf(j), &maps.v, t, x.v_full(j));
    }
}

// Consumer warpgroups: 64 query rows each. Software pipeline over the visible tiles t_0, t_1,
// ...: iteration i issues S of tile i + 1 and O += P_i V_i back to back and runs the softmax of
// tile i + 1 while P_i V_i is still on the tensor cores. Without TMA the consumers also load
// (V_{i+1} and K_{i+2}, into buffers released before the iteration's CTA barrier).
template <class T, int HD, bool kTma, bool kMasked>
__device__ __forceinline__ void consume(const Sm90Cta<T, HD, kTma>& x) {
    using Shape = Sm90Shape<HD, kTma>;
    constexpr int kM = Shape::kM, kN = Shape::kN, kWgs = Shape::kConsumers;
    const PrefillParams& p = x.p;
    const PrefillCta& c = x.c;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const int g = lane / 4, tig = lane % 4;
    const int wg_lo = c.row_lo + wg * 64;     // this warpgroup's first query row
    const int qi_base = wg_lo + warp * 16 + g;  // rows qi_base and qi_base + 8

    float o[HD / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const float scale_log2 = p.softmax_scale * 1.4426950408889634f;

    // A tile as this warpgroup sees it: index (< 0: none) and its block-mask bits. A tile it
    // keeps nothing of (kept by another warpgroup) costs it no softmax: P = 0. Its MMAs still
    // run: a wgmma under a branch the compiler cannot prove uniform gets serialised (C7520).
    struct Tile {
        int t;
        unsigned keep;
    };
    constexpr unsigned kAllCols = (1u << Shape::kMaskCols) - 1;
    auto walk = [&](int t) {  // the next visible tile from t (t < 0: none)
        unsigned keep = 0;
        const int tn = t < 0 ? -1 : x.template next_tile<kMasked>(t, keep);
        return Tile{tn, keep >> (wg * Shape::kMaskCols) & kAllCols};
    };

    // S = Q K^T of the tile in K buffer i, issued (not awaited).
    float s[kN / 8][4];
    auto issue_qk = [&](int i) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
            const int atom = kk / 4, col = (kk % 4) * 32;
            const uint64_t a =
                sw128_desc(x.sQ + atom * kM * 128 + wg * 64 * 128 + col, 16, 1024);
            const uint64_t b = sw128_desc(x.k_buf(i) + atom * kN * 128 + col, 16, 1024);
            wgmma_ss<T, kN>(s, a, b, kk > 0);
        }
        wgmma_commit();
    };
    // P (the A operand of P V) packed from s, or zero for a tile this warpgroup masks whole.
    uint32_t pa[kN / 16][4];
    auto pack_p = [&](bool kept) {
        if (!kept) {
#pragma unroll
            for (int kk = 0; kk < kN / 16; ++kk) pa[kk][0] = pa[kk][1] = pa[kk][2] = pa[kk][3] = 0;
            return;
        }
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk) {
            pa[kk][0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
    };
    // O += P_i V_i from V buffer i, issued (not awaited).
    auto issue_pv = [&](int i) {
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk) {
#pragma unroll
            for (int n = 0; n < HD / Shape::kPvN; ++n) {
                // V is read transposed: N = head dim (64-column atoms kN * 128 bytes apart),
                // K = 16 keys (two 8-row groups of 1024 bytes).
                const uint64_t b = sw128_desc(
                    x.v_buf(i) + n * (Shape::kPvN / 64) * kN * 128 + kk * 16 * 128, kN * 128,
                    1024);
                wgmma_rs<T, Shape::kPvN>(o + n * (Shape::kPvN / 8), pa[kk], b);
            }
        }
        wgmma_commit();
    };
    // Masks s (tile t) and runs the online softmax on it; alpha rescales the output so far.
    auto softmax_tile = [&](Tile tile, float (&alpha)[2]) {
        const int key0 = tile.t * kN;
        const unsigned keep = tile.keep;
        const bool need_mask =
            keep != kAllCols || key0 + kN > c.lk ||
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

    // TMA: consumer warps release a buffer (one arrive per warp) once their wgmma read it.
    auto release = [&](uint64_t* empty) {
        if constexpr (kTma) {
            __syncwarp();
            if (lane == 0) mbar_arrive(empty);
        }
    };
    // TMA ping-pong: warpgroups issue their MMAs in turn (wg, wg + 1, ...), so while one keeps
    // the tensor cores busy the others run their softmax. Turn w is named barrier 1 + w over
    // its warpgroup and the one before it; the last warpgroup opens the first turn and skips
    // passing on its final one, so every barrier sees as many arrivals as waits.
    constexpr bool turns = kTma && kWgs > 1;
    auto take_turn = [&] {
        if constexpr (turns) named_barrier_sync(1 + wg, 256);
    };
    auto pass_turn = [&](bool last) {
        if constexpr (turns)
            if (!(last && wg == kWgs - 1)) named_barrier_arrive(1 + (wg + 1) % kWgs, 256);
    };

    Tile cur = walk(c.t_begin);
    Tile nxt = walk(cur.t < 0 ? -1 : cur.t + 1);
    if constexpr (kTma) {
        mbar_wait(x.q_full(), 0);
        if (cur.t >= 0) mbar_wait(x.k_full(0), 0);
        if (turns && wg == kWgs - 1 && cur.t >= 0) named_barrier_arrive(1, 256);  // turn 0
    } else {
        x.load_q();
        if (cur.t >= 0) x.load_tile(x.k_buf(0), c.kv.k, cur.t);
        cp_async_commit();
        if (cur.t >= 0) x.load_tile(x.v_buf(0), c.kv.v, cur.t);
        if (nxt.t >= 0) x.load_tile(x.k_buf(1), c.kv.k, nxt.t);
        cp_async_commit();
        cp_async_wait<1>();  // Q and K_0
        fence_proxy_async();
        __syncthreads();
    }
    if (cur.t >= 0) {
        take_turn();
        wgmma_fence();
        issue_qk(0);
        pass_turn(false);
        wgmma_wait<0>();
        fence_regs(s);
        release(x.k_empty(0));
        float alpha[2];
        if (!kMasked || cur.keep != 0) softmax_tile(cur, alpha);  // o = 0: nothing to rescale
        pack_p(!kMasked || cur.keep != 0);
    }
    int i = 0;
    for (; cur.t >= 0; ++i) {
        if constexpr (kTma) {
            mbar_wait(x.v_full(i), x.phase(i));
            if (nxt.t >= 0) mbar_wait(x.k_full(i + 1), x.phase(i + 1));
        } else {
            cp_async_wait<0>();  // V_i and K_{i+1}
            fence_proxy_async();
            __syncthreads();  // ... visible to all; every warp is done with iteration i - 1
        }
        if (nxt.t < 0) break;  // the last tile has no successor: finished below
        take_turn();
        wgmma_fence();
        issue_qk(i + 1);
        issue_pv(i);
        pass_turn(false);
        const Tile after = walk(nxt.t + 1);
        if constexpr (!kTma) {
            // V buffer i + 1 held V_{i-1} and K buffer i held K_i: consumed before the barrier.
            x.load_tile(x.v_buf(i + 1), c.kv.v, nxt.t);
            if (after.t >= 0) x.load_tile(x.k_buf(i), c.kv.k, after.t);
            cp_async_commit();
        }
        float alpha[2] = {1.f, 1.f};
        wgmma_wait<1>();  // S of tile i + 1 (P_i V_i may still run)
        fence_regs(s);
        release(x.k_empty(i + 1));
        if (!kMasked || nxt.keep != 0) softmax_tile(nxt, alpha);
        wgmma_wait<0>();
        fence_regs(o);
        fence_regs(pa);  // the in-flight P V read pa: keep its registers until here
        release(x.v_empty(i));
        if (!kMasked || nxt.keep != 0) rescale_rows(o, alpha);
        pack_p(!kMasked || nxt.keep != 0);
        cur = nxt;
        nxt = after;
    }
    if (cur.t >= 0) {
        take_turn();
        wgmma_fence();
        issue_pv(i);
        pass_turn(true);
        wgmma_wait<0>();
        fence_regs(o);
    }

    // Epilogue: normalise, stage this warpgroup's rows in its part of sQ (swizzled, as Q was),
    // write 16-byte chunks. Its own S wgmmas were the last readers of those rows.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    if constexpr (!kTma) {
        cp_async_wait<0>();
        __syncthreads();  // every warpgroup is done reading sQ; no cp.async writes it
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        const int row = wg * 64 + warp * 16 + g + 8 * r;  // within the CTA
#pragma unroll
        for (int nt = 0; nt < HD / 8; ++nt)
            *reinterpret_cast<uint32_t*>(x.sQ + swizzled_offset(kM, row, nt) + tig * 4) =
                pack2<T>(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
        const int qi = qi_base + 8 * r;
        if (p.lse != nullptr && tig == 0 && qi < c.lq)
            p.lse[static_cast<int64_t>(c.q0 + qi) * p.num_heads + c.h] =
                l[r] > 0.f ? m[r] * p.softmax_scale + logf(l[r]) : -INFINITY;
    }
    named_barrier_sync(8 + wg, 128);
    T* out = static_cast<T*>(p.o) + (c.q0 + c.row_lo) * p.o_row_stride + c.h * p.o_head_stride;
    constexpr int kChunks = HD / 8;
#pragma unroll 4
    for (int e = threadIdx.x % 128; e < 64 * kChunks; e += 128) {
        const int r = wg * 64 + e / kChunks, ch = e % kChunks;
        if (r < c.rows)
            *reinterpret_cast<uint4*>(out + r * p.o_row_stride + ch * 8) =
                *reinterpret_cast<const uint4*>(x.sQ + swizzled_offset(kM, r, ch));
    }
}

// Points x at the CTA's block-mask rows: copied into shared memory at `smem` (rows `stride`
// bytes apart; the caller syncs before use) when stride > 0, else read from global memory.
// Query blocks past the sequence are never read (next_tile skips them).
template <class T, int HD, bool kTma>
__device__ __forceinline__ void stage_mask_rows(Sm90Cta<T, HD, kTma>& x, unsigned char* smem,
                                                int stride) {
    using Shape = Sm90Shape<HD, kTma>;
    constexpr int kB = PrefillParams::kBlockMaskSize;
    const int64_t row_stride = x.p.block_mask_row_stride;
    const uint8_t* rows = x.c.block_mask + Shape::kConsumers * x.m_block * row_stride;
    if (stride == 0) {
        x.mask = rows;
        x.mask_stride = row_stride;
        return;
    }
    const int nkb = (x.c.lk + kB - 1) / kB;
    const int nrows = min(Shape::kConsumers, (x.c.lq - x.c.row_lo + kB - 1) / kB);
    for (int e = threadIdx.x; e < nrows * nkb; e += Shape::kThreads)
        smem[e / nkb * stride + e % nkb] = rows[e / nkb * row_stride + e % nkb];
    x.mask = smem;
    x.mask_stride = stride;
}

template <class T, int HD, bool kTma, bool kMasked>
__global__ void __launch_bounds__(Sm90Shape<HD, kTma>::kThreads, 1)
    prefill_sm90_kernel(const PrefillParams p, const __grid_constant__ Sm90Maps maps,
                        int mask_smem_stride) {
#ifdef VELA_SM90A_DEVICE
    using Shape = Sm90Shape<HD, kTma>;
    extern __shared__ unsigned char smem_raw[];
    unsigned char* sQ = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
    Sm90Cta<T, HD, kTma> x{p, {}, 0, sQ, sQ + Shape::kQBytes,
                           reinterpret_cast<uint64_t*>(sQ + Shape::kBarOffset), nullptr, 0};
    x.m_block = gridDim.x - 1 - blockIdx.x;  // longest causal tiles start first
    if (!plan_prefill_cta<Shape::kM, Shape::kN>(p, x.m_block, x.c)) return;
    if constexpr (kMasked) stage_mask_rows(x, sQ + Shape::kMaskOffset, mask_smem_stride);
    if constexpr (kTma) {
        if (threadIdx.x == 0) {
            mbar_init(x.q_full(), 1);
            for (int i = 0; i < 2; ++i) {
                mbar_init(x.k_full(i), 1);
                mbar_init(x.v_full(i), 1);
                mbar_init(x.k_empty(i), 4 * Shape::kConsumers);  // one arrive per consumer warp
                mbar_init(x.v_empty(i), 4 * Shape::kConsumers);
            }
            mbar_fence_init();
        }
        __syncthreads();
        if (threadIdx.x >= Shape::kConsumerThreads) {
            setmaxnreg_dec<Shape::kProducerRegs>();
            if (threadIdx.x == Shape::kConsumerThreads) produce<T, HD, kMasked>(x, maps);
            return;
        }
        setmaxnreg_inc<Shape::kConsumerRegs>();
    } else if constexpr (kMasked) {
        __syncthreads();  // the staged mask rows
    }
    consume<T, HD, kTma, kMasked>(x);
#endif
}

template <class T, int HD>
bool encode_maps(const PrefillParams& p, Sm90Maps& maps) {
    using Shape = Sm90Shape<HD, true>;
    if (p.paged.block_table != nullptr || p.total_q <= 0 || p.total_k <= 0) return false;
    const auto dt = tma_dtype<T>();
    return encode_map(&maps.q, dt, p.q, HD, p.total_q, p.num_heads, p.q_row_stride,
                      p.q_head_stride, Shape::kM) &&
           encode_map(&maps.k, dt, p.k, HD, p.total_k, p.num_kv_heads, p.kv_row_stride,
                      p.kv_head_stride, Shape::kN) &&
           encode_map(&maps.v, dt, p.v, HD, p.total_k, p.num_kv_heads, p.kv_row_stride,
                      p.kv_head_stride, Shape::kN);
}

// Bytes between the block-mask rows staged in shared memory (0: read them from global memory):
// the longest sequence's mask row, when a host-side bound on it is known and fits.
template <int HD, bool kTma>
int mask_smem_stride(const PrefillParams& p) {
    using Shape = Sm90Shape<HD, kTma>;
    constexpr int kSmemLimit = 227 * 1024;  // Hopper's dynamic shared memory per CTA
    const int64_t max_lk = p.paged.block_table != nullptr
                               ? int64_t{p.paged.block_table_stride} * p.paged.block_size
                               : p.total_k;
    const int64_t stride = (max_lk + PrefillParams::kBlockMaskSize - 1) /
                           PrefillParams::kBlockMaskSize / 16 * 16 + 16;
    return max_lk > 0 && Shape::kSmem + Shape::kConsumers * stride <= kSmemLimit
               ? static_cast<int>(stride)
               : 0;
}

template <class T, int HD, bool kTma, bool kMasked>
cudaError_t launch(const PrefillParams& p, const Sm90Maps& maps, cudaStream_t stream) {
    using Shape = Sm90Shape<HD, kTma>;
    constexpr auto kernel = &prefill_sm90_kernel<T, HD, kTma, kMasked>;
    const int mask_stride = kMasked ? mask_smem_stride<HD, kTma>(p) : 0;
    const int smem = Shape::kSmem + Shape::kConsumers * mask_stride;
    if (const cudaError_t e = allow_dynamic_smem<kernel>(smem); e != cudaSuccess) return e;
    const dim3 grid((p.max_seqlen_q + Shape::kM - 1) / Shape::kM, p.num_heads, p.batch);
    kernel<<<grid, Shape::kThreads, smem, stream>>>(p, maps, mask_stride);
    return cudaGetLastError();
}

template <class T, int HD, bool kMasked>
cudaError_t launch_hd(const PrefillParams& p, cudaStream_t stream) {
    Sm90Maps maps{};
    if (encode_maps<T, HD>(p, maps)) return launch<T, HD, true, kMasked>(p, maps, stream);
    return launch<T, HD, false, kMasked>(p, maps, stream);
}

}  // namespace

// Instances: dtype x head dim (dispatch.cuh), and within each, whether a block mask is given and
// whether Q/K/V could be mapped for TMA (run-time facts of the call, not of the model).
cudaError_t launch_prefill_sm90(const PrefillParams& p, cudaStream_t stream) {
    return dispatch_dtype<PrefillSm90HeadDims>(p.dtype, p.head_dim, [&](auto t, auto hd) {
        using T = typename decltype(t)::type;
        constexpr int HD = decltype(hd)::value;
        return p.block_mask != nullptr ? launch_hd<T, HD, true>(p, stream)
                                       : launch_hd<T, HD, false>(p, stream);
    });
}

}  // namespace vela::cuda::detail
