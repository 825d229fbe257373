#pragma once
// The CPU implementation of Backend: quantised matmuls and elementwise ops from ops.h, paged
// FlashAttention from attention/, all on one ThreadPool.
#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace vela {

class CpuBackend final : public Backend {
  public:
    explicit CpuBackend(ThreadPool& pool) : pool_(pool) {}

    void matmul(const Weight& w, const float* x, int64_t m, float* y) override;
    void get_rows(const Weight& table, std::span<const int32_t> ids, float* out) override;
    void rms_norm(const float* x, const Weight& weight, float* y, int64_t rows, int64_t n,
                  float eps) override;
    void add_inplace(float* y, const float* x, int64_t n) override;
    void add_bias(float* y, const Weight& bias, int64_t rows, int64_t n) override;
    void silu_mul(const float* gate, const float* up, float* y, int64_t n) override;
    void rope(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
              const float* cos, const float* sin, bool neox) override;
    void write_kv(KvCache& kv, int64_t layer, std::span<const int64_t> slots, const float* k,
                  const float* v) override;
    void attention(const KvCache& kv, int64_t layer, const float* q, float* out,
                   std::span<const AttentionSeq> seqs, int64_t n_heads, float scale) override;

    ThreadPool& pool() { return pool_; }

  private:
    ThreadPool& pool_;
    cpu::Workspace ws_;
};

}  // namespace vela
