#pragma once
// The device a model runs on. The model is written once against this interface; the CPU
// backend (backend/cpu) implements it and the CUDA backend will. One step goes:
//   plan(batch)   once, before any op: the backend takes the step's metadata (token ids,
//                 positions, slots, block tables) into its own memory and picks its kernels;
//   ops           on activations (Tensors in the backend's memory, from allocate());
//   to_host       the logits, or only the ids of greedy rows (argmax_rows), back to the host.
// Weights stay in the file's format; load_weights() gives the backend the chance to copy them
// to its memory once. KV lives in a KvStorage the backend makes, in its memory and format.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/error.h"
#include "backend/logit_penalty.h"
#include "core/tensor.h"
#include "kv/kv_storage.h"
#include "model/forward_batch.h"

namespace vela {

struct ModelWeights;

// Memory a backend handed out; freed with the object.
class DeviceBuffer {
  public:
    virtual ~DeviceBuffer() = default;
    virtual void* data() = 0;
    virtual size_t bytes() const = 0;
};

class Backend {
  public:
    virtual ~Backend() = default;

    virtual Device device() const = 0;
    virtual std::string name() const = 0;

    // --- memory ---
    // Free and total bytes of the device's memory, for planning it before allocating (GPU);
    // {0, 0} for host memory, which is not planned.
    struct MemoryInfo {
        size_t free = 0, total = 0;
    };
    virtual MemoryInfo memory_info() const { return {}; }
    virtual std::unique_ptr<DeviceBuffer> allocate(size_t bytes) = 0;
    virtual void to_device(const void* host, Tensor dst) = 0;  // dst.numel() elements
    virtual void to_host(const Tensor& src, void* host) = 0;

    // Makes the weights usable on this device (CPU: the mapped file as it is; a GPU backend
    // uploads them and repoints every Weight). Called once, before the first forward.
    virtual void load_weights(ModelWeights& weights) = 0;
    // The KV pool in this backend's memory.
    virtual std::unique_ptr<KvStorage> make_kv_storage(const KvLayout& layout,
                                                       KvFormats formats) = 0;
    // Why this backend cannot store KV in `formats` and attend over it at this head size (a
    // sentence for an error message), or "" when it can: checked before a model is run.
    virtual std::string kv_unsupported(KvFormats formats, int64_t head_dim) const = 0;
    // Bytes per token of one KV head's K (key) or V as this backend stores format f (for
    // planning memory before make_kv_storage): kv/kv_storage.h's kv_token_bytes on the host.
    virtual size_t kv_token_bytes(KvFormat f, bool key, int64_t head_dim, int64_t block_size,
                                  int64_t group) const {
        return vela::kv_token_bytes(f, key, head_dim, block_size, group);
    }

    // --- one step ---
    // Takes the batch's metadata for the ops below; the batch must outlive the step.
    virtual void plan(const ForwardBatch& batch) = 0;
    // Runs `ops`: the step's device work between plan() and the copy of its logits to the host,
    // for one model (`model`) over one KV storage (`kv`). A GPU backend may record them once per
    // step shape and replay the recording (CUDA graphs), so ops must depend on the step only
    // through plan()'s metadata and the batch's sizes, and must not copy to the host. The CPU
    // runs them.
    virtual void run_ops(const void* model, KvStorage& kv, const std::function<void()>& ops) {
        (void)model;
        (void)kv;
        ops();
    }

    // How many run_ops calls so far ran slower than their step shape's steady state: a GPU
    // backend's first eager run of a shape, or its recording as a CUDA graph (whose replays are
    // faster). Timings of steps that warmed up are not the shape's (spec::SpeedGate).
    virtual uint64_t warmup_runs() const { return 0; }

    // out[i] = row batch.tokens[i] of the embedding table, dequantised (n_rows x cols).
    virtual void embed(const Weight& table, Tensor out) = 0;
    // y[m][w.rows] = x[m][w.cols] * W^T
    virtual void matmul(const Weight& w, const Tensor& x, Tensor y) = 0;
    // Each row: y = x / rms(x) * weight
    virtual void rms_norm(const Tensor& x, const Weight& weight, Tensor y, float eps) = 0;
    virtual void add_inplace(Tensor y, const Tensor& x) = 0;  // y += x
    virtual void add_bias(Tensor y, const Weight& bias) = 0;  // each row += bias
    virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor y) = 0;
    // y = gelu(gate) * up, GELU in its tanh approximation (GeGLU)
    virtual void gelu_mul(const Tensor& gate, const Tensor& up, Tensor y) = 0;
    virtual void scale(Tensor y, float factor) = 0;  // y *= factor
    // Rotates each row's n_heads x head_dim in place at the batch's positions (rows of
    // cos/sin: rot_dim / 2 angles per row, made by the model).
    virtual void rope(Tensor x, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                      const Tensor& cos, const Tensor& sin, bool neox) = 0;
    // Stores this step's keys/values (rows of n_kv_heads x head_dim) at the batch's slots.
    virtual void write_kv(KvStorage& kv, int64_t layer, const Tensor& k, const Tensor& v) = 0;
    // Causal attention of q (n_rows x n_heads*head_dim) over each sequence's paged KV, as the
    // batch describes it; `window` > 0 limits each query to its last `window` keys.
    virtual void attention(const KvStorage& kv, int64_t layer, const Tensor& q, Tensor out,
                           int64_t n_heads, float scale, int64_t window = 0) = 0;
    // out[i] = x[batch.logit_rows[i]]
    virtual void gather_logit_rows(const Tensor& x, Tensor out) = 0;
    // ids[i] (an I32 tensor of x.rows x 1) = the index of row i's largest value, ties to the
    // lowest index, NaN never the largest; -1 when no value is above -inf. Greedy sampling
    // without copying the logits to the host.
    virtual void argmax_rows(const Tensor& x, Tensor ids) = 0;
    // The k = tokens.cols (1..kMaxTopK) largest values of each row of x, ranked by (value desc,
    // index asc) as sampling::top_k ranks them: tokens (I32) and values (F32), x.rows x k each.
    // NaN and -inf are never listed; a row with fewer than k others pads with -1 / -inf.
    // Non-greedy sampling (temperature, top-k, top-p, min-p) without copying whole rows.
    virtual void top_k_rows(const Tensor& x, Tensor tokens, Tensor values) = 0;
    static constexpr int64_t kMaxTopK = 1024;
    // lse[i] (an F64 tensor of x.rows x 1) = log(sum(exp(row i))), as sampling::log_sum_exp
    // computes it (double accumulation around the row's maximum; a non-finite maximum as is):
    // with a row's top-k list, its logprobs without copying the row.
    virtual void logsumexp_rows(const Tensor& x, Tensor lse) = 0;
    // The repetition / frequency / presence penalties of sampling::apply_penalties on the rows
    // of x, one entry per distinct (row, token) (LogitPenalty): before argmax or top_k_rows, so
    // that penalised rows need not come to the host. InvalidArgument for an entry outside x.
    virtual void apply_penalties(Tensor x, std::span<const LogitPenalty> entries) = 0;
    // apply_penalties' argument check, the same for every backend.
    static void check_penalties(const Tensor& x, std::span<const LogitPenalty> entries) {
        for (const LogitPenalty& e : entries) {
            if (e.row < 0 || e.row >= x.rows || e.token < 0 || e.token >= x.cols || e.count < 1) {
                fail<InvalidArgument>("apply_penalties: entry (row {}, token {}, count {}) "
                                      "outside {} x {} logits",
                                      e.row, e.token, e.count, x.rows, x.cols);
            }
        }
    }

    // --- fused ops: each is defined by the ops above, which the defaults run in turn; a
    // backend may do the same work in fewer passes over memory (fewer launches on a GPU) ---

    // x += delta, then y = rms_norm(x) * weight: a residual add and the next norm. y may be delta.
    virtual void add_rms_norm(Tensor x, const Tensor& delta, const Weight& weight, Tensor y,
                              float eps) {
        add_inplace(x, delta);
        rms_norm(x, weight, y, eps);
    }
    // ys[i] = x * ws[i]^T for every i: several projections of one input (Q, K and V).
    virtual void matmuls(std::span<const Weight* const> ws, const Tensor& x,
                         std::span<const Tensor> ys) {
        for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], x, ys[i]);
    }
    // The first half of a gated FFN: y = act(x * gate^T) * (x * up^T), act SiLU or (gelu) GELU
    // in its tanh form; `up_out` is scratch of y's shape.
    virtual void gated_ffn(const Weight& gate, const Weight& up, const Tensor& x, Tensor y,
                           Tensor up_out, bool gelu) {
        matmul(gate, x, y);
        matmul(up, x, up_out);
        if (gelu)
            gelu_mul(y, up_out, y);
        else
            silu_mul(y, up_out, y);
    }
    // rope() of q and of k, then write_kv() of k and v: a layer's attention inputs.
    virtual void rope_write_kv(KvStorage& kv, int64_t layer, Tensor q, Tensor k, const Tensor& v,
                               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                               int64_t rot_dim, const Tensor& cos, const Tensor& sin, bool neox) {
        rope(q, n_heads, head_dim, rot_dim, cos, sin, neox);
        rope(k, n_kv_heads, head_dim, rot_dim, cos, sin, neox);
        write_kv(kv, layer, k, v);
    }
};

}  // namespace vela
