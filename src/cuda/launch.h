#pragma once
// Internal boundary between the validating host API (api.cpp, plain C++) and the kernel
// translation units (*.cu). Each launcher is the single dispatch point from runtime values
// (dtype, head dim, KV format) to template arguments.
#include <cuda_runtime_api.h>

#include "cuda/attention_params.h"

namespace vela::cuda::detail {

constexpr int kDecodeMaxGroup = 8;        // query heads per kv head held in registers
constexpr int kDecodeMaxSplitLen = 8192;  // longest split: bounds per-CTA imbalance
constexpr int kDecodeMaxSplits = 1024;    // the combine at the tail of a call stays short

cudaError_t launch_prefill(const PrefillParams& p, cudaStream_t stream);       // mma.sync
cudaError_t launch_prefill_sm90(const PrefillParams& p, cudaStream_t stream);  // wgmma
cudaError_t launch_backward(const BackwardParams& p, bool wgmma, cudaStream_t stream);
cudaError_t launch_decode(const DecodeParams& p, int split_len, cudaStream_t stream);

// Raises the decode kernel's shared-memory limit for p's KV format and head dim (needed before
// its first launch) and returns its resident CTAs per SM (plans the split count).
int decode_prepare(const DecodeParams& p);

// Decode workspace layout: one finish counter per (sequence, kv head) first, padded to 16 bytes,
// then the partial outputs and LSEs of every split.
inline size_t decode_counter_bytes(const DecodeParams& p) {
    return (sizeof(unsigned) * static_cast<size_t>(p.batch) * p.num_kv_heads + 15) / 16 * 16;
}

}  // namespace vela::cuda::detail
