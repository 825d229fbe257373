#pragma once
// The CPU implementation of Backend: quantised matmuls and elementwise ops from ops.h, paged
// FlashAttention from attention/, all on one ThreadPool. Memory is host memory; weights are
// the mapped GGUF file; the KV storage is a HostKvStorage.
#include <vector>

#include "attention/paged_attention.h"
#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace vela {

class CpuBackend final : public Backend {
  public:
    // Kernels of the best ISA this machine runs, lowered by VELA_CPU_ISA (matmuls and attention
    // alike), or of the given one.
    explicit CpuBackend(ThreadPool& pool);
    CpuBackend(ThreadPool& pool, cpu::Isa isa);

    Device device() const override { return Device::Cpu; }
    std::string name() const override { return "cpu"; }

    std::unique_ptr<DeviceBuffer> allocate(size_t bytes) override;
    void to_device(const void* host, Tensor dst) override;
    void to_host(const Tensor& src, void* host) override;
    void load_weights(ModelWeights& weights) override;
    std::unique_ptr<KvStorage> make_kv_storage(const KvLayout& layout, KvFormats formats) override;

    void plan(const ForwardBatch& batch) override;
    void embed(const Weight& table, Tensor out) override;
    void matmul(const Weight& w, const Tensor& x, Tensor y) override;
    void rms_norm(const Tensor& x, const Weight& weight, Tensor y, float eps) override;
    void add_inplace(Tensor y, const Tensor& x) override;
    void add_bias(Tensor y, const Weight& bias) override;
    void silu_mul(const Tensor& gate, const Tensor& up, Tensor y) override;
    void gelu_mul(const Tensor& gate, const Tensor& up, Tensor y) override;
    void scale(Tensor y, float factor) override;
    void rope(Tensor x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const Tensor& cos,
              const Tensor& sin, bool neox) override;
    void write_kv(KvStorage& kv, int64_t layer, const Tensor& k, const Tensor& v) override;
    void attention(const KvStorage& kv, int64_t layer, const Tensor& q, Tensor out,
                   int64_t n_heads, float scale, int64_t window) override;
    void gather_logit_rows(const Tensor& x, Tensor out) override;
    void argmax_rows(const Tensor& x, Tensor ids) override;
    void top_k_rows(const Tensor& x, Tensor tokens, Tensor values) override;
    void logsumexp_rows(const Tensor& x, Tensor lse) override;
    std::string kv_unsupported(KvFormats formats, int64_t head_dim) const override;
    void apply_penalties(Tensor x, std::span<const LogitPenalty> entries) override;

    ThreadPool& pool() { return pool_; }

  private:
    const ForwardBatch& batch() const;

    ThreadPool& pool_;
    cpu::Workspace ws_;
    AttentionImpl attention_impl_;
    const ForwardBatch* batch_ = nullptr;
    // The batch's sequences as the CPU kernel reads them, with the main group's block tables
    // and with the local group's (ForwardBatch::local_block_table).
    std::vector<AttentionSeq> attn_seqs_[2];
};

}  // namespace vela
