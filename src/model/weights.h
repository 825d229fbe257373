#pragma once
// The model's weights as views into the memory-mapped GGUF file: nothing is copied or
// dequantised up front; matmuls read the quantised rows in place.
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/hparams.h"

namespace vela {
namespace gguf {
class File;
}

struct LayerWeights {
    Weight attn_norm, wq, wk, wv, wo;
    Weight bq, bk, bv;  // Qwen2 only
    // bv repeated for each query head (q_dim values): added to the attention output instead of
    // to V when V is stored quantised (Model::layer). Owned by the Model, not the file.
    Weight bv_heads;
    Weight ffn_norm, w_gate, w_up, w_down;
    // Gemma 3 only: RMSNorm weights of each query/key head (head_dim) and of the attention and
    // feed-forward outputs before they join the residual (n_embd).
    Weight q_norm, k_norm, attn_post_norm, ffn_post_norm;
};

struct ModelWeights {
    Weight token_embd;  // [n_vocab rows of n_embd]
    Weight output_norm;
    Weight output;  // the LM head; token_embd when the embeddings are tied
    const float* rope_freq_factors = nullptr;  // Llama-3 scaling; null when absent
    std::vector<LayerWeights> layers;

    // Binds every tensor the forward needs and checks its shape and type; FormatError naming the
    // tensor otherwise.
    static ModelWeights bind(const gguf::File& f, const HParams& hp);

    // Calls f(Weight&) on every bound tensor (a tied LM head too: it is token_embd's view again).
    template <class F>
    void for_each(F&& f) {
        for (Weight* w : {&token_embd, &output_norm, &output}) f(*w);
        for (LayerWeights& l : layers) {
            for (Weight* w : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.bv_heads,
                              &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down, &l.q_norm, &l.k_norm,
                              &l.attn_post_norm, &l.ffn_post_norm}) {
                if (*w) f(*w);
            }
        }
    }
};

}  // namespace vela
