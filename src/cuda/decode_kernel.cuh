#pragma once
// Split-K paged decode (Flash-Decoding) on tensor cores. A CTA owns (context slice, kv head,
// sequence) and all query heads of that kv head (GQA packing), so each K/V byte is read from
// memory once per step. Decode is bandwidth-bound, so the kernel is built around bytes in
// flight: each of the 4 warps streams its own 16-key tiles of K and V through a private
// multi-stage cp.async ring (no CTA barrier in the main loop; 2-3 CTAs per SM, ~100-128 KB in
// flight per SM) and runs a one-pass online softmax on mma.sync; the warps' partial softmax states
// are merged once at the end. Fragment layouts: decode_frag.cuh.
#include <climits>
#include <cmath>

#include "cuda/attention_params.h"
#include "cuda/decode_combine.cuh"
#include "cuda/decode_q4.cuh"
#include "cuda/fast_divmod.h"

namespace vela::cuda::detail {

// 4-byte async copy (scales); src_bytes == 0 zero-fills, as cp_async_16.
__device__ __forceinline__ void cp_async_4(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 4 : 0));
}

// Where one CTA's keys live: sequence b's block table, kv head kvh, keys [start, end).
struct DecodeSlice {
    const char* k;
    const char* v;
    const float* k_scale;
    const float* v_scale;
    const int32_t* table;
    int64_t block_stride, token_stride, head_off, scale_block_stride;
    FastDivmod block_size;
    int table_len, num_kv_heads, kvh, start, end;
    // Every K/V byte is read once a call, so it is copied evict-first (l2_evict_first_policy):
    // 1.00-1.05x on H200 against the default policy, most where the call is short.
    uint64_t l2_policy;
    int groups = 1;  // Q4: V (scale, min) pairs a row

    // Block id of this lane's key (tile0 + lane % 16); loaded a tile ahead of its use so the
    // block-table latency hides behind the previous tile's math. Speculative: the index is only
    // clamped to the sequence's table row, not to its length, so the first loads need not wait
    // for seqlens_k; ids of keys past the end are never used.
    __device__ int block_of(int tile0, int lane) const {
        const int key = tile0 + (lane & 15);
        return table[min(block_size.div(key), table_len - 1)];
    }

    // Asks L2 for this lane's row of the tile at tile0 (`blk` = block_of(tile0, lane)): lanes
    // 0-15 the K rows, 16-31 the V rows of the same keys (not the scales: prefetching those too
    // ran 0.96x at 8-bit batch 1 / 1k on H100). A hint, never a fault or a stale value (L2 is
    // where the previous kernel's writes land), so it may run before the wait for that kernel,
    // hiding the first tiles' memory latency behind it.
    template <KvFormat F, int HD>
    __device__ void prefetch_rows(int tile0, int blk, int lane) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        using S = DecodeShape<F, HD>;
        const int key = tile0 + (lane & 15);
        if (key >= end) return;
        const int64_t row = blk * block_stride + block_size.mod(key) * token_stride + head_off;
        const char* src = (lane < 16 ? k : v) + row * S::kElemBytes;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(S::kUnits * 16)
                     : "memory");
#endif
    }
};

// Issues the cp.async copies of one 16-key tile (K, V and, quantised, their scales) into `stage`.
// `blk` is block_of(tile0, lane). Rows past `end` are zero-filled so they stay finite.
template <KvFormat F, int HD>
__device__ __forceinline__ void issue_tile(char* stage, const DecodeSlice& c, int tile0, int blk,
                                           int lane) {
    using S = DecodeShape<F, HD>;
    const int key = tile0 + (lane & 15);
    const bool valid = key < c.end;
    const int64_t off =
        valid ? blk * c.block_stride + c.block_size.mod(key) * c.token_stride + c.head_off : 0;
    // Consecutive lanes copy consecutive units, so one instruction covers whole 128-byte lines.
    // (Two lanes per row, each computing its own address with no shuffles, runs 0.83-0.96x on
    // H100: each instruction then touches 16 lines.)
    constexpr int kRowsPerPass = 32 / S::kUnits;
#pragma unroll
    for (int t = 0; t < kDecodeTile / kRowsPerPass; ++t) {
        const int row = t * kRowsPerPass + lane / S::kUnits, unit = lane % S::kUnits;
        const int64_t roff = __shfl_sync(0xffffffffu, off, row);
        const bool ok = __shfl_sync(0xffffffffu, static_cast<int>(valid), row) != 0;
        const int64_t byte = roff * S::kElemBytes + unit * 16;
        const int dst = tile_offset<F, HD>(row, unit);
        cp_async_16(stage + dst, ok ? c.k + byte : c.k, ok, c.l2_policy);
        cp_async_16(stage + S::kTileBytes + dst, ok ? c.v + byte : c.v, ok, c.l2_policy);
    }
    if constexpr (S::kQ4) {
        // K: the (scale, min) pairs of every channel of the tile's block (one block: block sizes
        // are multiples of 16), 16 bytes a lane. V: lanes 0-15 the pairs of their key's row.
        char* pairs = stage + 2 * S::kTileBytes;
        const int blk0 = __shfl_sync(0xffffffffu, blk, 0);
        const bool ok0 = __shfl_sync(0xffffffffu, static_cast<int>(valid), 0) != 0;
        const char* k_pairs = reinterpret_cast<const char*>(c.k_scale) +
                              int64_t{blk0} * c.scale_block_stride * 4 + c.kvh * 4 * HD;
        if (lane * 16 < 4 * HD)
            cp_async_16(pairs + lane * 16, ok0 ? k_pairs + lane * 16 : k_pairs, ok0, c.l2_policy);
        if (lane < kDecodeTile) {
            const char* v_pairs =
                reinterpret_cast<const char*>(c.v_scale) +
                (valid ? int64_t{blk} * c.scale_block_stride * 4 +
                             (int64_t{c.kvh} * c.block_size.d + c.block_size.mod(key)) *
                                 c.groups * 4
                       : 0);
            for (int g = 0; g < c.groups; ++g)
                cp_async_4(pairs + 4 * HD + (lane * (HD / 32) + g) * 4, v_pairs + 4 * g, valid);
        }
    }
    if constexpr (S::kQuant) {  // lanes 0-15: K scales, 16-31: V scales of the same keys
        float* scales = reinterpret_cast<float*>(stage + 2 * S::kTileBytes);
        const int64_t i = valid ? blk * c.scale_block_stride +
                                      (c.block_size.mod(key) * c.token_stride + c.head_off) / HD
                                : 0;
        cp_async_4(scales + lane, (lane < 16 ? c.k_scale : c.v_scale) + i, valid);
    }
}

// Scores, online-softmax update and P V for N staged tiles (first keys tile0[n]) at once: N
// independent score products, then one softmax update over all their keys (see stream_slice).
// This lane's columns r + 8 qt (r = lane / 4) see keys below end[qt].
template <KvFormat F, int HD, int N, int kQT>
__device__ __forceinline__ void consume_tiles(const char* const (&stage)[N],
                                              const uint32_t (&qa)[kQT][HD / 16][2],
                                              const int (&tile0)[N], const int (&end)[kQT],
                                              float scale_log2, const float (&q_bias)[kQT],
                                              const Q4Keys& q4, DecodeState<HD, kQT>& st,
                                              int lane) {
    using S = DecodeShape<F, HD>;
    using T = typename S::T;
    float s[N][2][4] = {};
    if constexpr (S::kQ4) {  // widened into the warp's fp16 tiles first
        static_assert(N == 1);
        q4_widen_tile<HD>(stage[0], q4, tile0[0], lane);
        __syncwarp();
        tile_scores<KvFormat::kF16, HD, kQT>(q4.scratch, qa, s[0], lane);
    } else {
#pragma unroll
        for (int n = 0; n < N; ++n) tile_scores<F, HD, kQT>(stage[n], qa, s[n], lane);
    }
    const int c = lane & 3;
    float x[kQT][N][4];  // keys 2c, 2c+1, 2c+8, 2c+9 of column 8 qt + r in tile n
    float m_new[kQT], m_sub[kQT], alpha[kQT];  // m_sub: what the exponents subtract
    bool grew = false;
#pragma unroll
    for (int qt = 0; qt < kQT; ++qt) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < N; ++n) {
            const float* scales = reinterpret_cast<const float*>(stage[n] + 2 * S::kTileBytes);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int key = 8 * (k >> 1) + 2 * c + (k & 1);
                float v = (s[n][k >> 1][2 * qt + (k & 1)] - q_bias[qt]) * scale_log2;
                if constexpr (S::kQuant) v *= scales[key];
                x[qt][n][k] = tile0[n] + key < end[qt] ? v : -INFINITY;
                mx = fmaxf(mx, x[qt][n][k]);
            }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // One row per CTA: the first tile's first key is always valid, so m_new is finite.
        // Several rows: a row may see none of a slice's keys yet (m_new = -inf); it then
        // subtracts 0, so every exponent is exp2(-inf) = 0, never NaN.
        m_new[qt] = fmaxf(st.m[qt], mx);
        grew |= m_new[qt] > st.m[qt];
        m_sub[qt] = kQT > 1 && m_new[qt] == -INFINITY ? 0.f : m_new[qt];
        alpha[qt] = fast_exp2(st.m[qt] - m_sub[qt]);
    }
    // Past the first tiles the running max rarely grows: skip the rescale when no column's did.
    if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
        for (int qt = 0; qt < kQT; ++qt) {
            st.l[qt] *= alpha[qt];
            // o's columns are 8 qt + 2c and + 1; lane 4 h holds column 8 qt + h's alpha.
            const float a0 = __shfl_sync(0xffffffffu, alpha[qt], 8 * c),
                        a1 = __shfl_sync(0xffffffffu, alpha[qt], 8 * c + 4);
#pragma unroll
            for (int mt = 0; mt < HD / 16; ++mt) {
                st.o[qt][mt][0] *= a0;
                st.o[qt][mt][1] *= a1;
                st.o[qt][mt][2] *= a0;
                st.o[qt][mt][3] *= a1;
            }
            if constexpr (F == KvFormat::kInt8) {
                st.p_sum[qt][0] *= a0;
                st.p_sum[qt][1] *= a1;
                st.p_sum[qt][2] *= a0;
                st.p_sum[qt][3] *= a1;
            }
        }
    }
#pragma unroll
    for (int qt = 0; qt < kQT; ++qt) st.m[qt] = m_new[qt];
#pragma unroll
    for (int n = 0; n < N; ++n) {
        const float* scales = reinterpret_cast<const float*>(stage[n] + 2 * S::kTileBytes);
        uint32_t pb[kQT][2];
#pragma unroll
        for (int qt = 0; qt < kQT; ++qt) {
            float p[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                p[k] = fast_exp2(x[qt][n][k] - m_sub[qt]);
                st.l[qt] += p[k];
                // The per-key V scale folds into P, not into every V element.
                if constexpr (S::kQuant)
                    p[k] *= scales[kDecodeTile + 8 * (k >> 1) + 2 * c + (k & 1)];
            }
            pb[qt][0] = pack2<T>(p[0], p[1]);
            pb[qt][1] = pack2<T>(p[2], p[3]);
        }
        if constexpr (S::kQ4) {
            tile_values<KvFormat::kF16, HD, kQT>(q4.scratch + kDecodeTile * HD * 2, pb, st.o,
                                                 lane);
        } else {
            tile_values<F, HD, kQT>(stage[n] + S::kTileBytes, pb, st.o, lane);
        }
        if constexpr (F == KvFormat::kInt8) {        // p_sum += 1 P^T: the same sums in every row
            constexpr uint32_t kOnes = 0x3c003c00u;  // fp16 1.0, 1.0
            const uint32_t ones[4] = {kOnes, kOnes, kOnes, kOnes};
#pragma unroll
            for (int qt = 0; qt < kQT; ++qt) mma_16816<T>(st.p_sum[qt], ones, pb[qt][0], pb[qt][1]);
        }
    }
}

// Q of column r + 8 qt (zero for padding) as 32-bit words of two query values, in the dim order
// tile_scores expects. Only issued here: the words are converted by pack_q once the block-table
// reads and the first K/V copies are on their way, so the three latencies overlap.
template <KvFormat F, int HD, int kQT>
__device__ __forceinline__ void load_q(const DecodeParams& p, const QueryCols& qc, int lane,
                                       uint32_t (&qw)[kQT][HD / 16][2]) {
    const int r = lane >> 2, c = lane & 3;
    const auto* q = static_cast<const uint32_t*>(p.q);  // 16-bit values, pairs at even dims
#pragma unroll
    for (int qt = 0; qt < kQT; ++qt) {
        const int col = r + 8 * qt;
        const bool valid = qc.valid(col);
        const int64_t row = valid ? qc.head_row(col, p.num_heads) * HD : 0;
#pragma unroll
        for (int s = 0; s < HD / 16; ++s)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                qw[qt][s][h] = valid ? q[(row + q_dim<F>(s, h, c)) / 2] : 0u;
    }
}

// Converts load_q's words (query dtype) in place to mma A fragments of type T. Sets the score
// offset the INT8 key bias adds for column r + 8 qt: kInt8Bias * sum of Q as used.
template <KvFormat F, int HD, int kQT>
__device__ __forceinline__ void pack_q(Dtype dtype, uint32_t (&qa)[kQT][HD / 16][2],
                                       float (&bias)[kQT]) {
    using T = typename DecodeShape<F, HD>::T;
#pragma unroll
    for (int qt = 0; qt < kQT; ++qt) {
        float sum = 0.f;
#pragma unroll
        for (int s = 0; s < HD / 16; ++s) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const uint32_t w = qa[qt][s][h];
                const float2 v =
                    dtype == Dtype::kF16
                        ? __half22float2(*reinterpret_cast<const __half2*>(&w))
                        : __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w));
                qa[qt][s][h] = pack2<T>(v.x, v.y);
                if constexpr (F == KvFormat::kInt8) {
                    const float2 used =
                        __half22float2(*reinterpret_cast<const __half2*>(&qa[qt][s][h]));
                    sum += used.x + used.y;
                }
            }
        }
        if constexpr (F == KvFormat::kInt8) {
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        }
        bias[qt] = F == KvFormat::kInt8 ? kInt8Bias * sum : 0.f;
    }
}

// Warp `warp`'s share of a slice: tiles warp, warp + 4, ... and their slots in the warp's ring
// (see stream_slice). The kernel also issues the ring's prologue before the launch wait where
// DecodeParams::kv_ready allows.
template <KvFormat F, int HD, int kCtasPerSm>
struct WarpShare {
    using S = DecodeShape<F, HD, kCtasPerSm>;
    static constexpr int kPerStep = S::kQuant && S::kStages >= 5 ? 2 : 1;
    static constexpr int kAhead = S::kStages - kPerStep;  // tiles in flight while a step computes
    int start, warp, steps;  // steps: the warp's tile count rounded up to whole steps

    __device__ WarpShare(const DecodeSlice& c, int w) : start(c.start), warp(w) {
        const int n_tiles = (max(c.end - c.start, 0) + kDecodeTile - 1) / kDecodeTile;
        const int mine = n_tiles > w ? (n_tiles - w + kDecodeWarps - 1) / kDecodeWarps : 0;
        steps = (mine + kPerStep - 1) / kPerStep * kPerStep;
    }
    __device__ int tile0(int i) const { return start + (warp + i * kDecodeWarps) * kDecodeTile; }
    __device__ char* stage(char* ring, int i) const {
        return ring + (i % S::kStages) * S::kStageBytes;
    }
    // The ring's prologue: the first kAhead tiles, one copy group each.
    __device__ void issue_prologue(char* ring, const DecodeSlice& c, const int (&blk)[S::kStages],
                                   int lane) const {
#pragma unroll
        for (int i = 0; i < kAhead; ++i) {
            if (i < steps) issue_tile<F, HD>(stage(ring, i), c, tile0(i), blk[i], lane);
            cp_async_commit();
        }
    }
    // Whether the prologue reads only keys below `stable_end`.
    __device__ bool prologue_below(const DecodeSlice& c, int stable_end) const {
        const int last = min(kAhead, steps) - 1;
        return last < 0 || min(tile0(last) + kDecodeTile, c.end) <= stable_end;
    }
};

// Runs warp `warp`'s share of the slice: tiles warp, warp + 4, ... through a kStages ring,
// kPerStep tiles consumed a step while kStages - kPerStep more are in flight. 8-bit KV takes two
// a step where that leaves >= 3 in flight: the two score products are independent, which gives
// a warp bound by its own instruction latency (Nsight Compute on H100) twice the work to
// overlap, and one softmax update covers both. A tile count rounded up to a whole step issues the
// odd tile past the slice too: zero-filled, its keys masked. prologue_issued: the first kAhead
// tiles are already in flight (kv_ready).
template <KvFormat F, int HD, int kCtasPerSm, int kQT>
__device__ __forceinline__ void stream_slice(
    char* ring, const DecodeSlice& c, const int (&blk)[DecodeShape<F, HD, kCtasPerSm>::kStages],
    bool prologue_issued, uint32_t (&qa)[kQT][HD / 16][2], const int (&end)[kQT], Dtype q_dtype,
    float scale_log2, const Q4Keys& q4, DecodeState<HD, kQT>& st, int warp, int lane) {
    using S = DecodeShape<F, HD, kCtasPerSm>;
    using W = WarpShare<F, HD, kCtasPerSm>;
    const W w(c, warp);
    constexpr int kPerStep = W::kPerStep, kAhead = W::kAhead;
    const int steps = w.steps;
    auto tile0 = [&](int i) { return w.tile0(i); };
    auto stage = [&](int i) { return w.stage(ring, i); };

    if (!prologue_issued) w.issue_prologue(ring, c, blk, lane);
    float q_bias[kQT];
    pack_q<F, HD, kQT>(q_dtype, qa, q_bias);  // qa: load_q's words until here
    int next_blk[kPerStep];  // block ids one step ahead of their tiles' issue
#pragma unroll
    for (int u = 0; u < kPerStep; ++u) next_blk[u] = blk[kAhead + u];
    for (int i = 0; i < steps; i += kPerStep) {
        cp_async_wait<kAhead - kPerStep>();
        __syncwarp();  // this step's tiles visible to the whole warp; the last step's stages free
#pragma unroll
        for (int u = 0; u < kPerStep; ++u) {
            const int ahead = i + kAhead + u;
            if (ahead < steps) {
                issue_tile<F, HD>(stage(ahead), c, tile0(ahead), next_blk[u], lane);
                next_blk[u] =
                    ahead + kPerStep < steps ? c.block_of(tile0(ahead + kPerStep), lane) : 0;
            }
            cp_async_commit();
        }
        const char* here[kPerStep];
        int first[kPerStep];
#pragma unroll
        for (int u = 0; u < kPerStep; ++u) {
            here[u] = stage(i + u);
            first[u] = tile0(i + u);
        }
        consume_tiles<F, HD, kPerStep, kQT>(here, qa, first, end, scale_log2, q_bias, q4, st,
                                            lane);
    }
    cp_async_wait<0>();
    if constexpr (F == KvFormat::kInt8) st.unbias();
}

// Waits for the kernel before this one in the stream (a no-op unless launched as a programmatic
// dependent, sm_90+).
__device__ __forceinline__ void wait_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The query rows of CTA (chunk, kvh) of sequence b: its one row, or with cu_seqlens_q the
// chunk-th group of 16 / group of its rows (kQT = 2: 16 columns).
template <int kQT>
__device__ __forceinline__ QueryCols query_cols(const DecodeParams& p, int b, int kvh, int chunk,
                                                int group) {
    const int len = p.seqlens_k[b];
    if (p.cu_seqlens_q == nullptr) return {b, 1, group, kvh, len};
    const int per_cta = kQT * kDecodeRows / group;
    const int q0 = p.cu_seqlens_q[b], n = p.cu_seqlens_q[b + 1] - q0;
    const int rows = max(min(n - chunk * per_cta, per_cta), 0);
    // The sequence's row i of n sees len - (n - 1 - i) keys.
    return {q0 + chunk * per_cta, rows, group, kvh,
            rows > 0 ? len - (n - chunk * per_cta - rows) : 0};
}

// Launched as a programmatic dependent (sm_90+), the CTAs are resident before the previous
// kernel in the stream ends, hiding the launch gap; every read of an input that kernel may write
// waits for it. Q, the caches and the workspace always do; the block table and the lengths do
// unless p.metadata_ready says nothing before the call writes them. Then the first tiles' block
// ids are read before the wait, and those tiles are prefetched into L2 while it lasts.
// Grid: (split, chunk * num_kv_heads + kvh, sequence); kQT 8-column tiles of query columns.
template <KvFormat F, int HD, int kCtasPerSm, int kQT>
__global__ void __launch_bounds__(kDecodeThreads, kCtasPerSm)
    decode_split_kernel(const DecodeParams p, int split_len, DecodeOut out) {
    if (!p.metadata_ready) wait_previous_kernel();
    extern __shared__ __align__(16) char smem[];
    const int split = blockIdx.x, kvh = blockIdx.y % p.num_kv_heads,
              chunk = blockIdx.y / p.num_kv_heads, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int group = p.num_heads / p.num_kv_heads;
    const QueryCols qc = query_cols<kQT>(p, b, kvh, chunk, group);
    DecodeSlice c{static_cast<const char*>(p.paged.k_cache),
                  static_cast<const char*>(p.paged.v_cache),
                  p.paged.k_scale,
                  p.paged.v_scale,
                  p.paged.block_table + static_cast<int64_t>(b) * p.paged.block_table_stride,
                  p.paged.block_stride,
                  p.paged.token_stride,
                  kvh * p.paged.head_stride,
                  p.paged.scale_block_stride,
                  FastDivmod(p.paged.block_size),
                  p.paged.block_table_stride,
                  p.num_kv_heads,
                  kvh,
                  split * split_len,
                  min(qc.last_len, (split + 1) * split_len),
                  l2_evict_first_policy()};
    using S = DecodeShape<F, HD, kCtasPerSm>;
    if constexpr (S::kQ4) c.groups = (HD + p.paged.kv_group - 1) / p.paged.kv_group;
    int blk[S::kStages];  // block ids of warp's prologue tiles (stream_slice), loads in flight
#pragma unroll
    for (int i = 0; i < S::kStages; ++i)
        blk[i] = c.block_of(c.start + (warp + i * kDecodeWarps) * kDecodeTile, lane);
    char* ring = smem + warp * S::kStages * S::kStageBytes;
    const WarpShare<F, HD, kCtasPerSm> share(c, warp);
    bool early = false;  // the ring's prologue copied before the wait
    if (p.metadata_ready) {
        // With p.kv_ready the kernel before writes no key older than the sequence's rows of
        // this step, nor their scales: a prologue of such keys only may be copied now.
        const int appended =
            p.cu_seqlens_q == nullptr ? 1 : p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
        early = p.kv_ready && share.prologue_below(c, p.seqlens_k[b] - appended);
        // Only the tiles the prologue will copy: more competes with the previous kernel's reads
        // (2x and 4x as many ran 0.74-1.0x on H100, 16 MB a call no faster on H200), and
        // prefetching inside the ring, 4-8 tiles ahead of the copies, ran 0.64-0.87x (H200).
#pragma unroll
        for (int i = early ? share.kAhead : 0; i < S::kStages; ++i)
            c.prefetch_rows<F, HD>(share.tile0(i), blk[i], lane);
        if (early) share.issue_prologue(ring, c, blk, lane);
        wait_previous_kernel();
    }
    // The next call's CTAs may launch from here on. Triggering at entry instead ran 0.75-1.02x
    // on H200: three calls' CTAs then share the SMs and a grid piles up unevenly.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
    Q4Keys q4{nullptr, c.groups, INT_MAX, nullptr};
    if constexpr (S::kQ4) {
        // The row's own block is read from its fp16 residual unless the row is its last.
        q4.scratch = smem + kDecodeWarps * S::kStages * S::kStageBytes + warp * S::kScratchBytes;
        const int len = qc.last_len, bs = p.paged.block_size;
        if (len > 0 && len % bs != 0) {
            const int own = (len - 1) / bs;
            const int32_t slot = p.paged.residual_of[c.table[own]];
            if (slot >= 0) {
                q4.residual_from = own * bs;
                q4.residual = static_cast<const __half*>(p.paged.k_residual) +
                              (int64_t{slot} * p.num_kv_heads + kvh) * bs * HD;
            }
        }
    }
    uint32_t qa[kQT][HD / 16][2];
    load_q<F, HD, kQT>(p, qc, lane, qa);
    int end[kQT];  // keys this lane's columns see, within the slice
#pragma unroll
    for (int qt = 0; qt < kQT; ++qt) end[qt] = min(c.end, qc.len((lane >> 2) + 8 * qt));
    DecodeState<HD, kQT> st;
    stream_slice<F, HD, kCtasPerSm, kQT>(ring, c, blk, early, qa, end, p.dtype,
                                         p.softmax_scale * 1.4426950408889634f, q4, st, warp,
                                         lane);
    // The CTA's finish counter and its first partial-output slot (decode_slots).
    const int64_t cta = (static_cast<int64_t>(b) * (gridDim.y / p.num_kv_heads) + chunk) *
                            p.num_kv_heads + kvh;
    const int cols = p.cu_seqlens_q == nullptr ? group : kQT * kDecodeRows / group * group;
    finish_split<F, HD, kCtasPerSm, kQT>(p, out, smem, st, qc, cta * cols, out.counters + cta);
}

}  // namespace vela::cuda::detail
