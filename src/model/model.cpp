#include "model/model.h"

#include <cmath>

#include "core/error.h"
#include "model/rope.h"

namespace vela {

// Activations of one step in the backend's memory, sized for the largest batch seen so far.
struct Model::Scratch {
    struct Slot {
        std::unique_ptr<DeviceBuffer> buffer;
        Tensor view(Backend& b, int64_t rows, int64_t cols) {
            const size_t bytes = sizeof(float) * static_cast<size_t>(rows * cols);
            if (!buffer || buffer->bytes() < bytes) buffer = b.allocate(bytes);
            return Tensor{buffer->data(), DType::F32, rows, cols, b.device()};
        }
    };
    Backend* backend = nullptr;
    Slot x, h, q, k, v, attn, gate, up, cos, sin, out_rows, logits;
    Tensor tx, th, tq, tk, tv, tattn, tgate, tup, tcos, tsin;
    std::vector<float> host_cos, host_sin;

    void prepare(Backend& b, const HParams& hp, int64_t rows) {
        if (backend != &b) *this = Scratch{};  // buffers belong to the backend that made them
        backend = &b;
        tx = x.view(b, rows, hp.n_embd);
        th = h.view(b, rows, hp.n_embd);
        tq = q.view(b, rows, hp.q_dim());
        tk = k.view(b, rows, hp.kv_dim());
        tv = v.view(b, rows, hp.kv_dim());
        tattn = attn.view(b, rows, hp.q_dim());
        tgate = gate.view(b, rows, hp.n_ff);
        tup = up.view(b, rows, hp.n_ff);
        tcos = cos.view(b, rows, hp.rope.dim / 2);
        tsin = sin.view(b, rows, hp.rope.dim / 2);
    }
};

Model::Model(const std::string& path)
    : file_(gguf::File::open(path)),
      hp_(HParams::from_gguf(file_)),
      weights_(ModelWeights::bind(file_, hp_)),
      scratch_(std::make_unique<Scratch>()) {}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;

KvLayout Model::kv_layout(int64_t block_size, int64_t num_blocks) const {
    return KvLayout{hp_.n_layers, hp_.n_kv_heads, hp_.head_dim, block_size, num_blocks};
}

void Model::forward(const ForwardBatch& batch, KvStorage& kv, Backend& backend,
                    std::vector<float>& logits) {
    const int64_t rows = batch.n_rows();
    VELA_ASSERT(rows > 0);
    if (loaded_on_ != &backend) {
        backend.load_weights(weights_);
        loaded_on_ = &backend;
    }
    Scratch& s = *scratch_;
    s.prepare(backend, hp_, rows);
    backend.plan(batch);

    // Rotary angles of every row's position, shared by all layers.
    const int64_t half = hp_.rope.dim / 2;
    s.host_cos.resize(static_cast<size_t>(rows * half));
    s.host_sin.resize(static_cast<size_t>(rows * half));
    for (int64_t r = 0; r < rows; ++r) {
        rope_cos_sin(hp_.rope, weights_.rope_freq_factors, batch.positions[r],
                     &s.host_cos[r * half], &s.host_sin[r * half]);
    }
    backend.to_device(s.host_cos.data(), s.tcos);
    backend.to_device(s.host_sin.data(), s.tsin);

    backend.embed(weights_.token_embd, s.tx);
    for (int64_t il = 0; il < hp_.n_layers; ++il) layer(il, kv, backend, s);

    // Only the rows that need logits go through the final norm and the LM head.
    const auto n_out = static_cast<int64_t>(batch.logit_rows.size());
    logits.resize(static_cast<size_t>(n_out * hp_.n_vocab));
    if (n_out == 0) return;
    Tensor out_rows = s.out_rows.view(backend, n_out, hp_.n_embd);
    backend.gather_logit_rows(s.tx, out_rows);
    backend.rms_norm(out_rows, weights_.output_norm, out_rows, hp_.rms_eps);
    Tensor out_logits = s.logits.view(backend, n_out, hp_.n_vocab);
    backend.matmul(weights_.output, out_rows, out_logits);
    backend.to_host(out_logits, logits.data());
}

void Model::layer(int64_t il, KvStorage& kv, Backend& backend, Scratch& s) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(il)];

    // Attention block.
    backend.rms_norm(s.tx, w.attn_norm, s.th, hp_.rms_eps);
    backend.matmul(w.wq, s.th, s.tq);
    backend.matmul(w.wk, s.th, s.tk);
    backend.matmul(w.wv, s.th, s.tv);
    if (w.bq) {
        backend.add_bias(s.tq, w.bq);
        backend.add_bias(s.tk, w.bk);
        backend.add_bias(s.tv, w.bv);
    }
    backend.rope(s.tq, hp_.n_heads, hp_.head_dim, hp_.rope.dim, s.tcos, s.tsin, hp_.rope.neox);
    backend.rope(s.tk, hp_.n_kv_heads, hp_.head_dim, hp_.rope.dim, s.tcos, s.tsin, hp_.rope.neox);
    backend.write_kv(kv, il, s.tk, s.tv);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hp_.head_dim));
    backend.attention(kv, il, s.tq, s.tattn, hp_.n_heads, scale);
    backend.matmul(w.wo, s.tattn, s.th);
    backend.add_inplace(s.tx, s.th);

    // Feed-forward block (SwiGLU).
    backend.rms_norm(s.tx, w.ffn_norm, s.th, hp_.rms_eps);
    backend.matmul(w.w_gate, s.th, s.tgate);
    backend.matmul(w.w_up, s.th, s.tup);
    backend.silu_mul(s.tgate, s.tup, s.tgate);
    backend.matmul(w.w_down, s.tgate, s.th);
    backend.add_inplace(s.tx, s.th);
}

}  // namespace vela
