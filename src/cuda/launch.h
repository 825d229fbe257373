#pragma once
// Internal boundary between the validating host API (api.cpp, plain C++) and the kernel
// translation units (*.cu). Each launcher is the single dispatch point from runtime values
// (dtype, head dim, KV format) to template arguments.
#include <cuda_runtime_api.h>

#include "cuda/attention_params.h"

namespace vela::cuda::detail {

constexpr int kDecodeMaxGroup = 8;        // query heads per kv head held in registers
constexpr int kDecodeMaxSplitLen = 2048;  // longest split: bounds per-CTA imbalance

cudaError_t launch_prefill(const PrefillParams& p, cudaStream_t stream);       // mma.sync
cudaError_t launch_prefill_sm90(const PrefillParams& p, cudaStream_t stream);  // wgmma
cudaError_t launch_backward(const BackwardParams& p, bool wgmma, cudaStream_t stream);
cudaError_t launch_decode(const DecodeParams& p, int split_len, cudaStream_t stream);

// Resident decode split CTAs per SM for p's KV format and head dim (plans the split count).
int decode_ctas_per_sm(const DecodeParams& p);

}  // namespace vela::cuda::detail
