#include "model/weights.h"

#include <fmt/format.h>

#include "core/error.h"
#include "gguf/gguf_file.h"

namespace vela {
namespace {

class Binder {
  public:
    Binder(const gguf::File& f) : f_(f) {}

    Weight matrix(const std::string& name, int64_t rows, int64_t cols) const {
        return check(f_.tensor(name), rows, cols);
    }
    Weight vector(const std::string& name, int64_t n) const {
        Weight w = check(f_.tensor(name), 1, n);
        if (w.type != DType::F32) {
            fail<FormatError>("{}: tensor '{}' must be F32, is {}", f_.path(), name,
                              dtype_name(w.type));
        }
        return w;
    }
    Weight optional_vector(const std::string& name, int64_t n) const {
        return f_.find_tensor(name) ? vector(name, n) : Weight{};
    }

  private:
    Weight check(const gguf::TensorInfo& t, int64_t rows, int64_t cols) const {
        const bool is_vector = rows == 1 && t.shape.size() == 1;
        const bool ok = is_vector || (t.shape.size() == 2 && t.shape[1] == rows);
        if (!ok || t.shape[0] != cols) {
            std::string got;
            for (int64_t d : t.shape) got += fmt::format("{}{}", got.empty() ? "" : "x", d);
            fail<FormatError>("{}: tensor '{}' has shape {}, expected {}x{}", f_.path(), t.name,
                              got, cols, rows);
        }
        return Weight{t.data, t.type, rows, cols};
    }
    const gguf::File& f_;
};

}  // namespace

ModelWeights ModelWeights::bind(const gguf::File& f, const HParams& hp) {
    const Binder b(f);
    ModelWeights m;
    m.token_embd = b.matrix("token_embd.weight", hp.n_vocab, hp.n_embd);
    m.output_norm = b.vector("output_norm.weight", hp.n_embd);
    m.output = f.find_tensor("output.weight") ? b.matrix("output.weight", hp.n_vocab, hp.n_embd)
                                              : m.token_embd;
    if (const auto* t = f.find_tensor("rope_freqs.weight")) {
        m.rope_freq_factors = b.vector(t->name, hp.rope.dim / 2).f32();
    } else if (hp.rope.scaling == RopeScaling::Llama3) {
        // Llama-3 scaling lives in that tensor; running without it would silently not scale.
        fail<FormatError>("{}: rope scaling type llama3 needs the rope_freqs.weight tensor",
                          f.path());
    }
    const bool qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    m.layers.resize(static_cast<size_t>(hp.n_layers));
    for (int64_t i = 0; i < hp.n_layers; ++i) {
        const std::string p = fmt::format("blk.{}.", i);
        LayerWeights& l = m.layers[static_cast<size_t>(i)];
        l.attn_norm = b.vector(p + "attn_norm.weight", hp.n_embd);
        l.wq = b.matrix(p + "attn_q.weight", hp.q_dim(), hp.n_embd);
        l.wk = b.matrix(p + "attn_k.weight", hp.kv_dim(), hp.n_embd);
        l.wv = b.matrix(p + "attn_v.weight", hp.kv_dim(), hp.n_embd);
        l.wo = b.matrix(p + "attn_output.weight", hp.n_embd, hp.q_dim());
        if (qkv_bias) {
            l.bq = b.vector(p + "attn_q.bias", hp.q_dim());
            l.bk = b.vector(p + "attn_k.bias", hp.kv_dim());
            l.bv = b.vector(p + "attn_v.bias", hp.kv_dim());
        }
        l.ffn_norm = b.vector(p + "ffn_norm.weight", hp.n_embd);
        l.w_gate = b.matrix(p + "ffn_gate.weight", hp.n_ff, hp.n_embd);
        l.w_up = b.matrix(p + "ffn_up.weight", hp.n_ff, hp.n_embd);
        l.w_down = b.matrix(p + "ffn_down.weight", hp.n_embd, hp.n_ff);
        if (hp.arch == "gemma3") {
            l.q_norm = b.vector(p + "attn_q_norm.weight", hp.head_dim);
            l.k_norm = b.vector(p + "attn_k_norm.weight", hp.head_dim);
            l.attn_post_norm = b.vector(p + "post_attention_norm.weight", hp.n_embd);
            l.ffn_post_norm = b.vector(p + "post_ffw_norm.weight", hp.n_embd);
        }
    }
    return m;
}

}  // namespace vela
