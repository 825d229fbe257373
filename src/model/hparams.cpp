#include "model/hparams.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "gguf/gguf_file.h"

namespace vela {
namespace {

// Architectures whose forward is the Llama block (RMSNorm, RoPE, GQA attention, SwiGLU).
// Qwen2 adds QKV biases and rotates NeoX-style; Gemma 3 adds norms around both sub-blocks,
// per-head query/key norms, GeGLU and local (sliding-window) layers.
constexpr std::array<std::string_view, 5> kSupported = {"llama", "mistral", "qwen2", "smollm",
                                                        "gemma3"};

bool uses_neox_rope(const std::string& arch) {
    return arch == "qwen2" || arch == "gemma3";
}

// Gemma 3's extras, with llama.cpp's defaults for keys the converter leaves out: every 6th layer
// (5, 11, ...) is global unless `attention.sliding_window_pattern` gives another period, local
// layers rotate with base 10000 unless `rope.freq_base_swa` says otherwise, and queries are
// scaled by 1/sqrt(head_dim), except in the 62-layer 27B model, which uses n_embd / n_heads
// (query_pre_attn_scalar of Google's configs). The GGUF converter has already added Gemma's 1 to
// every norm weight, so the norms are plain RMSNorms.
void read_gemma3(const gguf::File& f, HParams& h) {
    const std::string a = h.arch + ".";
    h.ffn_act = FfnActivation::GeluTanh;
    h.embd_scale = std::sqrt(static_cast<float>(h.n_embd));
    const int64_t query_scalar = h.n_layers == 62 ? h.n_embd / h.n_heads : h.head_dim;
    h.attn_scale = 1.0f / std::sqrt(static_cast<float>(query_scalar));
    if (const auto cap = f.get_float(a + "final_logit_softcapping"); cap && *cap != 0.0) {
        fail<FormatError>("{}: {}final_logit_softcapping {} is not supported", f.path(), a, *cap);
    }
    h.sliding_window = f.get_int(a + "attention.sliding_window").value_or(0);
    if (h.sliding_window < 0) {
        fail<FormatError>("{}: {}attention.sliding_window {} must be >= 0", f.path(), a,
                          h.sliding_window);
    }
    if (h.sliding_window == 0) return;  // every layer global
    const int64_t period = f.get_int(a + "attention.sliding_window_pattern").value_or(6);
    if (period < 1) {
        fail<FormatError>("{}: {}attention.sliding_window_pattern {} must be >= 1", f.path(), a,
                          period);
    }
    h.layer_is_local.resize(static_cast<size_t>(h.n_layers));
    for (int64_t il = 0; il < h.n_layers; ++il) {
        h.layer_is_local[static_cast<size_t>(il)] = period == 1 || il % period < period - 1;
    }
    h.rope_local = RopeParams{};
    h.rope_local.theta =
        static_cast<float>(f.get_float(a + "rope.freq_base_swa").value_or(10000.0));
    h.rope_local.dim = h.rope.dim;
    h.rope_local.neox = h.rope.neox;
    h.rope_local.attn_factor = h.rope.attn_factor;
}

RopeScaling parse_scaling(const std::string& path, const std::string& s) {
    if (s.empty() || s == "none") return RopeScaling::None;
    if (s == "linear") return RopeScaling::Linear;
    if (s == "yarn") return RopeScaling::Yarn;
    if (s == "llama3") return RopeScaling::Llama3;
    fail<FormatError>("{}: unsupported rope scaling type '{}'", path, s);
}

}  // namespace

HParams HParams::from_gguf(const gguf::File& f) {
    HParams h;
    h.arch = f.require_string("general.architecture");
    if (std::find(kSupported.begin(), kSupported.end(), h.arch) == kSupported.end()) {
        fail<FormatError>(
            "{}: unsupported architecture '{}' (supported: llama, mistral, qwen2, gemma3)",
            f.path(), h.arch);
    }
    const std::string a = h.arch + ".";
    h.n_layers = f.require_int(a + "block_count");
    h.n_embd = f.require_int(a + "embedding_length");
    h.n_ff = f.require_int(a + "feed_forward_length");
    h.n_heads = f.require_int(a + "attention.head_count");
    h.n_kv_heads = f.get_int(a + "attention.head_count_kv").value_or(h.n_heads);
    h.n_ctx_train = f.get_int(a + "context_length").value_or(2048);
    h.rms_eps =
        static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
    if (h.n_layers <= 0 || h.n_embd <= 0 || h.n_ff <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 ||
        h.n_heads % h.n_kv_heads != 0) {
        fail<FormatError>("{}: inconsistent sizes: layers {}, embedding {}, ffn {}, heads {}/{}",
                          f.path(), h.n_layers, h.n_embd, h.n_ff, h.n_heads, h.n_kv_heads);
    }
    h.head_dim = f.get_int(a + "attention.key_length").value_or(h.n_embd / h.n_heads);
    if (h.head_dim <= 0 || h.head_dim % 2 != 0 || h.head_dim > 512) {
        fail<FormatError>("{}: unsupported head dimension {}", f.path(), h.head_dim);
    }
    if (auto tokens = f.get_string_array("tokenizer.ggml.tokens")) {
        h.n_vocab = static_cast<int64_t>(tokens->size());
    }
    h.n_vocab = f.get_int(a + "vocab_size").value_or(h.n_vocab);
    if (h.n_vocab <= 0) fail<FormatError>("{}: vocabulary size unknown", f.path());

    RopeParams& r = h.rope;
    r.theta = static_cast<float>(f.get_float(a + "rope.freq_base").value_or(10000.0));
    r.dim = f.get_int(a + "rope.dimension_count").value_or(h.head_dim);
    if (r.dim <= 0 || r.dim > h.head_dim || r.dim % 2 != 0) {
        fail<FormatError>("{}: rope.dimension_count {} does not fit head dimension {}", f.path(),
                          r.dim, h.head_dim);
    }
    r.neox = uses_neox_rope(h.arch);
    const std::optional<std::string> type = f.get_string(a + "rope.scaling.type");
    r.scaling = parse_scaling(f.path(), type.value_or(""));
    r.factor = static_cast<float>(f.get_float(a + "rope.scaling.factor").value_or(1.0));
    // A factor without a type means linear scaling, as llama.cpp reads such files.
    if (!type && r.factor != 1.f) r.scaling = RopeScaling::Linear;
    if (auto scale = f.get_float(a + "rope.scale_linear")) {  // older files
        r.scaling = RopeScaling::Linear;
        r.factor = static_cast<float>(*scale);
    }
    if (!(r.factor > 0.f))
        fail<FormatError>("{}: rope scaling factor {} must be > 0", f.path(), r.factor);
    r.original_context =
        f.get_int(a + "rope.scaling.original_context_length").value_or(h.n_ctx_train);
    r.yarn_beta_fast =
        static_cast<float>(f.get_float(a + "rope.scaling.yarn_beta_fast").value_or(32.0));
    r.yarn_beta_slow =
        static_cast<float>(f.get_float(a + "rope.scaling.yarn_beta_slow").value_or(1.0));
    r.attn_factor =
        static_cast<float>(f.get_float(a + "rope.scaling.attn_factor").value_or(1.0));
    h.attn_scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim));
    if (h.arch == "gemma3") read_gemma3(f, h);
    return h;
}

}  // namespace vela
