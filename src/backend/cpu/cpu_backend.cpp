#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kv/host_kv_storage.h"
#include "sampling/logits_processors.h"
#include "sampling/logprobs.h"

namespace vela {
namespace {

class HostBuffer final : public DeviceBuffer {
  public:
    explicit HostBuffer(size_t bytes)
        : bytes_(bytes), data_(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64)) {
        if (data_ == nullptr) fail<ResourceExhausted>("cannot allocate {} bytes", bytes);
    }
    ~HostBuffer() override { std::free(data_); }
    void* data() override { return data_; }
    size_t bytes() const override { return bytes_; }

  private:
    size_t bytes_;
    void* data_;
};

// Ops take float activations in host memory; anything else is a caller bug.
void check_f32(const Tensor& t) {
    VELA_ASSERT(t.device == Device::Cpu && t.dtype == DType::F32);
}

template <class Storage>  // KvStorage or const KvStorage
auto& host_storage(Storage& kv) {
    if (kv.device() != Device::Cpu) {
        fail<InvalidArgument>("the CPU backend cannot use KV storage on {}",
                              device_name(kv.device()));
    }
    using Host = std::conditional_t<std::is_const_v<Storage>, const HostKvStorage, HostKvStorage>;
    return static_cast<Host&>(kv);
}

// y = act(gate) * up elementwise (SwiGLU, GeGLU), split over the pool.
void gated_mul(ThreadPool& pool, const Tensor& gate, const Tensor& up, Tensor y,
               void (*act_mul)(const float*, const float*, float*, int64_t)) {
    check_f32(gate);
    check_f32(up);
    check_f32(y);
    VELA_ASSERT(gate.numel() == up.numel() && y.numel() == gate.numel());
    const float* g = gate.f32();
    const float* u = up.f32();
    float* out = y.f32();
    pool.parallel_for(gate.numel(),
                      [&](int64_t b, int64_t e) { act_mul(g + b, u + b, out + b, e - b); });
}

}  // namespace

// The attention kernels have a scalar and an AVX2 path; AVX-512 machines run the AVX2 one.
CpuBackend::CpuBackend(ThreadPool& pool) : CpuBackend(pool, cpu::default_isa()) {}

CpuBackend::CpuBackend(ThreadPool& pool, cpu::Isa isa)
    : pool_(pool),
      ws_(isa),
      attention_impl_(isa == cpu::Isa::Scalar ? AttentionImpl::Scalar : AttentionImpl::Auto) {}

std::unique_ptr<DeviceBuffer> CpuBackend::allocate(size_t bytes) {
    return std::make_unique<HostBuffer>(bytes);
}

void CpuBackend::to_device(const void* host, Tensor dst) {
    VELA_ASSERT(dst.device == Device::Cpu);
    std::memcpy(dst.data, host, row_bytes(dst.dtype, dst.cols) * static_cast<size_t>(dst.rows));
}

void CpuBackend::to_host(const Tensor& src, void* host) {
    VELA_ASSERT(src.device == Device::Cpu);
    std::memcpy(host, src.data, row_bytes(src.dtype, src.cols) * static_cast<size_t>(src.rows));
}

void CpuBackend::load_weights(ModelWeights&) {
    // The kernels read the memory-mapped file in place.
}

std::unique_ptr<KvStorage> CpuBackend::make_kv_storage(const KvLayout& layout, KvFormats formats) {
    return std::make_unique<HostKvStorage>(layout, formats);
}

const ForwardBatch& CpuBackend::batch() const {
    VELA_ASSERT(batch_ != nullptr && "plan() comes before the step's ops");
    return *batch_;
}

void CpuBackend::plan(const ForwardBatch& batch) {
    batch_ = &batch;
    for (int8_t group : {0, 1}) {
        std::vector<AttentionSeq>& seqs = attn_seqs_[group];
        seqs.clear();
        if (group == 1 && !batch.has_local_group()) continue;
        const int32_t* table = batch.table_of(group).data();
        for (int64_t s = 0; s < batch.n_seqs(); ++s) {
            seqs.push_back(AttentionSeq{batch.query_start[s], batch.q_len(s), batch.kv_len[s],
                                        table + s * batch.max_blocks, batch.tree_of(s),
                                        batch.sparse_sinks, batch.sparse_window});
        }
    }
}

void CpuBackend::embed(const Weight& table, Tensor out) {
    check_f32(out);
    const ForwardBatch& b = batch();
    VELA_ASSERT(out.rows == b.n_rows() && out.cols == table.cols);
    const size_t row_size = row_bytes(table.type, table.cols);
    const auto* base = static_cast<const uint8_t*>(table.data);
    for (int64_t i = 0; i < out.rows; ++i) {
        const int32_t id = b.tokens[i];
        VELA_ASSERT(id >= 0 && id < table.rows);
        cpu::dequantize_row(table.type, base + static_cast<size_t>(id) * row_size,
                            out.f32() + i * table.cols, table.cols);
    }
}

void CpuBackend::matmul(const Weight& w, const Tensor& x, Tensor y) {
    check_f32(x);
    check_f32(y);
    VELA_ASSERT(x.cols == w.cols && y.cols == w.rows && x.rows == y.rows);
    cpu::matmul(
        cpu::MatmulParams{w.data, w.type, w.rows, w.cols, x.f32(), w.cols, x.rows, y.f32(), w.rows},
        ws_, pool_);
}

void CpuBackend::rms_norm(const Tensor& x, const Weight& weight, Tensor y, float eps) {
    check_f32(x);
    check_f32(y);
    VELA_ASSERT(x.cols == weight.cols && y.cols == x.cols && y.rows == x.rows);
    for (int64_t r = 0; r < x.rows; ++r) {
        cpu::rms_norm(x.f32() + r * x.cols, weight.f32(), y.f32() + r * x.cols, x.cols, eps);
    }
}

void CpuBackend::add_inplace(Tensor y, const Tensor& x) {
    check_f32(x);
    check_f32(y);
    VELA_ASSERT(x.numel() == y.numel());
    cpu::add(y.f32(), x.f32(), y.f32(), y.numel());
}

void CpuBackend::add_bias(Tensor y, const Weight& bias) {
    check_f32(y);
    VELA_ASSERT(bias.cols == y.cols);
    for (int64_t r = 0; r < y.rows; ++r) {
        cpu::add(y.f32() + r * y.cols, bias.f32(), y.f32() + r * y.cols, y.cols);
    }
}

void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor y) {
    gated_mul(pool_, gate, up, y, &cpu::silu_mul);
}

void CpuBackend::gelu_mul(const Tensor& gate, const Tensor& up, Tensor y) {
    gated_mul(pool_, gate, up, y, &cpu::gelu_mul);
}

void CpuBackend::scale(Tensor y, float factor) {
    check_f32(y);
    float* v = y.f32();
    for (int64_t i = 0; i < y.numel(); ++i) v[i] *= factor;
}

void CpuBackend::rope(Tensor x, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                      const Tensor& cos, const Tensor& sin, bool neox) {
    check_f32(x);
    const int64_t half = rot_dim / 2;
    VELA_ASSERT(x.cols == n_heads * head_dim && cos.rows == x.rows && cos.cols == half);
    for (int64_t r = 0; r < x.rows; ++r) {
        cpu::rope(x.f32() + r * x.cols, n_heads, head_dim, rot_dim, cos.f32() + r * half,
                  sin.f32() + r * half, neox);
    }
}

void CpuBackend::write_kv(KvStorage& kv, int64_t layer, const Tensor& k, const Tensor& v) {
    check_f32(k);
    check_f32(v);
    const ForwardBatch& b = batch();
    VELA_ASSERT(k.rows == b.n_rows() && v.rows == b.n_rows());
    HostKvStorage& host = host_storage(kv);
    const int8_t group = host.layout().group_of(layer);
    VELA_ASSERT(group == 0 || b.has_local_group());
    host.write(layer, b.slots_of(group), k.f32(), v.f32());
}

void CpuBackend::attention(const KvStorage& kv, int64_t layer, const Tensor& q, Tensor out,
                           int64_t n_heads, float scale, int64_t window) {
    check_f32(q);
    check_f32(out);
    const HostKvStorage& host = host_storage(kv);
    const KvLayout& l = host.layout();
    PagedAttentionParams p;
    p.q = q.f32();
    p.out = out.f32();
    p.n_heads = n_heads;
    p.n_kv_heads = l.n_kv_heads;
    p.head_dim = l.head_dim;
    p.block_size = l.block_size;
    p.scale = scale;
    p.kv = host.layer(layer);
    const int8_t group = l.group_of(layer);
    VELA_ASSERT(group == 0 || batch().has_local_group());
    p.seqs = attn_seqs_[group];
    p.window = window;
    p.impl = attention_impl_;
    p.kv_scores = batch().kv_scores;
    paged_attention(p, pool_);
}

void CpuBackend::gather_logit_rows(const Tensor& x, Tensor out) {
    check_f32(x);
    check_f32(out);
    const ForwardBatch& b = batch();
    VELA_ASSERT(out.rows == static_cast<int64_t>(b.logit_rows.size()) && out.cols == x.cols);
    for (int64_t i = 0; i < out.rows; ++i) {
        std::memcpy(out.f32() + i * x.cols, x.f32() + b.logit_rows[i] * x.cols,
                    sizeof(float) * static_cast<size_t>(x.cols));
    }
}

std::string CpuBackend::kv_unsupported(KvFormats formats, int64_t /*head_dim*/) const {
    if (formats.k == KvFormat::FP8 || formats.v == KvFormat::FP8)
        return "fp8 KV is stored by the CUDA backend only (--device cuda; q8 on the CPU)";
    return "";
}

void CpuBackend::apply_penalties(Tensor x, std::span<const LogitPenalty> entries) {
    check_f32(x);
    check_penalties(x, entries);
    for (const LogitPenalty& e : entries) {
        float& l = x.f32()[static_cast<int64_t>(e.row) * x.cols + e.token];
        l = sampling::penalised_logit(l, e.count, e.repetition, e.frequency, e.presence);
    }
}

void CpuBackend::top_k_rows(const Tensor& x, Tensor tokens, Tensor values) {
    check_f32(x);
    check_f32(values);
    const int64_t k = tokens.cols;
    VELA_ASSERT(tokens.device == Device::Cpu && tokens.dtype == DType::I32 &&
                tokens.rows == x.rows && values.rows == x.rows && values.cols == k && k >= 1 &&
                k <= kMaxTopK);
    sampling::Candidates best;  // the sampler's own selection: the same ranking, by definition
    for (int64_t r = 0; r < x.rows; ++r) {
        sampling::top_k({x.f32() + r * x.cols, static_cast<size_t>(x.cols)},
                        static_cast<int32_t>(k), best);
        auto* tok = static_cast<int32_t*>(tokens.data) + r * k;
        float* val = values.f32() + r * k;
        for (int64_t j = 0; j < k; ++j) {
            const bool listed = j < std::ssize(best.items);
            tok[j] = listed ? best.items[static_cast<size_t>(j)].token : -1;
            val[j] = listed ? best.items[static_cast<size_t>(j)].logit
                            : -std::numeric_limits<float>::infinity();
        }
    }
}

void CpuBackend::logsumexp_rows(const Tensor& x, Tensor lse) {
    check_f32(x);
    VELA_ASSERT(lse.device == Device::Cpu && lse.dtype == DType::F64 && lse.rows == x.rows &&
                x.cols > 0);
    auto* out = static_cast<double*>(lse.data);
    for (int64_t r = 0; r < x.rows; ++r) {
        out[r] = log_sum_exp({x.f32() + r * x.cols, static_cast<size_t>(x.cols)});
    }
}

void CpuBackend::argmax_rows(const Tensor& x, Tensor ids) {
    check_f32(x);
    VELA_ASSERT(ids.device == Device::Cpu && ids.dtype == DType::I32 && ids.rows == x.rows);
    auto* out = static_cast<int32_t*>(ids.data);
    for (int64_t r = 0; r < x.rows; ++r) {
        const float* row = x.f32() + r * x.cols;
        int32_t best = -1;
        float best_value = -std::numeric_limits<float>::infinity();
        for (int64_t c = 0; c < x.cols; ++c) {
            if (row[c] > best_value) {  // strict: the first maximum, never NaN
                best_value = row[c];
                best = static_cast<int32_t>(c);
            }
        }
        out[r] = best;
    }
}

}  // namespace vela
