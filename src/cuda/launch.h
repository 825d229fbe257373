#pragma once
// Internal boundary between the validating host API (api.cpp, plain C++) and the kernel
// translation units (*.cu): the kernel instances that exist and the launchers. Run-time values
// (dtype, head dim, KV format) become template arguments in one place, dispatch.cuh, over the
// lists below; api.cpp rejects any other value with an error naming the supported ones.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "cuda/attention_params.h"

namespace vela::cuda::detail {

// The head dims a kernel is instantiated for (each in both dtypes, or in every KvFormat).
template <int... kDims>
struct HeadDims {
    static constexpr bool contains(int head_dim) { return ((head_dim == kDims) || ...); }
};
using PrefillHeadDims = HeadDims<64, 128, 256>;      // mma.sync forward
using PrefillSm90HeadDims = HeadDims<64, 128, 256>;  // wgmma forward (sm_90a builds)
using BackwardHeadDims = HeadDims<64, 128>;          // both dK/dV kernels
using DecodeHeadDims = HeadDims<64, 128>;

constexpr int kDecodeMaxGroup = 8;        // query heads per kv head held in registers
constexpr int kDecodeMaxSplitLen = 8192;  // longest split: bounds per-CTA imbalance
constexpr int kDecodeMaxSplits = 1024;    // the combine at the tail of a call stays short

cudaError_t launch_prefill(const PrefillParams& p, cudaStream_t stream);       // mma.sync
cudaError_t launch_prefill_sm90(const PrefillParams& p, cudaStream_t stream);  // wgmma
cudaError_t launch_backward(const BackwardParams& p, bool wgmma, cudaStream_t stream);
cudaError_t launch_decode(const DecodeParams& p, int split_len, cudaStream_t stream);

// Resident CTAs per SM of the decode kernel instance for p (plans the split count); also raises
// that instance's shared-memory limit, which its first launch needs.
int decode_prepare(const DecodeParams& p);

// Mma columns of the decode kernel's CTA: 8 query heads of one row, or with cu_seqlens_q 16
// columns of 16 / group rows.
inline int decode_cols(const DecodeParams& p) {
    return p.cu_seqlens_q == nullptr ? 8 : 16;
}

// Partial-output slots of a decode call: one per (counter, column in use), where a CTA uses
// group columns a row (decode_row_chunks).
inline int64_t decode_slots(const DecodeParams& p) {
    const int group = p.num_kv_heads > 0 ? std::max(p.num_heads / p.num_kv_heads, 1) : 1;
    const int rows = p.cu_seqlens_q == nullptr ? 1 : std::max(decode_cols(p) / group, 1);
    return decode_counters(p) * rows * group;
}

// Decode workspace layout: one finish counter per (sequence, kv head, rows) first, padded to 16
// bytes, then the partial outputs and LSEs of every split.
inline size_t decode_counter_bytes(const DecodeParams& p) {
    const int64_t n = std::max<int64_t>(p.workspace_counters, decode_counters(p));
    return (sizeof(unsigned) * static_cast<size_t>(n) + 15) / 16 * 16;
}

}  // namespace vela::cuda::detail
