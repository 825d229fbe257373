// Hopper (sm_90a) dK/dV kernel of the backward: the FlashAttention-2 recomputation of
// backward_kernel.cuh on warpgroup MMA (wgmma). One CTA = 128 keys of one (sequence, kv head),
// 64 keys per warpgroup, K and V resident in 128-byte-swizzled shared memory; it sweeps every
// query tile of every query head of the group. A producer warpgroup (one thread) loads the
// tiles of Q and dO by TMA into two buffers handed over through mbarriers (full / empty); the
// two consumer warpgroups stage the row statistics themselves. Per tile:
//   S^T = K Q^T and dP^T = V dO^T   wgmma, both operands in shared memory (key rows = M)
//   P^T, dS^T                       in registers, from the forward's LSE and D = rowsum(dO O)
//   dV += P^T dO, dK += dS^T Q      wgmma with A = P^T / dS^T straight from the accumulators
//                                   (an accumulator's layout is the register-A layout)
//   dQ += dS K                      dS^T staged in shared memory, read MN-major; fp32 atomics
// software-pipelined with one consumer barrier per query tile (step_sm90).
// The preprocess and dQ convert kernels are the sm_80 path's (backward_kernel.cuh).
#include <cmath>

#include "cuda/backward_kernel.cuh"
#include "cuda/dispatch.cuh"
#include "cuda/sm90_sync.cuh"
#include "cuda/tma_map.h"
#include "cuda/wgmma.cuh"

namespace vela::cuda::detail {
namespace {

template <int HD>
struct Sm90BwdShape {
    static constexpr int kWarpGroups = 2;
    static constexpr int kThreads = 128 * kWarpGroups;
    static constexpr int kN = 64 * kWarpGroups;     // keys per CTA (64 per warpgroup = wgmma M)
    static constexpr int kM = HD == 64 ? 128 : 64;  // query rows per step (N of S^T, dP^T)
    static constexpr int kKvBytes = kN * HD * 2;    // one K or V tile
    static constexpr int kQBytes = kM * HD * 2;     // one Q or dO tile
    static constexpr int kDsBytes = kN * kM * 2;
    // K, V, two buffers each of Q, dO, dS^T, LSE and D, four mbarriers (Q full 0/1, Q empty
    // 0/1), +1 KB to align the swizzle atoms: 162 KB at head_dim 128, 163 KB at 64.
    static constexpr int kBarOffset = 2 * kKvBytes + 4 * kQBytes + 2 * kDsBytes + 4 * kM * 4;
    static constexpr int kSmem = kBarOffset + 4 * 8 + 1024;
    // dQ = dS K per step is kM x HD; each warpgroup computes a 64 x 64 quarter or half of it:
    // query rows 64 * wg at head_dim 64, head-dim columns 64 * wg at 128.
    static_assert(kM * HD == kWarpGroups * 64 * 64);
    // The producer warpgroup (after the kThreads consumers) gives its registers away.
    static constexpr int kProducerRegs = 24, kConsumerRegs = 240;
    static_assert(128 * kProducerRegs + kThreads * kConsumerRegs <= 65536);
};

// Q and dO as TMA tensor maps: (head_dim, total_q, num_heads), boxes of 64 columns x kM rows.
struct BwdMaps {
    CUtensorMap q, d_o;
};

// This thread's row statistics of query tile rows [row_lo, row_lo + kM) of head h: thread
// r < kM holds row r; rows past the sequence get LSE = -inf (staged as +inf: P = 0).
template <int kM>
__device__ __forceinline__ RowStats row_stats_sm90(const BackwardParams& p, const BwdTile& t, int h,
                                                   int row_lo, const float* d_sum) {
    RowStats st{-INFINITY, 0.f};
    if (static_cast<int>(threadIdx.x) < min(kM, t.lq - row_lo)) {
        const int64_t item = static_cast<int64_t>(t.q0 + row_lo + threadIdx.x) * p.num_heads + h;
        st = {p.lse[item], d_sum[item]};
    }
    return st;
}

// Issues S^T = K_wg Q^T and dP^T = V_wg dO^T for this warpgroup's 64 keys (two commit groups).
template <class T, int HD>
__device__ __forceinline__ void issue_scores_sm90(const unsigned char* sK, const unsigned char* sV,
                                                  const unsigned char* sQ, const unsigned char* sdO,
                                                  float (&s)[Sm90BwdShape<HD>::kM / 8][4],
                                                  float (&dp)[Sm90BwdShape<HD>::kM / 8][4]) {
    using Shape = Sm90BwdShape<HD>;
    constexpr int kM = Shape::kM, kN = Shape::kN;
    const int wg = threadIdx.x / 128;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
        // K-major operands: 64-column atoms, kk's 32-byte column slice within its atom.
        const int atom = kk / 4, col = (kk % 4) * 32;
        const int a_off = atom * kN * 128 + wg * 64 * 128 + col, b_off = atom * kM * 128 + col;
        wgmma_ss<T, kM>(s, sw128_desc(sK + a_off, 16, 1024), sw128_desc(sQ + b_off, 16, 1024),
                        kk > 0);
    }
    wgmma_commit();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
        const int atom = kk / 4, col = (kk % 4) * 32;
        const int a_off = atom * kN * 128 + wg * 64 * 128 + col, b_off = atom * kM * 128 + col;
        wgmma_ss<T, kM>(dp, sw128_desc(sV + a_off, 16, 1024), sw128_desc(sdO + b_off, 16, 1024),
                        kk > 0);
    }
    wgmma_commit();
}

// Issues acc += A B over one query tile: A = P^T or dS^T from registers, B = dO or Q read
// MN-major (N = head dim in 64-column atoms kM * 128 bytes apart, K = 16 query rows a step).
template <class T, int HD>
__device__ __forceinline__ void issue_kv_grad_sm90(
    const unsigned char* sB, const uint32_t (&a)[Sm90BwdShape<HD>::kM / 16][4],
    float (&acc)[HD / 8][4]) {
    constexpr int kM = Sm90BwdShape<HD>::kM;
#pragma unroll
    for (int kk = 0; kk < kM / 16; ++kk)
        wgmma_rs<T, HD>(acc, a[kk], sw128_desc(sB + kk * 16 * 128, kM * 128, 1024));
    wgmma_commit();
}

// Issues this warpgroup's 64 x 64 block of dQ = dS K over the CTA's kN keys: A = dS read from
// the key-major dS^T tile, B = K (both MN-major).
template <class T, int HD>
__device__ __forceinline__ void issue_dq_sm90(const unsigned char* sdS, const unsigned char* sK,
                                              float (&dq)[8][4]) {
    constexpr int kN = Sm90BwdShape<HD>::kN;
    const int wg = threadIdx.x / 128;
    const int m_atom = HD == 64 ? wg : 0, n_atom = HD == 64 ? 0 : wg;
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk)
        wgmma_ss_mn<T, 64>(dq, sw128_desc(sdS + m_atom * kN * 128 + kk * 16 * 128, kN * 128, 1024),
                           sw128_desc(sK + n_atom * kN * 128 + kk * 16 * 128, kN * 128, 1024),
                           kk > 0);
    wgmma_commit();
}

// Stages this warp's dS^T rows (key-major, swizzled like the other tiles) for the dQ product.
template <int kM, int kN>
__device__ __forceinline__ void stage_ds_sm90(unsigned char* sdS,
                                              const uint32_t (&dsa)[kM / 16][4]) {
    const int lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
    const int row = (threadIdx.x / 32) * 16 + g;  // key within the CTA
#pragma unroll
    for (int kk = 0; kk < kM / 16; ++kk)
#pragma unroll
        for (int j = 0; j < 4; ++j)  // A fragment: (rows g, g+8) x (columns 16kk.., 16kk+8..)
            *reinterpret_cast<uint32_t*>(
                sdS + swizzled_offset(kN, row + 8 * (j % 2), 2 * kk + j / 2) + tig * 4) =
                dsa[kk][j];
}

// Adds this warpgroup's dQ block to the fp32 accumulator: a thread's two adjacent columns go
// in one 8-byte atomic.
template <int HD>
__device__ __forceinline__ void add_dq_sm90(const BackwardParams& p, const BwdTile& t, int h,
                                            int row_lo, const float (&dq)[8][4], float* dq_acc) {
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const int g = lane / 4, tig = lane % 4;
    const int row0 = row_lo + (HD == 64 ? wg * 64 : 0) + warp * 16 + g;
    const int col0 = (HD == 64 ? 0 : wg * 64) + tig * 2;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int qi = row0 + 8 * r;
        if (qi >= t.lq) continue;
        float* dst = dq_acc + (static_cast<int64_t>(t.q0 + qi) * p.num_heads + h) * HD + col0;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
            atomicAdd(reinterpret_cast<float2*>(dst + nt * 8),
                      make_float2(dq[nt][2 * r], dq[nt][2 * r + 1]));
    }
}

// P^T = exp(S^T - LSE) in place, 0 where masked. Scores are raw q.k; LSE in log2 units.
template <int kM, int kN>
__device__ __forceinline__ void probs_sm90(const BackwardParams& p, const BwdTile& t, int row_lo,
                                           const float* sLse, float (&s)[kM / 8][4]) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
    const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
    const RowMask& m = t.mask;
    const bool need_mask =
        t.key_lo + kN > t.lk || (p.causal && t.key_lo + kN - 1 > row_lo + m.diag) ||
        (p.window_left >= 0 && t.key_lo < row_lo + kM - 1 + m.diag - p.window_left);
#pragma unroll
    for (int nt = 0; nt < kM / 8; ++nt) {
        const float2 lse = *reinterpret_cast<const float2*>(sLse + nt * 8 + tig * 2);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            float pv = fast_exp2(s[nt][e] * scale_log2 - (e % 2 ? lse.y : lse.x));
            const int col = nt * 8 + tig * 2 + (e % 2);
            const int key = t.key_lo + warp * 16 + g + 8 * (e / 2);
            if (need_mask && m.masked(row_lo + col, key)) pv = 0.f;
            s[nt][e] = pv;
        }
    }
}

// Two 16-bit values of one register as floats (low half first).
template <class T>
__device__ __forceinline__ float2 unpack2(uint32_t u) {
    if constexpr (std::is_same_v<T, __half>) {
        return __half22float2(*reinterpret_cast<const __half2*>(&u));
    } else {
        return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
    }
}

// dS^T = P^T * (dP^T - D) in place, P^T taken from its packed A fragments (the fp32 copy is
// dead by now: registers are the kernel's limit), i.e. rounded as the dV product saw it.
template <class T, int kM>
__device__ __forceinline__ void grads_sm90(const float* sD, const uint32_t (&pa)[kM / 16][4],
                                           float (&dp)[kM / 8][4]) {
    const int tig = threadIdx.x % 4;
#pragma unroll
    for (int nt = 0; nt < kM / 8; ++nt) {
        const float2 d = *reinterpret_cast<const float2*>(sD + nt * 8 + tig * 2);
#pragma unroll
        for (int r = 0; r < 2; ++r) {  // rows g, g + 8: registers 2 * (nt % 2) + r of pa[nt / 2]
            const float2 pv = unpack2<T>(pa[nt / 2][2 * (nt % 2) + r]);
            dp[nt][2 * r] = pv.x * (dp[nt][2 * r] - d.x);
            dp[nt][2 * r + 1] = pv.y * (dp[nt][2 * r + 1] - d.y);
        }
    }
}

// Packs a warpgroup accumulator (rows = keys, columns = query rows) into wgmma A fragments.
template <class T, int kM>
__device__ __forceinline__ void pack_a_sm90(uint32_t (&a)[kM / 16][4],
                                            const float (&x)[kM / 8][4]) {
#pragma unroll
    for (int kk = 0; kk < kM / 16; ++kk) acc_to_a<T>(a[kk], x[2 * kk], x[2 * kk + 1]);
}

// Step i of the query-tile sweep, software-pipelined around one CTA barrier per step: dQ of
// step i-1 (its dS^T staged by every warpgroup before the barrier) runs on the tensor cores
// beside dV_i while dS^T_i is formed, and is added to the accumulator while dK_i runs. Commit
// groups in order: S, dP, dV, dQ_{i-1}, dK; all are awaited before the step ends, so no product
// is in flight across the barrier (the next step's loads overwrite this step's Q and dO) or
// across the loop's back-edge. dS^T is double-buffered: one warpgroup stages dS^T_i while the
// other's dQ_{i-1} may still read every row of dS^T_{i-1}.
template <class T, int HD>
__device__ __forceinline__ void step_sm90(const BackwardParams& p, const BwdTile& t,
                                          const int2 (&hr)[2], const unsigned char* sK,
                                          const unsigned char* sV, const unsigned char* sQ,
                                          const unsigned char* sdO, const float* sLse,
                                          const float* sD, const unsigned char* sdS_prev,
                                          unsigned char* sdS, float (&dk)[HD / 8][4],
                                          float (&dv)[HD / 8][4], float* dq_acc) {
    using Shape = Sm90BwdShape<HD>;
    constexpr int kM = Shape::kM, kN = Shape::kN;
    float s[kM / 8][4], dp[kM / 8][4], dq[8][4];
    wgmma_fence();
    issue_scores_sm90<T, HD>(sK, sV, sQ, sdO, s, dp);
    wgmma_wait<1>();  // S^T
    fence_regs(s);
    probs_sm90<kM, kN>(p, t, hr[1].y, sLse, s);
    uint32_t pa[kM / 16][4], dsa[kM / 16][4];
    pack_a_sm90<T, kM>(pa, s);
    wgmma_fence();
    issue_kv_grad_sm90<T, HD>(sdO, pa, dv);
    // Issued unconditionally (at step 0 it reads a dS^T tile nobody wrote and is discarded):
    // products on run-time paths make ptxas serialise every wgmma of the kernel.
    issue_dq_sm90<T, HD>(sdS_prev, sK, dq);
    wgmma_wait<2>();  // dP^T
    fence_regs(dp);
    grads_sm90<T, kM>(sD, pa, dp);
    pack_a_sm90<T, kM>(dsa, dp);
    wgmma_fence();
    issue_kv_grad_sm90<T, HD>(sQ, dsa, dk);
    wgmma_wait<1>();  // dV and dQ_{i-1}
    fence_regs(dq);
    if (hr[0].x >= 0) add_dq_sm90<HD>(p, t, hr[0].x, hr[0].y, dq, dq_acc);  // step i-1's
    stage_ds_sm90<kM, kN>(sdS, dsa);
    fence_proxy_async();  // dS^T stores -> visible to the next step's dQ product
    wgmma_wait<0>();
    fence_regs(dk);
    fence_regs(dv);
    fence_regs(pa);  // the dK/dV products read pa / dsa until the wait
    fence_regs(dsa);
}

// The barrier of the consumer warpgroups (named barrier 1; the producer never joins).
template <int HD>
__device__ __forceinline__ void consumer_barrier() {
    named_barrier_sync(1, Sm90BwdShape<HD>::kThreads);
}

// The step sequence of a CTA: (query head, first query row) of step i.
struct BwdSteps {
    int kvh, group, per_head, first_tile, kM;
    __device__ int head(int i) const { return kvh * group + i / per_head; }
    __device__ int row_lo(int i) const { return (first_tile + i % per_head) * kM; }
};

// Producer thread: for every step j, once the consumers released buffer j % 2,
// issues the TMA copies of Q_j and dO_j onto the buffer's full barrier. Rows past the sequence
// (the next sequence's, or zeros past the tensor) are harmless: their LSE is staged as +inf.
template <class T, int HD>
__device__ __forceinline__ void produce_bwd(const BwdTile& t, const BwdSteps& st, int steps,
                                            const BwdMaps& maps, unsigned char* sQ0,
                                            unsigned char* sdO0, uint64_t* bar) {
    using Shape = Sm90BwdShape<HD>;
    constexpr int kM = Shape::kM;
    for (int j = 0; j < steps; ++j) {
        const int buf = j % 2, h = st.head(j), row_lo = st.row_lo(j);
        if (j >= 2) mbar_wait(bar + 2 + buf, ((j - 2) / 2) & 1);  // Q empty
        mbar_arrive_expect_tx(bar + buf, 2 * Shape::kQBytes);     // Q full
#pragma unroll
        for (int a = 0; a < HD / 64; ++a) {
            tma_load_3d(sQ0 + buf * Shape::kQBytes + a * kM * 128, &maps.q, a * 64, t.q0 + row_lo,
                        h, bar + buf);
            tma_load_3d(sdO0 + buf * Shape::kQBytes + a * kM * 128, &maps.d_o, a * 64,
                        t.q0 + row_lo, h, bar + buf);
        }
    }
}

// dQ of the sweep's last step, after a barrier that makes its dS^T complete.
template <class T, int HD>
__device__ __forceinline__ void last_dq_sm90(const BackwardParams& p, const BwdTile& t, int2 hr,
                                             const unsigned char* sK, const unsigned char* sdS,
                                             float* dq_acc) {
    consumer_barrier<HD>();
    float dq[8][4];
    wgmma_fence();
    issue_dq_sm90<T, HD>(sdS, sK, dq);
    wgmma_wait<0>();
    fence_regs(dq);
    add_dq_sm90<HD>(p, t, hr.x, hr.y, dq, dq_acc);
}

template <class T, int HD>
__global__ void __launch_bounds__(Sm90BwdShape<HD>::kThreads + 128, 1)
    bwd_dkdv_sm90_kernel(const BackwardParams p, const __grid_constant__ BwdMaps maps,
                         float* dq_acc, const float* d_sum) {
#ifdef VELA_SM90A_DEVICE
    using Shape = Sm90BwdShape<HD>;
    constexpr int kM = Shape::kM, kN = Shape::kN;
    extern __shared__ unsigned char smem_raw[];
    unsigned char* sK = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
    unsigned char* sV = sK + Shape::kKvBytes;
    unsigned char* sQ0 = sV + Shape::kKvBytes;  // then: Q[2], dO[2], dS^T[2], LSE[2], D[2]
    unsigned char* sdO0 = sQ0 + 2 * Shape::kQBytes;
    unsigned char* sdS0 = sdO0 + 2 * Shape::kQBytes;
    float* sLse0 = reinterpret_cast<float*>(sdS0 + 2 * Shape::kDsBytes);
    float* sD0 = sLse0 + 2 * kM;
    uint64_t* bar = reinterpret_cast<uint64_t*>(sK + Shape::kBarOffset);

    const int b = blockIdx.z, kvh = blockIdx.y;
    BwdTile t;
    t.q0 = p.cu_seqlens_q[b];
    t.lq = p.cu_seqlens_q[b + 1] - t.q0;
    t.k0 = p.cu_seqlens_k[b];
    t.lk = p.cu_seqlens_k[b + 1] - t.k0;
    t.key_lo = blockIdx.x * kN;
    if (t.key_lo >= t.lk) return;
    t.mask = {t.lk, t.lk - t.lq, p.window_left, p.causal, nullptr};
    // Steps run over (query head of the group, query tile) pairs; step i uses buffer i % 2.
    const int2 range = query_tile_range<kM, kN>(t, p);
    const int group = p.num_heads / p.num_kv_heads;
    const BwdSteps st{kvh, group, range.y - range.x, range.x, kM};
    const int steps = group * st.per_head;

    if (threadIdx.x == 0) {
        for (int i = 0; i < 2; ++i) {
            mbar_init(bar + i, 1);                         // Q full: expect_tx
            mbar_init(bar + 2 + i, Shape::kThreads / 32);  // Q empty: one per consumer warp
        }
        mbar_fence_init();
    }
    __syncthreads();
    if (threadIdx.x >= Shape::kThreads) {
        setmaxnreg_dec<Shape::kProducerRegs>();
        if (threadIdx.x == Shape::kThreads) produce_bwd<T, HD>(t, st, steps, maps, sQ0, sdO0, bar);
        return;
    }
    setmaxnreg_inc<Shape::kConsumerRegs>();

    const int64_t kv_base = (t.k0 + t.key_lo) * p.kv_row_stride + kvh * p.kv_head_stride;
    const T* k = static_cast<const T*>(p.k) + kv_base;
    const T* v = static_cast<const T*>(p.v) + kv_base;
    const int keys = min(kN, t.lk - t.key_lo);
    load_swizzled<HD, kN, Shape::kThreads>(sK, keys,
                                           [&](int r) { return k + r * p.kv_row_stride; });
    load_swizzled<HD, kN, Shape::kThreads>(sV, keys,
                                           [&](int r) { return v + r * p.kv_row_stride; });
    cp_async_commit();

    float dk[HD / 8][4] = {}, dv[HD / 8][4] = {};
    auto stats = [&](int i) { return row_stats_sm90<kM>(p, t, st.head(i), st.row_lo(i), d_sum); };
    if (steps > 0) bwd_stage_row_stats<kM>(stats(0), sLse0, sD0);
    int2 hr[2] = {make_int2(-1, 0), make_int2(-1, 0)};  // (head, first row) of steps i-1, i
    for (int i = 0; i < steps; ++i) {
        const int buf = i % 2;
        mbar_wait(bar + buf, (i / 2) & 1);  // Q_i and dO_i landed
        cp_async_wait<0>();                 // K and V
        fence_proxy_async();
        // Step i's tiles and row statistics landed and are visible, step i-1's dS^T is staged
        // by every warp, and every warp finished step i-1's reads of the other buffers.
        consumer_barrier<HD>();
        RowStats next{-INFINITY, 0.f};
        if (i + 1 < steps) next = stats(i + 1);
        hr[1] = make_int2(st.head(i), st.row_lo(i));
        step_sm90<T, HD>(p, t, hr, sK, sV, sQ0 + buf * Shape::kQBytes, sdO0 + buf * Shape::kQBytes,
                         sLse0 + buf * kM, sD0 + buf * kM, sdS0 + (1 - buf) * Shape::kDsBytes,
                         sdS0 + buf * Shape::kDsBytes, dk, dv, dq_acc);
        hr[0] = hr[1];
        // step_sm90 awaited every product that read Q_i and dO_i.
        __syncwarp();
        if (threadIdx.x % 32 == 0) mbar_arrive(bar + 2 + buf);  // Q empty
        // The other statistics buffer was last read in step i-1, before this step's barrier.
        if (i + 1 < steps)
            bwd_stage_row_stats<kM>(next, sLse0 + (1 - buf) * kM, sD0 + (1 - buf) * kM);
    }
    if (steps > 0)
        last_dq_sm90<T, HD>(p, t, hr[0], sK, sdS0 + ((steps - 1) % 2) * Shape::kDsBytes, dq_acc);
    cp_async_wait<0>();  // a tile that no query sees never waited for its K/V copies
    const int64_t out_base = t.k0 * p.kv_row_stride + kvh * p.kv_head_stride;
    bwd_store_rows<T, HD>(static_cast<T*>(p.dk) + out_base, p.kv_row_stride, t.key_lo, t.lk, dk,
                          p.softmax_scale);
    bwd_store_rows<T, HD>(static_cast<T*>(p.dv) + out_base, p.kv_row_stride, t.key_lo, t.lk, dv,
                          1.f);
#endif
}

// Declines (cudaErrorNotSupported) when Q or dO cannot be mapped for TMA: the caller then
// runs the mma.sync kernel. Never the case for the aligned, 16-byte-strided tensors that the
// cp.async loads of either kernel need anyway; kept as a safety net for an old driver.
template <class T, int HD>
cudaError_t launch(const BackwardParams& p, float* dq_acc, const float* d_sum,
                   cudaStream_t stream) {
    using Shape = Sm90BwdShape<HD>;
    BwdMaps maps{};
    if (!encode_map(&maps.q, tma_dtype<T>(), p.q, HD, p.total_q, p.num_heads, p.q_row_stride,
                    p.q_head_stride, Shape::kM) ||
        !encode_map(&maps.d_o, tma_dtype<T>(), p.d_o, HD, p.total_q, p.num_heads, p.q_row_stride,
                    p.q_head_stride, Shape::kM))
        return cudaErrorNotSupported;
    constexpr auto kernel = &bwd_dkdv_sm90_kernel<T, HD>;
    if (const cudaError_t e = allow_dynamic_smem<kernel>(Shape::kSmem); e != cudaSuccess) return e;
    const dim3 grid((p.max_seqlen_k + Shape::kN - 1) / Shape::kN, p.num_kv_heads, p.batch);
    kernel<<<grid, Shape::kThreads + 128, Shape::kSmem, stream>>>(p, maps, dq_acc, d_sum);
    return cudaGetLastError();
}

}  // namespace

cudaError_t launch_backward_dkdv_sm90(const BackwardParams& p, float* dq_acc, const float* d_sum,
                                      cudaStream_t stream) {
    return dispatch_dtype<BackwardHeadDims>(p.dtype, p.head_dim, [&](auto t, auto hd) {
        return launch<typename decltype(t)::type, decltype(hd)::value>(p, dq_acc, d_sum, stream);
    });
}

}  // namespace vela::cuda::detail
