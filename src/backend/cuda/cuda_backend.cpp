#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <unordered_map>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/quant_kernels.h"
#include "core/error.h"
#include "cuda/attention_params.h"
#include "model/weights.h"

namespace vela {
namespace {

using cuda_backend::align_up;
using cuda_backend::as_stream;
using cuda_backend::attention_kv_format;
using cuda_backend::check;
using cuda_backend::check_device_weight;
using cuda_backend::check_f32;
using cuda_backend::device_storage;
using cuda_backend::Half;
using cuda_backend::half_of;
using cuda_backend::kv_shape;
using cuda_backend::paged_kv;

void check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        fail<Error>("cuBLAS error in {}: {}", what, cublasGetStatusString(s));
    }
}

cuda::Dtype attention_dtype(Half h) {
    return h == Half::BF16 ? cuda::Dtype::kBf16 : cuda::Dtype::kF16;
}

// cuBLAS workspace, given explicitly so that recorded GEMMs never allocate (32 MiB on Hopper).
constexpr size_t kCublasWorkspace = size_t{32} << 20;

}  // namespace

// --- backend ---

void* CudaBackend::Scratch::get(size_t bytes) {
    if (!buf || buf->bytes() < bytes) {
        buf.reset();  // free first: the old and new buffers need not fit together
        buf = std::make_unique<CudaBuffer>(bytes);
        ++*generation;
    }
    return buf->data();
}

CudaBackend::CudaBackend(bool graphs, bool batch_invariant)
    : graphs_enabled_(graphs), batch_invariant_(batch_invariant) {
    if (!cuda_device_available()) {
        fail<Error>("--device cuda: no usable CUDA device (cudaGetDeviceCount found none)");
    }
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device),
          "cudaDeviceGetAttribute");
    cudaStream_t s = nullptr;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_ = s;
    cublasHandle_t h = nullptr;
    check(cublasCreate(&h), "cublasCreate");
    cublas_ = h;
    check(cublasSetStream(h, s), "cublasSetStream");
    cublas_ws_ = std::make_unique<CudaBuffer>(kCublasWorkspace);
    check(cublasSetWorkspace(h, cublas_ws_->data(), kCublasWorkspace), "cublasSetWorkspace");
}

CudaBackend::~CudaBackend() {
    if (stream_ != nullptr) cudaStreamSynchronize(as_stream(stream_));
    for (auto& [key, g] : graphs_) {
        if (g.exec != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
    }
    if (cublas_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
    if (stream_ != nullptr) cudaStreamDestroy(as_stream(stream_));
}

void CudaBackend::check_launch(const char* what) const {
    check(cudaGetLastError(), what);
}

Backend::MemoryInfo CudaBackend::memory_info() const {
    MemoryInfo m;
    check(cudaMemGetInfo(&m.free, &m.total), "cudaMemGetInfo");
    return m;
}

std::unique_ptr<DeviceBuffer> CudaBackend::allocate(size_t bytes) {
    ++generation_;  // a model's activations may have moved
    return std::make_unique<CudaBuffer>(bytes);
}

void CudaBackend::to_device(const void* host, Tensor dst) {
    VELA_ASSERT(dst.device == Device::Cuda);
    // From pageable memory the copy returns once `host` has been read: the caller may reuse it.
    check(cudaMemcpyAsync(dst.data, host,
                          row_bytes(dst.dtype, dst.cols) * static_cast<size_t>(dst.rows),
                          cudaMemcpyHostToDevice, as_stream(stream_)),
          "to_device");
}

void CudaBackend::to_host(const Tensor& src, void* host) {
    VELA_ASSERT(src.device == Device::Cuda);
    check(cudaMemcpyAsync(host, src.data,
                          row_bytes(src.dtype, src.cols) * static_cast<size_t>(src.rows),
                          cudaMemcpyDeviceToHost, as_stream(stream_)),
          "to_host");
    check(cudaStreamSynchronize(as_stream(stream_)), "to_host");
}

void CudaBackend::load_weights(ModelWeights& weights) {
    // One allocation per model; a tensor seen twice (a tied LM head) is uploaded once.
    struct Upload {
        size_t offset, bytes;
    };
    std::unordered_map<const void*, Upload> uploads;
    size_t total = 0;
    weights.for_each([&](Weight& w) {
        if (w.device == Device::Cuda) return;  // already uploaded
        if (!cuda_backend::supports_weight_type(w.type)) {
            fail<InvalidArgument>("the CUDA backend cannot read {} weights", dtype_name(w.type));
        }
        const size_t bytes = row_bytes(w.type, w.cols) * static_cast<size_t>(w.rows);
        if (uploads.emplace(w.data, Upload{total, bytes}).second) total += align_up(bytes);
    });
    if (total == 0) return;
    auto memory = std::make_unique<CudaBuffer>(total);
    ++generation_;
    auto* base = static_cast<std::byte*>(memory->data());
    for (const auto& [host, u] : uploads) {
        check(cudaMemcpy(base + u.offset, host, u.bytes, cudaMemcpyHostToDevice), "weight upload");
    }
    weights.for_each([&](Weight& w) {
        if (w.device == Device::Cuda) return;
        w.data = base + uploads.at(w.data).offset;
        w.device = Device::Cuda;
    });
    // Kept for the backend's life: several models (a draft model beside its target) share it.
    weights_.push_back(std::move(memory));
}

// Every KV format at head sizes 64, 128 and 256, K and V in one format. The decode kernel reads
// 64 and 128; at 256 (Gemma 3) every row runs on the prefill kernels (16-bit: wgmma on sm_90a;
// 8-bit and Q4: mma.sync).
bool CudaBackend::supports_kv(KvFormats formats, int64_t head_dim) {
    if (formats.k != formats.v) return false;
    const KvFormat f = formats.k;
    const bool stored = f == KvFormat::F16 || f == KvFormat::BF16 || f == KvFormat::Q8 ||
                        f == KvFormat::FP8 || f == KvFormat::Q4;
    return stored && (head_dim == 0 || head_dim == 64 || head_dim == 128 || head_dim == 256);
}

std::string CudaBackend::kv_unsupported(KvFormats formats, int64_t head_dim) const {
    if (supports_kv(formats, head_dim)) return "";
    return fmt::format(
        "the CUDA attention kernels do not read this KV format at head size {} (f16, bf16, q8, "
        "fp8 and q4 at head sizes 64, 128 and 256; K and V in one format)",
        head_dim);
}

size_t CudaBackend::kv_token_bytes(KvFormat f, bool key, int64_t head_dim, int64_t block_size,
                                   int64_t group) const {
    if (f == KvFormat::Q8 || f == KvFormat::FP8) return static_cast<size_t>(head_dim) + 4;
    if (f == KvFormat::Q4) {  // codes, and a block's share of the larger side's pairs
        (void)key;
        const auto pairs = std::max(4 * head_dim, block_size * kv_groups(head_dim, group) * 4);
        return static_cast<size_t>(head_dim / 2 + (pairs + block_size - 1) / block_size);
    }
    return Backend::kv_token_bytes(f, key, head_dim, block_size, group);
}

std::unique_ptr<KvStorage> CudaBackend::make_kv_storage(const KvLayout& layout, KvFormats formats) {
    // Any head size is stored; attention() refuses the ones its kernels lack (InvalidArgument).
    if (!supports_kv(formats, 0)) {
        fail<InvalidArgument>(
            "the CUDA backend stores KV as f16, bf16, q8, fp8 or q4 (the same for K and V), got {}",
            kv_formats_name(formats));
    }
    if (formats.k == KvFormat::Q4) {
        if (layout.block_size % 16 != 0)
            fail<InvalidArgument>(
                "q4 KV on the GPU needs a KV block size that is a multiple of 16, got {}",
                layout.block_size);
        if (layout.attention_scores)
            fail<InvalidArgument>(
                "q4 KV on the GPU does not run with h2o or tova eviction (it keeps no attention "
                "scores); window and sinks eviction work");
        if (layout.head_dim % 32 != 0)
            fail<InvalidArgument>("q4 KV on the GPU needs a head size that is a multiple of 32");
    }
    ++generation_;
    // Sparse attention (plan) needs the block size; storages that disagree make it refuse.
    kv_block_size_ =
        kv_block_size_ == 0 || kv_block_size_ == layout.block_size ? layout.block_size : -1;
    return std::make_unique<DeviceKvStorage>(layout, formats, stream_);
}

void CudaBackend::embed(const Weight& table, Tensor out) {
    check_f32(out);
    check_device_weight(table);
    const Plan& p = planned();
    VELA_ASSERT(out.rows == p.batch->n_rows() && out.cols == table.cols);
    cuda_backend::embed_rows(table.type, table.data, table.cols, p.tokens, out.rows, out.f32(),
                             stream_);
    check_launch("embed");
}

void CudaBackend::matmul(const Weight& w, const Tensor& x, Tensor y) {
    check_f32(x);
    check_f32(y);
    check_device_weight(w);
    VELA_ASSERT(x.cols == w.cols && y.cols == w.rows && x.rows == y.rows);
    const int64_t m = x.rows, n = w.rows, k = w.cols;
    if (m == 0) return;
    if (m <= cuda_backend::kMatvecMaxRows || batch_invariant_) {
        for (int64_t r = 0; r < m; r += cuda_backend::kMatvecMaxRows) {
            const int64_t rows = std::min(cuda_backend::kMatvecMaxRows, m - r);
            cuda_backend::matvec(w.type, w.data, n, k, x.f32() + r * k, k, rows, y.f32() + r * n, n,
                                 stream_, batch_invariant_);
        }
        check_launch("matvec");
        return;
    }
    // Tensor cores with fp32 sums: F16 and BF16 weights as they are, with the activations
    // rounded to the same 16-bit type (as llama.cpp does for F16); other types dequantised to
    // bf16 first.
    const bool f16 = w.type == DType::F16;
    const void* wb = w.data;
    if (!f16 && w.type != DType::BF16) {
        auto* buf = static_cast<uint16_t*>(w_bf16_.get(static_cast<size_t>(n * k) * 2));
        cuda_backend::dequantize_bf16(w.type, w.data, n, k, buf, stream_);
        wb = buf;
    }
    auto* xb = x_bf16_.get(static_cast<size_t>(m * k) * 2);
    cuda_backend::to_half(x.f32(), m * k, f16 ? Half::F16 : Half::BF16, xb, stream_);
    check_launch("matmul operands");
    const float alpha = 1.f, beta = 0.f;
    const cudaDataType_t operand = f16 ? CUDA_R_16F : CUDA_R_16BF;
    // Column-major view: y^T (n x m) = W (k x n)^T * x^T (k x m).
    check(
        cublasGemmEx(static_cast<cublasHandle_t>(cublas_), CUBLAS_OP_T, CUBLAS_OP_N,
                     static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, wb,
                     operand, static_cast<int>(k), xb, operand, static_cast<int>(k), &beta, y.f32(),
                     CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "matmul (cublasGemmEx)");
}

void CudaBackend::rms_norm(const Tensor& x, const Weight& weight, Tensor y, float eps) {
    check_f32(x);
    check_f32(y);
    check_device_weight(weight);
    VELA_ASSERT(x.cols == weight.cols && y.cols == x.cols && y.rows == x.rows);
    cuda_backend::rms_norm(x.f32(), weight.f32(), y.f32(), x.rows, x.cols, eps, stream_);
    check_launch("rms_norm");
}

void CudaBackend::add_inplace(Tensor y, const Tensor& x) {
    check_f32(x);
    check_f32(y);
    VELA_ASSERT(x.numel() == y.numel());
    cuda_backend::add(y.f32(), x.f32(), y.numel(), stream_);
    check_launch("add");
}

void CudaBackend::add_bias(Tensor y, const Weight& bias) {
    check_f32(y);
    check_device_weight(bias);
    VELA_ASSERT(bias.cols == y.cols);
    cuda_backend::add_bias(y.f32(), bias.f32(), y.rows, y.cols, stream_);
    check_launch("add_bias");
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor y) {
    check_f32(gate);
    check_f32(up);
    check_f32(y);
    VELA_ASSERT(gate.numel() == up.numel() && y.numel() == gate.numel());
    cuda_backend::silu_mul(gate.f32(), up.f32(), y.f32(), y.numel(), stream_);
    check_launch("silu_mul");
}

void CudaBackend::gelu_mul(const Tensor& gate, const Tensor& up, Tensor y) {
    check_f32(gate);
    check_f32(up);
    check_f32(y);
    VELA_ASSERT(gate.numel() == up.numel() && y.numel() == gate.numel());
    cuda_backend::gelu_mul(gate.f32(), up.f32(), y.f32(), y.numel(), stream_);
    check_launch("gelu_mul");
}

void CudaBackend::scale(Tensor y, float factor) {
    check_f32(y);
    cuda_backend::scale(y.f32(), factor, y.numel(), stream_);
    check_launch("scale");
}

void CudaBackend::rope(Tensor x, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                       const Tensor& cos, const Tensor& sin, bool neox) {
    check_f32(x);
    check_f32(cos);
    check_f32(sin);
    VELA_ASSERT(x.cols == n_heads * head_dim && rot_dim <= head_dim && rot_dim % 2 == 0);
    VELA_ASSERT(cos.rows == x.rows && cos.cols == rot_dim / 2 && sin.rows == x.rows);
    cuda_backend::rope(x.f32(), x.rows, n_heads, head_dim, rot_dim, cos.f32(), sin.f32(), neox,
                       stream_);
    check_launch("rope");
}

void CudaBackend::write_kv(KvStorage& kv, int64_t layer, const Tensor& k, const Tensor& v) {
    check_f32(k);
    check_f32(v);
    auto& dkv = device_storage(kv);
    const KvLayout& l = dkv.layout();
    const Plan& p = planned();
    VELA_ASSERT(k.rows == p.batch->n_rows() && v.rows == k.rows);
    VELA_ASSERT(k.cols == l.n_kv_heads * l.head_dim && v.cols == k.cols);
    cuda_backend::KvWrite w;
    w.k = k.f32();
    w.v = v.f32();
    w.slots = p.slots_of(l.group_of(layer));
    w.rows = k.rows;
    w.k_cache = dkv.side(layer, false);
    w.v_cache = dkv.side(layer, true);
    w.scores = dkv.scores(layer);
    w.k_offsets = dkv.key_offsets(layer);
    w.shape = kv_shape(dkv);
    dkv.begin_step(*p.batch, plans_);  // done already when the step runs through run_ops
    w.residual = dkv.residual(layer);
    cuda_backend::write_kv(w, stream_);
    check_launch("write_kv");
    close_blocks(dkv, layer);
}

// Q4: quantises the keys of the blocks whose last row this step wrote (DeviceKvStorage).
void CudaBackend::close_blocks(const DeviceKvStorage& kv, int64_t layer) {
    if (kv.formats().k != KvFormat::Q4) return;
    cuda_backend::close_q4_blocks(kv.side(layer, false), kv.residual(layer), kv_shape(kv),
                                  kv.closing() + 1, kv.closing(), planned().batch->n_rows(),
                                  stream_);
    check_launch("close_q4_blocks");
}

void CudaBackend::attention(const KvStorage& kv, int64_t layer, const Tensor& q, Tensor out,
                            int64_t n_heads, float scale, int64_t window) {
    check_f32(q);
    check_f32(out);
    const auto& dkv = device_storage(kv);
    const KvLayout& l = dkv.layout();
    const Plan& p = planned();
    const ForwardBatch& b = *p.batch;
    VELA_ASSERT(q.rows == b.n_rows() && q.cols == n_heads * l.head_dim && out.rows == q.rows &&
                out.cols == q.cols);
    const Half h = half_of(dkv.formats().k);
    const size_t elems = static_cast<size_t>(q.numel());
    void* qh = q_half_.get(elems * 2);
    void* oh = o_half_.get(elems * 2);
    cuda_backend::to_half(q.f32(), q.numel(), h, qh, stream_);
    check_launch("attention q");

    // Batch-invariant steps give decode rows the prefill kernel too: whether a step is all
    // decode depends on the other sequences, and the split-K decode sums in another order.
    // Rows as decode queries (Plan::rows_as_decode) read the KV once per kv head and 16 / group
    // rows, the prefill kernel once per query head (a CTA per head and 64 rows, no split): the
    // decode kernel where that is no more bytes, or where the prefill grid would leave most of
    // the device idle (few sequences over long keys).
    const int64_t group = n_heads / l.n_kv_heads;
    cuda::DecodeParams shape;  // the CTAs a kv head's rows take (cuda::decode_row_chunks)
    shape.num_heads = static_cast<int>(n_heads);
    shape.num_kv_heads = static_cast<int>(l.n_kv_heads);
    shape.cu_seqlens_q = p.query_start;
    shape.max_seqlen_q = p.max_q_len;
    const bool rows = p.rows_as_decode && (cuda::decode_row_chunks(shape) <= group ||
                                           b.n_seqs() * n_heads < 2 * sm_count_);
    // Q4 decodes one row a sequence: several rows may part on which of them reads its open
    // block's fp16 keys.
    const bool q4 = dkv.formats().k == KvFormat::Q4;
    const bool decode = !batch_invariant_ && (p.max_q_len == 1 || (rows && !q4)) &&
                        window == 0 && !b.has_tree() && l.head_dim <= 128 && group <= 8;
    const KvScoreMode scores = b.kv_scores;
    float* lse = scores == KvScoreMode::None
                     ? nullptr
                     : static_cast<float*>(lse_.get(static_cast<size_t>(q.rows * n_heads) * 4));
    if (decode) {
        decode_attention(dkv, layer, qh, oh, n_heads, scale, lse, rows && !q4);
    } else {
        cuda::PrefillParams pp;
        pp.dtype = attention_dtype(h);
        pp.head_dim = static_cast<int>(l.head_dim);
        pp.num_heads = static_cast<int>(n_heads);
        pp.num_kv_heads = static_cast<int>(l.n_kv_heads);
        pp.batch = static_cast<int>(b.n_seqs());
        pp.max_seqlen_q = p.max_q_len;
        pp.q = qh;
        pp.q_row_stride = n_heads * l.head_dim;
        pp.q_head_stride = l.head_dim;
        pp.cu_seqlens_q = p.query_start;
        pp.paged = paged_kv(dkv, layer, p.table_of(l.group_of(layer)), p.table_stride);
        pp.kv_format = attention_kv_format(dkv.formats().k);
        pp.seqlens_k = p.kv_len;
        pp.o = oh;
        pp.o_row_stride = pp.q_row_stride;
        pp.o_head_stride = pp.q_head_stride;
        pp.softmax_scale = scale;
        pp.causal = true;
        // The CPU's window W keeps the last W keys: distance < W, i.e. window_left = W - 1.
        pp.window_left = window > 0 ? static_cast<int>(window - 1) : -1;
        pp.lse = lse;
        pp.tree_mask = p.tree_mask;
        pp.tree_offset = p.tree_offset;
        cuda::prefill_forward(pp, stream_);
    }
    if (lse != nullptr) {
        VELA_ASSERT(dkv.scores(layer) != nullptr && "scores asked of a storage that keeps none");
        cuda_backend::KvScores sc;
        sc.q = qh;
        sc.q_bf16 = h == Half::BF16;
        sc.lse = lse;
        sc.scale = scale;
        sc.n_heads = n_heads;
        sc.window = window;
        sc.last = scores == KvScoreMode::Last;
        sc.k_cache = dkv.side(layer, false);
        sc.shape = kv_shape(dkv);
        sc.block_table = p.table_of(dkv.layout().group_of(layer));
        sc.table_stride = p.table_stride;
        sc.query_start = p.query_start;
        sc.kv_len = p.kv_len;
        sc.n_seqs = b.n_seqs();
        sc.max_kv_len = p.max_kv_len;
        sc.scores = dkv.scores(layer);
        cuda_backend::attention_scores(sc, stream_);
        check_launch("attention scores");
    }
    cuda_backend::from_half(oh, out.numel(), h, out.f32(), stream_);
    check_launch("attention out");
}

void CudaBackend::decode_attention(const DeviceKvStorage& kv, int64_t layer, const void* q, void* o,
                                   int64_t n_heads, float scale, float* lse, bool rows) {
    const KvLayout& l = kv.layout();
    const Plan& p = planned();
    cuda::DecodeParams d;
    d.dtype = attention_dtype(half_of(kv.formats().k));
    d.kv_format = attention_kv_format(kv.formats().k);
    d.head_dim = static_cast<int>(l.head_dim);
    d.num_heads = static_cast<int>(n_heads);
    d.num_kv_heads = static_cast<int>(l.n_kv_heads);
    d.batch = static_cast<int>(p.batch->n_seqs());
    d.max_seqlen_k = p.kv_bound;
    d.q = q;
    if (rows) {  // Plan::rows_as_decode: each sequence's rows
        d.cu_seqlens_q = p.query_start;
        d.max_seqlen_q = p.max_q_len;
    }
    d.paged = paged_kv(kv, layer, p.table_of(l.group_of(layer)), p.table_stride);
    d.seqlens_k = p.kv_len;
    d.o = o;
    d.lse = lse;
    d.softmax_scale = scale;
    d.num_splits = plan_.decode_splits;  // every layer of a step has the same shape: plan once
    cuda::decode_plan(d, sm_count_);
    plan_.decode_splits = d.num_splits;
    // The workspace reserves finish counters for the largest call so far, so that no call's
    // partial outputs overwrite a larger one's counters. A larger reserve moves the
    // partials (graphs recorded before point at the old place) and needs zeroed counters.
    const int counters = static_cast<int>(cuda::decode_counters(d));
    const bool grew = counters > decode_counters_;
    if (grew) {
        decode_counters_ = static_cast<int>(std::bit_ceil(static_cast<unsigned>(counters)));
        ++generation_;
    }
    d.workspace_counters = decode_counters_;
    const size_t ws = cuda::decode_workspace_bytes(d);
    const void* before = decode_ws_.buf ? decode_ws_.buf->data() : nullptr;
    d.workspace = decode_ws_.get(ws);
    if (d.workspace != before || grew) {
        // Counters start at zero (every call leaves them zero).
        check(cudaMemsetAsync(d.workspace, 0, decode_ws_.buf->bytes(), as_stream(stream_)),
              "decode workspace");
    }
    cuda::decode_forward(d, stream_);
}

void CudaBackend::gather_logit_rows(const Tensor& x, Tensor out) {
    check_f32(x);
    check_f32(out);
    const Plan& p = planned();
    VELA_ASSERT(out.rows == static_cast<int64_t>(p.batch->logit_rows.size()) && out.cols == x.cols);
    cuda_backend::gather_rows(x.f32(), x.cols, p.logit_rows, out.rows, out.f32(), stream_);
    check_launch("gather_logit_rows");
}

void CudaBackend::argmax_rows(const Tensor& x, Tensor ids) {
    check_f32(x);
    VELA_ASSERT(ids.device == Device::Cuda && ids.dtype == DType::I32 && ids.rows == x.rows);
    cuda_backend::argmax_rows(x.f32(), x.rows, x.cols, static_cast<int32_t*>(ids.data), stream_);
    check_launch("argmax_rows");
}

void CudaBackend::logsumexp_rows(const Tensor& x, Tensor lse) {
    check_f32(x);
    VELA_ASSERT(lse.device == Device::Cuda && lse.dtype == DType::F64 && lse.rows == x.rows &&
                x.cols > 0);
    cuda_backend::logsumexp_rows(x.f32(), x.rows, x.cols, static_cast<double*>(lse.data), stream_);
    check_launch("logsumexp_rows");
}

void CudaBackend::apply_penalties(Tensor x, std::span<const LogitPenalty> entries) {
    check_f32(x);
    check_penalties(x, entries);
    if (entries.empty()) return;
    const size_t bytes = entries.size_bytes();
    if (!penalties_ || penalties_->bytes() < bytes)
        penalties_ = std::make_unique<CudaBuffer>(bytes);
    check(cudaMemcpyAsync(penalties_->data(), entries.data(), bytes, cudaMemcpyHostToDevice,
                          as_stream(stream_)),
          "apply_penalties");
    cuda_backend::apply_penalties(x.f32(), x.cols,
                                  static_cast<const LogitPenalty*>(penalties_->data()),
                                  static_cast<int64_t>(entries.size()), stream_);
    check_launch("apply_penalties");
}

void CudaBackend::top_k_rows(const Tensor& x, Tensor tokens, Tensor values) {
    check_f32(x);
    check_f32(values);
    const int64_t k = tokens.cols;
    VELA_ASSERT(tokens.device == Device::Cuda && tokens.dtype == DType::I32 &&
                tokens.rows == x.rows && values.rows == x.rows && values.cols == k && k >= 1 &&
                k <= kMaxTopK);
    cuda_backend::top_k_rows(x.f32(), x.rows, x.cols, static_cast<int>(k),
                             static_cast<int32_t*>(tokens.data), values.f32(), stream_);
    check_launch("top_k_rows");
}

}  // namespace vela
