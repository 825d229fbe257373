#include "backend/cpu/cpu_backend.h"

#include "core/error.h"

namespace vela {

void CpuBackend::matmul(const Weight& w, const float* x, int64_t m, float* y) {
    cpu::matmul(cpu::MatmulParams{w.data, w.type, w.rows, w.cols, x, w.cols, m, y, w.rows}, ws_,
                pool_);
}

void CpuBackend::get_rows(const Weight& table, std::span<const int32_t> ids, float* out) {
    const size_t row_size = row_bytes(table.type, table.cols);
    const auto* base = static_cast<const uint8_t*>(table.data);
    for (size_t i = 0; i < ids.size(); ++i) {
        VELA_ASSERT(ids[i] >= 0 && ids[i] < table.rows);
        cpu::dequantize_row(table.type, base + static_cast<size_t>(ids[i]) * row_size,
                            out + static_cast<int64_t>(i) * table.cols, table.cols);
    }
}

void CpuBackend::rms_norm(const float* x, const Weight& weight, float* y, int64_t rows, int64_t n,
                          float eps) {
    for (int64_t r = 0; r < rows; ++r) cpu::rms_norm(x + r * n, weight.f32(), y + r * n, n, eps);
}

void CpuBackend::add_inplace(float* y, const float* x, int64_t n) {
    cpu::add(y, x, y, n);
}

void CpuBackend::add_bias(float* y, const Weight& bias, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; ++r) cpu::add(y + r * n, bias.f32(), y + r * n, n);
}

void CpuBackend::silu_mul(const float* gate, const float* up, float* y, int64_t n) {
    pool_.parallel_for(
        n, [&](int64_t b, int64_t e) { cpu::silu_mul(gate + b, up + b, y + b, e - b); });
}

void CpuBackend::rope(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                      const float* cos, const float* sin, bool neox) {
    const int64_t half = rot_dim / 2;
    for (int64_t r = 0; r < rows; ++r) {
        cpu::rope(x + r * n_heads * head_dim, n_heads, head_dim, rot_dim, cos + r * half,
                  sin + r * half, neox);
    }
}

void CpuBackend::write_kv(KvCache& kv, int64_t layer, std::span<const int64_t> slots,
                          const float* k, const float* v) {
    kv.write(layer, slots, k, v);
}

void CpuBackend::attention(const KvCache& kv, int64_t layer, const float* q, float* out,
                           std::span<const AttentionSeq> seqs, int64_t n_heads, float scale) {
    const KvCacheConfig& c = kv.config();
    PagedAttentionParams p;
    p.q = q;
    p.out = out;
    p.n_heads = n_heads;
    p.n_kv_heads = c.n_kv_heads;
    p.head_dim = c.head_dim;
    p.block_size = c.block_size;
    p.scale = scale;
    p.kv = kv.layer(layer);
    p.seqs = seqs;
    paged_attention(p, pool_);
}

}  // namespace vela
