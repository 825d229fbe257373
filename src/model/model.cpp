#include "model/model.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/rope.h"

namespace vela {

// Activations of one step, sized for the largest batch seen so far.
struct Model::Scratch {
    std::vector<float> x, h, q, k, v, attn, gate, up, cos, sin, out_rows;
    std::vector<AttentionSeq> attn_seqs;

    void reserve(const HParams& hp, int64_t rows) {
        auto fit = [](std::vector<float>& b, int64_t n) {
            if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
        };
        fit(x, rows * hp.n_embd);
        fit(h, rows * hp.n_embd);
        fit(q, rows * hp.q_dim());
        fit(k, rows * hp.kv_dim());
        fit(v, rows * hp.kv_dim());
        fit(attn, rows * hp.q_dim());
        fit(gate, rows * hp.n_ff);
        fit(up, rows * hp.n_ff);
        fit(cos, rows * hp.rope.dim / 2);
        fit(sin, rows * hp.rope.dim / 2);
    }
};

Model::Model(const std::string& path)
    : file_(gguf::File::open(path)),
      hp_(HParams::from_gguf(file_)),
      weights_(ModelWeights::bind(file_, hp_)),
      scratch_(std::make_unique<Scratch>()) {}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;

void Model::forward(const Batch& batch, KvCache& kv, Backend& backend, std::vector<float>& logits) {
    const int64_t rows = batch.n_rows();
    VELA_ASSERT(static_cast<int64_t>(batch.slots.size()) == rows);
    Scratch& s = *scratch_;
    s.reserve(hp_, rows);

    // Per-row rotary angles and per-sequence attention ranges, shared by all layers.
    const int64_t half = hp_.rope.dim / 2;
    s.attn_seqs.clear();
    int64_t row = 0;
    for (const BatchSequence& bs : batch.seqs) {
        for (int64_t i = 0; i < bs.n_tokens; ++i, ++row) {
            rope_cos_sin(hp_.rope, weights_.rope_freq_factors, bs.n_past + i, &s.cos[row * half],
                         &s.sin[row * half]);
        }
        const BlockTable& table = kv.table(bs.seq_id);
        s.attn_seqs.push_back(AttentionSeq{row - bs.n_tokens, bs.n_tokens, bs.n_past + bs.n_tokens,
                                           table.blocks.data()});
    }
    VELA_ASSERT(row == rows);

    backend.get_rows(weights_.token_embd, batch.tokens, s.x.data());
    for (int64_t il = 0; il < hp_.n_layers; ++il) layer(il, batch, kv, backend, s);

    // Only the rows that need logits go through the final norm and the LM head.
    const int64_t n_out = batch.n_logit_rows();
    s.out_rows.resize(static_cast<size_t>(n_out * hp_.n_embd));
    int64_t out = 0;
    row = 0;
    for (const BatchSequence& bs : batch.seqs) {
        using L = BatchSequence::Logits;
        const int64_t first = bs.logits == L::All ? 0 : bs.n_tokens - 1;
        const int64_t count = bs.logits == L::All ? bs.n_tokens : bs.logits == L::Last ? 1 : 0;
        std::memcpy(&s.out_rows[out * hp_.n_embd], &s.x[(row + first) * hp_.n_embd],
                    sizeof(float) * count * hp_.n_embd);
        out += count;
        row += bs.n_tokens;
    }
    backend.rms_norm(s.out_rows.data(), weights_.output_norm, s.out_rows.data(), n_out, hp_.n_embd,
                     hp_.rms_eps);
    logits.resize(static_cast<size_t>(n_out * hp_.n_vocab));
    backend.matmul(weights_.output, s.out_rows.data(), n_out, logits.data());
}

void Model::layer(int64_t il, const Batch& batch, KvCache& kv, Backend& backend, Scratch& s) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(il)];
    const int64_t rows = batch.n_rows();
    const int64_t E = hp_.n_embd;

    // Attention block.
    backend.rms_norm(s.x.data(), w.attn_norm, s.h.data(), rows, E, hp_.rms_eps);
    backend.matmul(w.wq, s.h.data(), rows, s.q.data());
    backend.matmul(w.wk, s.h.data(), rows, s.k.data());
    backend.matmul(w.wv, s.h.data(), rows, s.v.data());
    if (w.bq) {
        backend.add_bias(s.q.data(), w.bq, rows, hp_.q_dim());
        backend.add_bias(s.k.data(), w.bk, rows, hp_.kv_dim());
        backend.add_bias(s.v.data(), w.bv, rows, hp_.kv_dim());
    }
    backend.rope(s.q.data(), rows, hp_.n_heads, hp_.head_dim, hp_.rope.dim, s.cos.data(),
                 s.sin.data(), hp_.rope.neox);
    backend.rope(s.k.data(), rows, hp_.n_kv_heads, hp_.head_dim, hp_.rope.dim, s.cos.data(),
                 s.sin.data(), hp_.rope.neox);
    backend.write_kv(kv, il, batch.slots, s.k.data(), s.v.data());
    const float scale = 1.0f / std::sqrt(static_cast<float>(hp_.head_dim));
    backend.attention(kv, il, s.q.data(), s.attn.data(), s.attn_seqs, hp_.n_heads, scale);
    backend.matmul(w.wo, s.attn.data(), rows, s.h.data());
    backend.add_inplace(s.x.data(), s.h.data(), rows * E);

    // Feed-forward block (SwiGLU).
    backend.rms_norm(s.x.data(), w.ffn_norm, s.h.data(), rows, E, hp_.rms_eps);
    backend.matmul(w.w_gate, s.h.data(), rows, s.gate.data());
    backend.matmul(w.w_up, s.h.data(), rows, s.up.data());
    backend.silu_mul(s.gate.data(), s.up.data(), s.gate.data(), rows * hp_.n_ff);
    backend.matmul(w.w_down, s.gate.data(), rows, s.h.data());
    backend.add_inplace(s.x.data(), s.h.data(), rows * E);
}

}  // namespace vela
