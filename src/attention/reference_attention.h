#pragma once
// Plain double-precision causal attention over contiguous per-sequence K/V: the reference the
// tiled kernels are tested against. Two-pass softmax, no tiling, no paging. Tests only.
#include <cstdint>
#include <span>
#include <vector>

namespace vela {

struct ReferenceAttentionArgs {
    std::span<const float> q;  // [q_len][n_heads][head_dim]
    std::span<const float> k;  // [kv_len][n_kv_heads][head_dim], token order
    std::span<const float> v;  // [kv_len][n_kv_heads][head_dim]
    int64_t q_len = 0;
    int64_t kv_len = 0;
    int64_t n_heads = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    double scale = 0.0;
    int64_t window = 0;  // 0: plain causal; else keys in (pos - window, pos]
};

// Returns [q_len][n_heads][head_dim]; query row i sits at position kv_len - q_len + i.
std::vector<double> reference_attention(const ReferenceAttentionArgs& a);

}  // namespace vela
