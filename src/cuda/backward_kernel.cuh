#pragma once
// FlashAttention-2 style backward with recomputation, three kernels:
//   1. bwd_preprocess: D = rowsum(dO * O) per (query row, head); zeroes the fp32 dQ accumulator.
//   2. bwd_dkdv: one CTA per (key tile of 128, kv head, sequence). Each of its 8 warps owns 16
//      keys and keeps their dK and dV accumulators in registers while it sweeps every query
//      tile of every query head of the group, rebuilding P = exp(S - LSE) from the forward's
//      LSE. dS is staged in shared memory (key-major) so that all warps can then form this key
//      tile's share of dQ = dS K, added to the fp32 accumulator straight from registers with
//      8-byte atomics (sm_90; scalar on sm_80): one reduction per dQ element per 128 keys.
//      A step covers kM query rows but runs them through the warps' registers in sub-tiles of
//      kSub rows, so the two CTA barriers of a step are paid once per kM rows.
//   3. bwd_convert_dq: dQ = scale * accumulator, rounded to the input dtype.
// S x S never exists anywhere; the memory cost is the fp32 dQ accumulator.
#include <cmath>

#include "cuda/attention_params.h"
#include "cuda/mma.cuh"
#include "cuda/prefill_kernel.cuh"

namespace vela::cuda::detail {

// The Hopper dK/dV kernel (backward_sm90.cu; code only in sm_90a builds): same inputs and
// outputs as bwd_dkdv_kernel, launched between the same preprocess and convert kernels. Its
// instance is picked in its own translation unit, by the same dispatch over BackwardHeadDims.
cudaError_t launch_backward_dkdv_sm90(const BackwardParams& p, float* dq_acc, const float* d_sum,
                                      cudaStream_t stream);

template <int HD>
struct BackwardShape {
    static constexpr int kWarps = 8;
    static constexpr int kThreads = kWarps * 32;
    static constexpr int kN = 16 * kWarps;           // keys per CTA
    static constexpr int kM = HD == 64 ? 128 : 64;   // query rows per step (between barriers)
    static constexpr int kSub = HD == 64 ? 64 : 32;  // rows per register pass: bounds registers
    static constexpr int kStride = HD + 8;           // padded rows: conflict-free ldmatrix
    static constexpr int kDsStride = kM + 8;
    // The dQ step splits the kM x HD tile over the warps: kM/16 row groups x the rest columns.
    static constexpr int kRowGroups = kM / 16;
    static constexpr int kDqCols = HD / (kWarps / kRowGroups);
    static_assert(kWarps % kRowGroups == 0 && kDqCols % 16 == 0 && kM % kSub == 0);
    // K, V; two buffers of Q and dO (the next query tile loads while this one computes); dS^T;
    // two buffers of LSE and D. At most 160 KB, so sm_80 parts (A100: 164 KB) run it too.
    template <class T>
    static constexpr int smem_bytes() {
        return ((2 * kN + 4 * kM) * kStride + kN * kDsStride) * static_cast<int>(sizeof(T)) +
               4 * kM * static_cast<int>(sizeof(float));
    }
};

// HD/8 threads per (query row, head), 16-byte loads of O and dO.
template <class T, int HD>
__global__ void bwd_preprocess_kernel(const BackwardParams p, float* dq_acc, float* d_sum) {
    constexpr int kLanes = HD / 8;
    const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t item = tid / kLanes;
    const int c = static_cast<int>(tid % kLanes) * 8;
    const bool live = item < static_cast<int64_t>(p.total_q) * p.num_heads;
    float acc = 0.f;
    if (live) {
        const int64_t row = item / p.num_heads, h = item % p.num_heads;
        const int64_t off = row * p.q_row_stride + h * p.q_head_stride + c;
        const uint4 ov = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.o) + off);
        const uint4 dv = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.d_o) + off);
        const T* oe = reinterpret_cast<const T*>(&ov);
        const T* de = reinterpret_cast<const T*>(&dv);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc += to_float(oe[j]) * to_float(de[j]);
        float4* z = reinterpret_cast<float4*>(dq_acc + item * HD + c);
        z[0] = z[1] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int s = kLanes / 2; s > 0; s /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, s);
    if (live && c == 0) d_sum[item] = acc;
}

// One thread per 8 elements: two 16-byte loads, one 16-byte store.
template <class T, int HD>
__global__ void bwd_convert_dq_kernel(const BackwardParams p, const float* dq_acc) {
    const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
    if (i >= static_cast<int64_t>(p.total_q) * p.num_heads * HD) return;
    const int64_t item = i / HD, c = i % HD;
    const int64_t row = item / p.num_heads, h = item % p.num_heads;
    const float4 a = *reinterpret_cast<const float4*>(dq_acc + i);
    const float4 b = *reinterpret_cast<const float4*>(dq_acc + i + 4);
    const float s = p.softmax_scale;
    const uint4 out = {pack2<T>(a.x * s, a.y * s), pack2<T>(a.z * s, a.w * s),
                       pack2<T>(b.x * s, b.y * s), pack2<T>(b.z * s, b.w * s)};
    *reinterpret_cast<uint4*>(static_cast<T*>(p.dq) + row * p.q_row_stride + h * p.q_head_stride +
                              c) = out;
}

// Per-CTA view of one sequence and kv head in the dK/dV kernel.
struct BwdTile {
    int q0, lq, k0, lk, key_lo;
    RowMask mask;
};

// Query tiles [first, end) that can see keys [key_lo, key_lo + kN) under causal/window masks.
template <int kM, int kN>
__device__ __forceinline__ int2 query_tile_range(const BwdTile& t, const BackwardParams& p) {
    int lo = 0, hi = t.lq;  // query rows
    if (p.causal) lo = max(0, t.key_lo - t.mask.diag);
    if (p.window_left >= 0) hi = min(t.lq, t.key_lo + kN - 1 - t.mask.diag + p.window_left + 1);
    if (hi <= lo) return make_int2(0, 0);
    return make_int2(lo / kM, (hi + kM - 1) / kM);
}

// LSE and D of one query row, read a step ahead into registers so that their global latency
// hides behind a step of math; raw values (natural-log LSE), converted when staged.
struct RowStats {
    float lse, d;
};

// Starts loading one query tile (Q, dO) of head h into shared memory with cp.async and returns
// this thread's row statistics (thread r < kM holds row r; padding rows get LSE = -inf).
template <class T, int HD, int kM, int kThreads>
__device__ __forceinline__ RowStats bwd_issue_query_tile(const BackwardParams& p, const BwdTile& t,
                                                         int h, int row_lo, T* sQ, T* sdO,
                                                         const float* d_sum) {
    const int rows = min(kM, t.lq - row_lo);
    const int64_t base = (t.q0 + row_lo) * p.q_row_stride + h * p.q_head_stride;
    const T* q = static_cast<const T*>(p.q) + base;
    const T* d_o = static_cast<const T*>(p.d_o) + base;
    load_tile<T, HD, kM, kThreads>(sQ, rows, [&](int r) { return q + r * p.q_row_stride; });
    load_tile<T, HD, kM, kThreads>(sdO, rows, [&](int r) { return d_o + r * p.q_row_stride; });
    cp_async_commit();
    RowStats st{-INFINITY, 0.f};
    if (static_cast<int>(threadIdx.x) < rows) {
        const int64_t item = static_cast<int64_t>(t.q0 + row_lo + threadIdx.x) * p.num_heads + h;
        st = {p.lse[item], d_sum[item]};
    }
    return st;
}

// Stages row statistics: LSE in log2 units, where +inf makes P = exp2(s - inf) = 0 for padding
// rows and rows that saw no key.
template <int kM>
__device__ __forceinline__ void bwd_stage_row_stats(const RowStats& st, float* sLse, float* sD) {
    if (threadIdx.x >= kM) return;
    sLse[threadIdx.x] = st.lse == -INFINITY ? INFINITY : st.lse * 1.4426950408889634f;
    sD[threadIdx.x] = st.d;
}

// Packs a 16 x (2*k16) fp32 accumulator slice into an mma A fragment (rows g / g+8).
template <class T>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&x0)[4],
                                         const float (&x1)[4]) {
    a[0] = pack2<T>(x0[0], x0[1]);
    a[1] = pack2<T>(x0[2], x0[3]);
    a[2] = pack2<T>(x1[0], x1[1]);
    a[3] = pack2<T>(x1[2], x1[3]);
}

// This warp's share of dQ for the staged dS tile: rows rg*16.., columns cg*kDqCols.., summed
// over the CTA's kN keys, added to the fp32 accumulator. A thread's two adjacent columns go in
// one 8-byte atomic, so each warp instruction fills eight whole 32-byte sectors (sm_90).
template <class T, int HD>
__device__ __forceinline__ void bwd_accumulate_dq(const BackwardParams& p, const BwdTile& t, int h,
                                                  int row_lo, const T* sK, const T* sdS,
                                                  float* dq_acc) {
    using Shape = BackwardShape<HD>;
    constexpr int kS = Shape::kStride, kDs = Shape::kDsStride, kCols = Shape::kDqCols;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int rg = warp % Shape::kRowGroups, cg = warp / Shape::kRowGroups;
    float acc[kCols / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < Shape::kN / 16; ++kk) {
        uint32_t a[4];  // A = dS[query][key], stored key-major: transposed load
        ldmatrix_x4_trans(
            a, sdS + (kk * 16 + lane % 8 + (lane / 16) * 8) * kDs + rg * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
        for (int nn = 0; nn < kCols / 16; ++nn) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, sK + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kS +
                                     cg * kCols + nn * 16 + (lane / 16) * 8);
            mma_16816<T>(acc[2 * nn], a, b[0], b[1]);
            mma_16816<T>(acc[2 * nn + 1], a, b[2], b[3]);
        }
    }
    const int g = lane / 4, tig = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int qi = row_lo + rg * 16 + g + 8 * r;
        if (qi >= t.lq) continue;
        float* dst = dq_acc + (static_cast<int64_t>(t.q0 + qi) * p.num_heads + h) * HD +
                     cg * kCols + tig * 2;
#pragma unroll
        for (int nt = 0; nt < kCols / 8; ++nt) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            atomicAdd(reinterpret_cast<float2*>(dst + nt * 8),
                      make_float2(acc[nt][2 * r], acc[nt][2 * r + 1]));
#else
            atomicAdd(dst + nt * 8, acc[nt][2 * r]);
            atomicAdd(dst + nt * 8 + 1, acc[nt][2 * r + 1]);
#endif
        }
    }
}

// S^T = K_w Q^T and dP^T = V_w dO^T for this warp's 16 keys against a kM-row query tile.
template <class T, int HD, int kM>
__device__ __forceinline__ void bwd_scores(const T* sK, const T* sV, const T* sQ, const T* sdO,
                                           float (&s)[kM / 8][4], float (&dp)[kM / 8][4]) {
    constexpr int kS = HD + 8;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
        uint32_t ka[4], va[4];
        const int a_off = (warp * 16 + lane % 16) * kS + kk * 16 + (lane / 16) * 8;
        ldmatrix_x4(ka, sK + a_off);
        ldmatrix_x4(va, sV + a_off);
#pragma unroll
        for (int nn = 0; nn < kM / 16; ++nn) {
            uint32_t bq[4], bo[4];
            const int b_off =
                (nn * 16 + lane % 8 + (lane / 16) * 8) * kS + kk * 16 + ((lane / 8) % 2) * 8;
            ldmatrix_x4(bq, sQ + b_off);
            ldmatrix_x4(bo, sdO + b_off);
            mma_16816<T>(s[2 * nn], ka, bq[0], bq[1]);
            mma_16816<T>(s[2 * nn + 1], ka, bq[2], bq[3]);
            mma_16816<T>(dp[2 * nn], va, bo[0], bo[1]);
            mma_16816<T>(dp[2 * nn + 1], va, bo[2], bo[3]);
        }
    }
}

// dV += P^T dO and dK += dS^T Q (P and dS straight from the accumulator registers).
template <class T, int HD, int kM>
__device__ __forceinline__ void bwd_accumulate_dkdv(const T* sQ, const T* sdO,
                                                    const float (&pt)[kM / 8][4],
                                                    const float (&dst)[kM / 8][4],
                                                    float (&dk)[HD / 8][4],
                                                    float (&dv)[HD / 8][4]) {
    constexpr int kS = HD + 8;
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < kM / 16; ++kk) {
        uint32_t pa[4], sa[4];
        acc_to_a<T>(pa, pt[2 * kk], pt[2 * kk + 1]);
        acc_to_a<T>(sa, dst[2 * kk], dst[2 * kk + 1]);
#pragma unroll
        for (int nn = 0; nn < HD / 16; ++nn) {
            uint32_t bo[4], bq[4];
            const int off =
                (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kS + nn * 16 + (lane / 16) * 8;
            ldmatrix_x4_trans(bo, sdO + off);
            ldmatrix_x4_trans(bq, sQ + off);
            mma_16816<T>(dv[2 * nn], pa, bo[0], bo[1]);
            mma_16816<T>(dv[2 * nn + 1], pa, bo[2], bo[3]);
            mma_16816<T>(dk[2 * nn], sa, bq[0], bq[1]);
            mma_16816<T>(dk[2 * nn + 1], sa, bq[2], bq[3]);
        }
    }
}

// Writes this warp's 16 rows of a dK or dV accumulator (times `mul`) for keys < lk.
template <class T, int HD>
__device__ __forceinline__ void bwd_store_rows(T* base, int64_t row_stride, int key_lo, int lk,
                                               const float (&acc)[HD / 8][4], float mul) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = key_lo + warp * 16 + g + 8 * r;
        if (key >= lk) continue;
        T* dst = base + key * row_stride + tig * 2;
#pragma unroll
        for (int nt = 0; nt < HD / 8; ++nt)
            *reinterpret_cast<uint32_t*>(dst + nt * 8) =
                pack2<T>(acc[nt][2 * r] * mul, acc[nt][2 * r + 1] * mul);
    }
}

// Turns this warp's S^T into P^T = exp(S - LSE) (0 where masked) and dP^T into
// dS^T = P^T * (dP^T - D), in place. Scores are raw q.k; LSE comes in log2 units.
template <int kM, int kN>
__device__ __forceinline__ void bwd_probs_and_grads(const BackwardParams& p, const BwdTile& t,
                                                    int row_lo, const float* sLse, const float* sD,
                                                    float (&s)[kM / 8][4], float (&dp)[kM / 8][4]) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
    const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
    const RowMask& m = t.mask;
    const bool need_mask =
        t.key_lo + kN > t.lk || (p.causal && t.key_lo + kN - 1 > row_lo + m.diag) ||
        (p.window_left >= 0 && t.key_lo < row_lo + kM - 1 + m.diag - p.window_left);
#pragma unroll
    for (int nt = 0; nt < kM / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int col = nt * 8 + tig * 2 + (e % 2);
            const int key = t.key_lo + warp * 16 + g + 8 * (e / 2);
            float pv = fast_exp2(s[nt][e] * scale_log2 - sLse[col]);
            if (need_mask && m.masked(row_lo + col, key)) pv = 0.f;
            s[nt][e] = pv;
            dp[nt][e] = pv * (dp[nt][e] - sD[col]);
        }
    }
}

// One warp's math for one query tile, kSub rows at a time: S^T and dP^T, P^T and dS^T, dV and
// dK updates, then dS^T (rounded to T) into the shared key-major tile for the dQ step.
template <class T, int HD>
__device__ __forceinline__ void bwd_step(const BackwardParams& p, const BwdTile& t, int row_lo,
                                         const T* sK, const T* sV, const T* sQ, const T* sdO,
                                         const float* sLse, const float* sD, T* sdS,
                                         float (&dk)[HD / 8][4], float (&dv)[HD / 8][4]) {
    using Shape = BackwardShape<HD>;
    constexpr int kSub = Shape::kSub, kS = Shape::kStride;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
#pragma unroll 1
    for (int sub = 0; sub < Shape::kM / kSub; ++sub) {
        const int r0 = sub * kSub;
        if (row_lo + r0 >= t.lq) break;  // padding sub-tile: its dS^T columns are never read
        float s[kSub / 8][4] = {}, dp[kSub / 8][4] = {};
        bwd_scores<T, HD, kSub>(sK, sV, sQ + r0 * kS, sdO + r0 * kS, s, dp);
        bwd_probs_and_grads<kSub, Shape::kN>(p, t, row_lo + r0, sLse + r0, sD + r0, s, dp);
        bwd_accumulate_dkdv<T, HD, kSub>(sQ + r0 * kS, sdO + r0 * kS, s, dp, dk, dv);
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int nt = 0; nt < kSub / 8; ++nt)
                *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g + 8 * r) * Shape::kDsStride + r0 +
                                             nt * 8 + tig * 2) =
                    pack2<T>(dp[nt][2 * r], dp[nt][2 * r + 1]);
    }
}

template <class T, int HD>
__global__ void __launch_bounds__(BackwardShape<HD>::kThreads, 1)
    bwd_dkdv_kernel(const BackwardParams p, float* dq_acc, const float* d_sum) {
    using Shape = BackwardShape<HD>;
    constexpr int kM = Shape::kM, kN = Shape::kN, kS = Shape::kStride;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sK = reinterpret_cast<T*>(smem_raw);
    T* sV = sK + kN * kS;
    T* sQ0 = sV + kN * kS;  // buffers: Q[2], dO[2], then dS^T, LSE[2], D[2]
    T* sdO0 = sQ0 + 2 * kM * kS;
    T* sdS = sdO0 + 2 * kM * kS;
    float* sLse0 = reinterpret_cast<float*>(sdS + kN * Shape::kDsStride);
    float* sD0 = sLse0 + 2 * kM;

    const int b = blockIdx.z, kvh = blockIdx.y;
    BwdTile t;
    t.q0 = p.cu_seqlens_q[b];
    t.lq = p.cu_seqlens_q[b + 1] - t.q0;
    t.k0 = p.cu_seqlens_k[b];
    t.lk = p.cu_seqlens_k[b + 1] - t.k0;
    t.key_lo = blockIdx.x * kN;
    if (t.key_lo >= t.lk) return;
    t.mask = {t.lk, t.lk - t.lq, p.window_left, p.causal, nullptr};

    const int64_t kv_base = (t.k0 + t.key_lo) * p.kv_row_stride + kvh * p.kv_head_stride;
    const T* k = static_cast<const T*>(p.k) + kv_base;
    const T* v = static_cast<const T*>(p.v) + kv_base;
    const int keys = min(kN, t.lk - t.key_lo);
    load_tile<T, HD, kN, Shape::kThreads>(sK, keys, [&](int r) { return k + r * p.kv_row_stride; });
    load_tile<T, HD, kN, Shape::kThreads>(sV, keys, [&](int r) { return v + r * p.kv_row_stride; });
    cp_async_commit();

    float dk[HD / 8][4] = {}, dv[HD / 8][4] = {};
    // Steps run over (query head of the group, query tile) pairs; step i uses buffer i % 2.
    const int2 range = query_tile_range<kM, kN>(t, p);
    const int group = p.num_heads / p.num_kv_heads, per_head = range.y - range.x;
    const int steps = group * per_head;
    auto head = [&](int i) { return kvh * group + i / per_head; };
    auto row_lo = [&](int i) { return (range.x + i % per_head) * kM; };
    auto issue = [&](int i) {
        const int buf = i % 2;
        return bwd_issue_query_tile<T, HD, kM, Shape::kThreads>(
            p, t, head(i), row_lo(i), sQ0 + buf * kM * kS, sdO0 + buf * kM * kS, d_sum);
    };
    if (steps > 0) bwd_stage_row_stats<kM>(issue(0), sLse0, sD0);
    for (int i = 0; i < steps; ++i) {
        const int buf = i % 2;
        cp_async_wait<0>();
        // Step i's tile and row statistics landed and are visible; every warp finished step
        // i-1's reads of the other buffers (the next issue overwrites them) and of dS^T.
        __syncthreads();
        RowStats next{-INFINITY, 0.f};
        if (i + 1 < steps) next = issue(i + 1);
        bwd_step<T, HD>(p, t, row_lo(i), sK, sV, sQ0 + buf * kM * kS, sdO0 + buf * kM * kS,
                        sLse0 + buf * kM, sD0 + buf * kM, sdS, dk, dv);
        if (i + 1 < steps)
            bwd_stage_row_stats<kM>(next, sLse0 + (1 - buf) * kM, sD0 + (1 - buf) * kM);
        __syncthreads();  // dS^T of all warps staged
        bwd_accumulate_dq<T, HD>(p, t, head(i), row_lo(i), sK, sdS, dq_acc);
    }
    cp_async_wait<0>();  // a tile that no query sees never waited for its K/V copies
    const int64_t out_base = t.k0 * p.kv_row_stride + kvh * p.kv_head_stride;
    bwd_store_rows<T, HD>(static_cast<T*>(p.dk) + out_base, p.kv_row_stride, t.key_lo, t.lk, dk,
                          p.softmax_scale);
    bwd_store_rows<T, HD>(static_cast<T*>(p.dv) + out_base, p.kv_row_stride, t.key_lo, t.lk, dv,
                          1.f);
}

}  // namespace vela::cuda::detail
