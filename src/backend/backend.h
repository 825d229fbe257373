#pragma once
// The operations a model's forward pass needs. The model is written once against this
// interface; CPU (backend/cpu) and CUDA implement it. Activations are row-major float arrays
// owned by the caller, in the backend's memory.
#include <cstdint>
#include <span>

#include "attention/paged_attention.h"
#include "core/tensor.h"
#include "kv/kv_cache.h"

namespace vela {

class Backend {
  public:
    virtual ~Backend() = default;

    // y[m][w.rows] = x[m][w.cols] * W^T
    virtual void matmul(const Weight& w, const float* x, int64_t m, float* y) = 0;
    // out[i] = row ids[i] of the embedding table, dequantised
    virtual void get_rows(const Weight& table, std::span<const int32_t> ids, float* out) = 0;
    // Each of `rows` rows of n: y = x / rms(x) * weight
    virtual void rms_norm(const float* x, const Weight& weight, float* y, int64_t rows, int64_t n,
                          float eps) = 0;
    // y += x over n elements
    virtual void add_inplace(float* y, const float* x, int64_t n) = 0;
    // Each of `rows` rows of n: y += bias
    virtual void add_bias(float* y, const Weight& bias, int64_t rows, int64_t n) = 0;
    // y = silu(gate) * up over n elements
    virtual void silu_mul(const float* gate, const float* up, float* y, int64_t n) = 0;
    // Rotates `rows` rows of n_heads x head_dim in place; cos/sin hold rows x rot_dim/2.
    virtual void rope(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                      const float* cos, const float* sin, bool neox) = 0;
    // Stores this step's keys/values (rows of n_kv_heads x head_dim) into their cache slots.
    virtual void write_kv(KvCache& kv, int64_t layer, std::span<const int64_t> slots,
                          const float* k, const float* v) = 0;
    // Causal attention of q over each sequence's paged KV (see attention/paged_attention.h).
    virtual void attention(const KvCache& kv, int64_t layer, const float* q, float* out,
                           std::span<const AttentionSeq> seqs, int64_t n_heads, float scale) = 0;
};

}  // namespace vela
