#pragma once
// Hyper-parameters of a Llama-family or Gemma 3 model, read from GGUF metadata (`<arch>.*` keys).
#include <cstdint>
#include <string>
#include <vector>

namespace vela {
namespace gguf {
class File;
}

enum class RopeScaling { None, Linear, Yarn, Llama3 };

// The feed-forward gate: SwiGLU (Llama family) or GeGLU with GELU's tanh approximation (Gemma).
enum class FfnActivation { Silu, GeluTanh };

struct RopeParams {
    float theta = 10000.f;
    int64_t dim = 0;    // rotated dimensions per head (<= head_dim)
    bool neox = false;  // pairs (i, i + dim/2) instead of (2i, 2i+1)
    RopeScaling scaling = RopeScaling::None;
    float factor = 1.f;  // context extension factor (linear/yarn/llama3)
    int64_t original_context = 0;
    float yarn_beta_fast = 32.f;
    float yarn_beta_slow = 1.f;
    float yarn_ext_factor = 1.f;
    float attn_factor = 1.f;  // cos/sin magnitude, every scaling type (YaRN multiplies it more)
    float llama3_low_freq_factor = 1.f;
    float llama3_high_freq_factor = 4.f;
};

struct HParams {
    std::string arch;  // "llama", "qwen2", ...
    int64_t n_layers = 0;
    int64_t n_embd = 0;
    int64_t n_heads = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t n_ff = 0;
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    float rms_eps = 1e-5f;
    RopeParams rope;

    // Gemma 3: layers marked local attend to their last `sliding_window` keys (a key at distance
    // >= window is out, as llama.cpp masks) and rotate with `rope_local` (its own base, no
    // context scaling); the others are global and use `rope`. Empty/0: every layer is global.
    std::vector<bool> layer_is_local;
    int64_t sliding_window = 0;
    RopeParams rope_local;
    float attn_scale = 0.f;  // multiplies q.k; 1/sqrt(head_dim) unless the architecture says
    float embd_scale = 1.f;  // token embeddings are multiplied by it (Gemma: sqrt(n_embd))
    FfnActivation ffn_act = FfnActivation::Silu;

    int64_t q_dim() const { return n_heads * head_dim; }
    int64_t kv_dim() const { return n_kv_heads * head_dim; }
    bool is_local(int64_t layer) const {
        return !layer_is_local.empty() && layer_is_local[static_cast<size_t>(layer)];
    }
    // The attention window of a layer: 0 (all keys) or sliding_window.
    int64_t window(int64_t layer) const { return is_local(layer) ? sliding_window : 0; }
    const RopeParams& rope_of(int64_t layer) const { return is_local(layer) ? rope_local : rope; }

    // Reads and validates the metadata; FormatError naming the key for anything missing,
    // inconsistent or unsupported (including an architecture other than the Llama family and
    // Gemma 3).
    static HParams from_gguf(const gguf::File& f);
};

}  // namespace vela
