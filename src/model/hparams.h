#pragma once
// Hyper-parameters of a Llama-family model, read from GGUF metadata (`<arch>.*` keys).
#include <cstdint>
#include <string>

namespace vela {
namespace gguf {
class File;
}

enum class RopeScaling { None, Linear, Yarn, Llama3 };

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

    int64_t q_dim() const { return n_heads * head_dim; }
    int64_t kv_dim() const { return n_kv_heads * head_dim; }

    // Reads and validates the metadata; FormatError naming the key for anything missing,
    // inconsistent or unsupported (including an architecture outside the Llama family).
    static HParams from_gguf(const gguf::File& f);
};

}  // namespace vela
