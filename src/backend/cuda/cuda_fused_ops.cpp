// The CUDA backend's fused ops (Backend's add_rms_norm, matmuls, gated_ffn, rope_write_kv): one
// launch each where the kernels allow, else the unfused ops they are defined by.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kv_ops.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/quant_kernels.h"

namespace vela {

using cuda_backend::check_device_weight;
using cuda_backend::check_f32;
using cuda_backend::device_storage;
using cuda_backend::kv_shape;

void CudaBackend::add_rms_norm(Tensor x, const Tensor& delta, const Weight& weight, Tensor y,
                               float eps) {
    check_f32(x);
    check_f32(delta);
    check_f32(y);
    check_device_weight(weight);
    VELA_ASSERT(delta.rows == x.rows && delta.cols == x.cols && y.rows == x.rows &&
                y.cols == x.cols && weight.cols == x.cols);
    cuda_backend::add_rms_norm(x.f32(), delta.f32(), weight.f32(), y.f32(), x.rows, x.cols, eps,
                               stream_);
    check_launch("add_rms_norm");
}

namespace {

// Rows [r, r + n) of a row-major float tensor.
Tensor row_slice(const Tensor& t, int64_t r, int64_t n) {
    return Tensor{t.f32() + r * t.cols, t.dtype, n, t.cols, t.device};
}

}  // namespace

// Decode-sized inputs with weights of one type: one matvec launch for all of them.
void CudaBackend::matmuls(std::span<const Weight* const> ws, const Tensor& x,
                          std::span<const Tensor> ys) {
    VELA_ASSERT(ws.size() == ys.size());
    check_f32(x);
    if (batch_invariant_ && x.rows > cuda_backend::kMatvecMaxRows) {
        // Eight rows at a time, each group as a decode step would run it.
        std::vector<Tensor> part(ys.size());
        for (int64_t r = 0; r < x.rows; r += cuda_backend::kMatvecMaxRows) {
            const int64_t n = std::min(cuda_backend::kMatvecMaxRows, x.rows - r);
            for (size_t i = 0; i < ys.size(); ++i) part[i] = row_slice(ys[i], r, n);
            matmuls(ws, row_slice(x, r, n), part);
        }
        return;
    }
    int64_t max_n = 0;
    for (const Weight* w : ws) max_n = std::max(max_n, w->rows);
    bool one_launch = !ws.empty() && cuda_backend::matvec_fuses(ws[0]->type, max_n) &&
                      x.rows >= 1 && x.rows <= cuda_backend::kMatvecMaxRows &&
                      ws.size() <= static_cast<size_t>(cuda_backend::kMatvecMaxMats);
    cuda_backend::MatvecOutput outs[cuda_backend::kMatvecMaxMats];
    for (size_t i = 0; one_launch && i < ws.size(); ++i) {
        check_device_weight(*ws[i]);
        check_f32(ys[i]);
        VELA_ASSERT(ws[i]->cols == x.cols && ys[i].rows == x.rows && ys[i].cols == ws[i]->rows);
        one_launch = ws[i]->type == ws[0]->type && ws[i]->rows > 0;
        outs[i] = {ws[i]->data, ws[i]->rows, ys[i].f32()};
    }
    if (!one_launch) return Backend::matmuls(ws, x, ys);
    cuda_backend::matvec_multi(ws[0]->type, outs, static_cast<int>(ws.size()), x.cols, x.f32(),
                               x.rows, stream_);
    check_launch("matvec_multi");
}

void CudaBackend::gated_ffn(const Weight& gate, const Weight& up, const Tensor& x, Tensor y,
                            Tensor up_out, bool gelu) {
    check_f32(x);
    check_f32(y);
    check_device_weight(gate);
    check_device_weight(up);
    if (batch_invariant_ && x.rows > cuda_backend::kMatvecMaxRows) {
        for (int64_t r = 0; r < x.rows; r += cuda_backend::kMatvecMaxRows) {
            const int64_t n = std::min(cuda_backend::kMatvecMaxRows, x.rows - r);
            gated_ffn(gate, up, row_slice(x, r, n), row_slice(y, r, n), row_slice(up_out, r, n),
                      gelu);
        }
        return;
    }
    const bool one_launch = cuda_backend::matvec_fuses(gate.type, gate.rows) && x.rows >= 1 &&
                            x.rows <= cuda_backend::kMatvecMaxRows && gate.type == up.type &&
                            gate.rows == up.rows;
    if (!one_launch) return Backend::gated_ffn(gate, up, x, y, up_out, gelu);
    VELA_ASSERT(gate.cols == x.cols && up.cols == x.cols && y.rows == x.rows &&
                y.cols == gate.rows);
    cuda_backend::matvec_glu(gate.type, gate.data, up.data, gate.rows, x.cols, x.f32(), x.rows,
                             y.f32(), gelu, stream_);
    check_launch("matvec_glu");
}

void CudaBackend::rope_write_kv(KvStorage& kv, int64_t layer, Tensor q, Tensor k, const Tensor& v,
                                int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                int64_t rot_dim, const Tensor& cos, const Tensor& sin, bool neox) {
    check_f32(q);
    check_f32(k);
    check_f32(v);
    check_f32(cos);
    check_f32(sin);
    auto& dkv = device_storage(kv);
    const KvLayout& l = dkv.layout();
    const Plan& p = planned();
    VELA_ASSERT(q.rows == p.batch->n_rows() && k.rows == q.rows && v.rows == q.rows);
    VELA_ASSERT(n_kv_heads == l.n_kv_heads && head_dim == l.head_dim);
    VELA_ASSERT(q.cols == n_heads * head_dim && k.cols == n_kv_heads * head_dim &&
                v.cols == k.cols);
    VELA_ASSERT(rot_dim <= head_dim && rot_dim % 2 == 0 && cos.rows == q.rows &&
                cos.cols == rot_dim / 2 && sin.rows == q.rows);
    cuda_backend::RopeWriteKv r;
    r.q = q.f32();
    r.k = k.f32();
    r.v = v.f32();
    r.cos = cos.f32();
    r.sin = sin.f32();
    r.slots = p.slots_of(l.group_of(layer));
    r.rows = q.rows;
    r.n_heads = n_heads;
    r.rot_dim = rot_dim;
    r.neox = neox;
    r.k_cache = dkv.side(layer, false);
    r.v_cache = dkv.side(layer, true);
    r.scores = dkv.scores(layer);
    r.k_offsets = dkv.key_offsets(layer);
    r.shape = kv_shape(dkv);
    dkv.begin_step(*p.batch, plans_);  // done already when the step runs through run_ops
    r.residual = dkv.residual(layer);
    cuda_backend::rope_write_kv(r, stream_);
    check_launch("rope_write_kv");
    close_blocks(dkv, layer);
}

}  // namespace vela
