#pragma once
// End of a decode split CTA. The 4 warps' softmax states merge through shared memory. A sequence
// planned as one split writes o (and lse) directly; otherwise every split writes a partial result
// and the last CTA of a (sequence, kv head) to finish, found with an atomic counter per pair in
// the workspace, merges all splits. Fusing the combine into the split kernel saves a second
// launch and the wait between the two, which is most of a small-batch call's fixed cost.
#include <cmath>

#include "cuda/decode_frag.cuh"
#include "cuda/launch.h"

namespace vela::cuda::detail {

// The query columns of a CTA: `rows` consecutive query rows (q / o rows first, first + 1, ...)
// of one sequence, `group` columns each (column j: row j / group, head kvh * group + j % group).
// Columns past rows * group are padding (zero queries, never written). The CTA's last row sees
// keys [0, last_len), row i of it keys [0, last_len - (rows - 1 - i)).
struct QueryCols {
    int64_t first;
    int rows, group, kvh, last_len;

    __device__ bool valid(int col) const { return col < rows * group; }
    // Keys column col sees (a padding column: as many as the last row, for finite scores).
    __device__ int len(int col) const {
        return valid(col) ? last_len - (rows - 1 - col / group) : last_len;
    }
    // Index of column col's q / o / lse row of num_heads heads.
    __device__ int64_t head_row(int col, int num_heads) const {
        return (first + col / group) * num_heads + kvh * group + col % group;
    }
};

// The decode workspace as the kernel sees it (layout: launch.h, decode_counter_bytes).
struct DecodeOut {
    unsigned* counters;  // [batch][num_kv_heads]: finished splits; zero between calls
    float* o_part;       // [batch][num_heads][num_splits][HD], normalised within the split
    float* lse_part;     // [batch][num_heads][num_splits], log2 units; -inf: empty split
};

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Writes o[row][d .. d + 3] in the query dtype (one 8-byte store) and, for d == 0, lse[row] in
// natural log.
__device__ __forceinline__ void store_out4(const DecodeParams& p, int64_t row, int d, float4 o,
                                           float lse2) {
    const int64_t i = row * p.head_dim + d;
    uint2 packed;
    if (p.dtype == Dtype::kF16)
        packed = make_uint2(pack2<__half>(o.x, o.y), pack2<__half>(o.z, o.w));
    else
        packed = make_uint2(pack2<__nv_bfloat16>(o.x, o.y), pack2<__nv_bfloat16>(o.z, o.w));
    *reinterpret_cast<uint2*>(static_cast<char*>(p.o) + i * 2) = packed;
    if (d == 0 && p.lse != nullptr) p.lse[row] = lse2 * 0.6931471805599453f;  // -inf stays
}

// Merges the splits of each column g of the CTA's (partial slots slot0 + g): o = sum_s w_s o_s,
// w_s = 2^(lse_s - lse). One CTA does this at the tail of the call, so it is latency-bound: each
// thread owns one column's float4 of dims and requests kInFlight splits' partials and their LSEs
// in one go (the LSE loads of a column are one broadcast per warp), then merges them with an
// online softmax, so there is no separate pass for the weights. Partials come from other CTAs, so
// they are read through L2 (__ldcg), never a stale L1 line.
template <int HD, int kInFlight>
__device__ void combine_splits(const DecodeParams& p, const DecodeOut& out, const QueryCols& qc,
                               int64_t slot0, int num_splits) {
    constexpr int kPerHead = HD / 4, kHeadsPerPass = kDecodeThreads / kPerHead;
    const int d4 = threadIdx.x % kPerHead;
    for (int g = threadIdx.x / kPerHead; g < qc.rows * qc.group; g += kHeadsPerPass) {
        const float* lse = out.lse_part + (slot0 + g) * num_splits;
        const float4* o =
            reinterpret_cast<const float4*>(out.o_part) + (slot0 + g) * num_splits * kPerHead + d4;
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        float m = -INFINITY, total = 0.f;
        for (int s0 = 0; s0 < num_splits; s0 += kInFlight) {
            float4 v[kInFlight];
            float l[kInFlight];
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {
                const bool in = s0 + u < num_splits;
                v[u] = in ? __ldcg(o + (s0 + u) * kPerHead) : make_float4(0.f, 0.f, 0.f, 0.f);
                l[u] = in ? __ldcg(lse + s0 + u) : -INFINITY;  // -inf: empty or absent split
            }
            float mx = m;
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) mx = fmaxf(mx, l[u]);
            if (mx == -INFINITY) continue;  // every split so far is empty
            const float alpha = exp2f(m - mx);  // m == -inf: 0, and acc, total are still 0
            acc.x *= alpha;
            acc.y *= alpha;
            acc.z *= alpha;
            acc.w *= alpha;
            total *= alpha;
            m = mx;
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {
                const float wt = exp2f(l[u] - m);
                total += wt;
                acc.x += wt * v[u].x;
                acc.y += wt * v[u].y;
                acc.z += wt * v[u].z;
                acc.w += wt * v[u].w;
            }
        }
        const float inv = total > 0.f ? 1.f / total : 0.f;
        acc.x *= inv;
        acc.y *= inv;
        acc.z *= inv;
        acc.w *= inv;
        store_out4(p, qc.head_row(g, p.num_heads), 4 * d4, acc,
                   total > 0.f ? m + log2f(total) : -INFINITY);
    }
}

// Merges the warps' states, then writes o directly (one split) or this split's partial result
// (slots slot0 + column); the last split of the CTA's (sequence, kv head, rows) to get here
// combines all of them.
template <KvFormat F, int HD, int kCtasPerSm, int kQT>
__device__ void finish_split(const DecodeParams& p, const DecodeOut& out, char* smem,
                             DecodeState<HD, kQT>& st, const QueryCols& qc, int64_t slot0,
                             unsigned* counter) {
    // o rows of HD + 4 floats: the 4 lanes of a quad write 4 columns at one dim, banks 4 apart
    // (at a stride of HD they share a bank).
    constexpr int kRow = HD + 4, kCols = kQT * kDecodeRows;
    static_assert(DecodeShape<F, HD>::kSmem >= kDecodeWarps * kCols * (2 + kRow) * 4);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 2, c = lane & 3;
    const int num_splits = gridDim.x, split = blockIdx.x;
    float* s_ml = reinterpret_cast<float*>(smem);   // [warp][column][max, sum]
    float* s_o = s_ml + kDecodeWarps * kCols * 2;  // [warp][column][kRow]
    __syncthreads();  // every warp is done with its ring: reuse it
#pragma unroll
    for (int qt = 0; qt < kQT; ++qt) {
        float l = st.l[qt];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        if (c == 0) {
            s_ml[(warp * kCols + 8 * qt + r) * 2] = st.m[qt];
            s_ml[(warp * kCols + 8 * qt + r) * 2 + 1] = l;
        }
        float* o_rows = s_o + (warp * kCols + 8 * qt + 2 * c) * kRow;  // columns 2c, 2c + 1
#pragma unroll
        for (int mt = 0; mt < HD / 16; ++mt) {
            const float* o = st.o[qt][mt];
            if constexpr (DecodeShape<F, HD>::kQuant) {  // halves 0 / 1: adjacent dims, 8 bytes
                const int d = out_dim<F>(mt, 0, r);
                *reinterpret_cast<float2*>(o_rows + d) = make_float2(o[0], o[2]);
                *reinterpret_cast<float2*>(o_rows + kRow + d) = make_float2(o[1], o[3]);
            } else {
#pragma unroll
                for (int i = 0; i < 4; ++i) o_rows[(i % 2) * kRow + out_dim<F>(mt, i / 2, r)] = o[i];
            }
        }
    }
    __syncthreads();
    // One float4 of one column's dims per thread: each thread works out its column's warp
    // weights itself (broadcast shared loads), then merges 4 float4s. (A loop over single dims
    // that recomputed the weights for each took about 1.4 us a call on H100.)
    constexpr int kPerHead = HD / 4, kHeadsPerPass = kDecodeThreads / kPerHead;
    const int d4 = threadIdx.x % kPerHead;
    for (int g = threadIdx.x / kPerHead; g < qc.rows * qc.group; g += kHeadsPerPass) {
        float m[kDecodeWarps], mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < kDecodeWarps; ++w) {
            m[w] = s_ml[(w * kCols + g) * 2];
            mx = fmaxf(mx, m[w]);
        }
        float sum = 0.f;
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int w = 0; w < kDecodeWarps; ++w) {
            const float wt = m[w] == -INFINITY ? 0.f : exp2f(m[w] - mx);
            sum += wt * s_ml[(w * kCols + g) * 2 + 1];
            const float4 v = reinterpret_cast<const float4*>(s_o + (w * kCols + g) * kRow)[d4];
            acc.x += wt * v.x;
            acc.y += wt * v.y;
            acc.z += wt * v.z;
            acc.w += wt * v.w;
        }
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        acc = make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
        const float lse2 = sum > 0.f ? mx + log2f(sum) : -INFINITY;
        if (num_splits == 1) {
            store_out4(p, qc.head_row(g, p.num_heads), 4 * d4, acc, lse2);
        } else {
            const int64_t row = (slot0 + g) * num_splits + split;
            reinterpret_cast<float4*>(out.o_part + row * HD)[d4] = acc;
            if (d4 == 0) out.lse_part[row] = lse2;
        }
    }
    if (num_splits == 1) return;
    // The flag travels by __syncthreads_or, not a static __shared__ variable: with one, the
    // whole kernel ran 5-8% slower at every batch and context on H100 (it also moves the
    // dynamic shared memory to a 16-byte offset; the cause was not isolated further).
    // One thread counts the CTA in with an acquire-release atomic, CUTLASS's semaphore pattern:
    // the barrier orders every thread's partial writes before its release, and the barrier after
    // its acquire orders the combine's reads after the other splits' writes. Against a
    // __threadfence in every thread on both sides it runs 1.00-1.05x on H200.
    __syncthreads();
    bool last = false;
    if (threadIdx.x == 0) {
        unsigned before;
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;"
                     : "=r"(before)
                     : "l"(counter)
                     : "memory");
        last = before == static_cast<unsigned>(num_splits - 1);
        if (last) *counter = 0;  // every split has arrived: ready for the next call
    }
    if (!__syncthreads_or(last)) return;
    // All of a head's splits in one request where the registers allow (2 CTAs per SM); at 3 the
    // planner gives at most 10 splits.
    combine_splits<HD, kCtasPerSm == 2 ? 32 : 16>(p, out, qc, slot0, num_splits);
}

}  // namespace vela::cuda::detail
