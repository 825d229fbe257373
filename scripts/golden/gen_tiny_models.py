#!/usr/bin/env python3
"""Writes tiny random Llama-family GGUFs and their float64 numpy logits (llama_numpy.py) to
tests/model/data/: the exact-math check of Vela's model code on the architecture variants the
default model does not exercise (Qwen2's NeoX rotary layout and QKV biases, an untied LM head,
linear RoPE scaling, F16 weights, MQA).

F32/F16 weights take Vela's float matmul path (no activation quantisation), so the comparison can
be tight.

The RoPE variants (every scaling `hparams` accepts: YaRN with default and explicit betas and
attn_factor, Llama-3 `rope_freqs` with and without the "llama3" type string, partial rotary in
both pair layouts, the legacy `rope.scale_linear` key) go to tiny_rope_expected.json. They run
160 positions, well past YaRN's 64-token original context, so that interpolated and extrapolated
pairs both turn far enough to matter. Each draws from its own seeded generator so that adding
one never changes the bytes of another (or of the three original fixtures, which share one
generator in a fixed order).

Gemma 3 (gemma3_numpy.py) goes to tiny_gemma3_expected.json: pre and post norms, per-head
query/key norms, GeGLU, a head_dim (key_length) unlike n_embd / n_heads, MQA, three layers with
`sliding_window_pattern` 3 (two local layers with an 8-key window and the default local RoPE base
10000, one global layer with base 1e6), over 40 positions, so the window cuts most keys.

Generated with numpy 2.4.6 and gguf 0.19.0 (pip); the GGUF bytes depend on the gguf writer.
"""
import json
import pathlib
import zlib

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType

import gemma3_numpy
import llama_numpy

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/model/data"

VARIANTS = {
    # name: arch, weight dtype, heads, kv heads, tied, qkv bias, linear rope scale
    "tiny_llama": dict(arch="llama", dtype=np.float32, heads=4, kv=2, tied=True, bias=False, scale=1.0),
    "tiny_llama_mqa_f16_linear": dict(arch="llama", dtype=np.float16, heads=4, kv=1, tied=False,
                                      bias=False, scale=2.0),
    "tiny_qwen2": dict(arch="qwen2", dtype=np.float32, heads=4, kv=2, tied=False, bias=True, scale=1.0),
}
N_EMBD, N_FF, N_LAYERS, N_VOCAB, THETA, EPS = 64, 96, 2, 128, 10000.0, 1e-5
N_TOKENS = 40
N_ROPE_TOKENS = 160
ORIG_CTX = 64


def llama3_freq_factors(dim, factor=8.0, low=1.0, high=4.0, orig_ctx=ORIG_CTX):
    """What a converter stores as `rope_freqs.weight` for a Llama 3.1 `rope_scaling` of type
    "llama3" (Meta's reference apply_scaling): pairs whose wavelength is shorter than
    orig_ctx/high keep their frequency, those longer than orig_ctx/low are slowed by `factor`,
    and the band between is interpolated smoothly in orig_ctx/wavelength. Stored as the ratio
    old/new frequency, so 1 (kept) .. factor (slowed)."""
    freqs = THETA ** (-np.arange(0, dim, 2) / dim)
    wavelen = 2 * np.pi / freqs
    smooth = np.clip((orig_ctx / wavelen - low) / (high - low), 0.0, 1.0)
    new = (1 - smooth) * freqs / factor + smooth * freqs
    return (freqs / new).astype(np.float32)


YARN_DEFAULTS = dict(factor=4.0, orig_ctx=ORIG_CTX, beta_fast=32.0, beta_slow=1.0, attn_factor=1.0)

# name: arch, dtype, heads, kv, tied, bias as above; rope: what the GGUF says about rotation.
#   dim: rope.dimension_count (partial rotary when < head_dim 16); yarn: written keys (others
#   take llama.cpp's defaults, beta_fast 32, beta_slow 1, attn_factor 1); freq_factors:
#   rope_freqs.weight; type/factor: scaling type string and factor written without YaRN keys;
#   legacy_linear: the old `rope.scale_linear` key.
ROPE_VARIANTS = {
    # Default betas: low pair clamped to 0, ramp to pair 3 of 8, mscale 1 + 0.1 ln 4.
    "tiny_llama_yarn": dict(arch="llama", dtype=np.float32, heads=4, kv=2, tied=True, bias=False,
                            rope=dict(yarn=dict(factor=4.0, orig_ctx=ORIG_CTX))),
    # Explicit betas put the ramp strictly inside the 6 rotated pairs (pairs 1..3: the floor and
    # the ceil both bite, pair 2 is a half/half mix); attn_factor != 1; NeoX layout, 12 of 16
    # dims rotated, so the correction dims must use the rotated count, not head_dim.
    "tiny_qwen2_yarn_partial": dict(
        arch="qwen2", dtype=np.float32, heads=4, kv=2, tied=False, bias=True,
        rope=dict(dim=12, yarn=dict(factor=4.0, orig_ctx=ORIG_CTX, beta_fast=2.0, beta_slow=0.25,
                                    attn_factor=0.8))),
    # Llama 3.1 as converted by llama.cpp: no scaling type, factors only in rope_freqs.weight.
    "tiny_llama3_rope_freqs": dict(arch="llama", dtype=np.float32, heads=4, kv=2, tied=False,
                                   bias=False, rope=dict(freq_factors=llama3_freq_factors(16))),
    # Non-monotonic factors on a NeoX partial rotation: a factor applied to the wrong pair, or
    # only on one layout, changes the result.
    "tiny_qwen2_rope_freqs_partial": dict(
        arch="qwen2", dtype=np.float32, heads=4, kv=2, tied=False, bias=True,
        rope=dict(dim=8, freq_factors=np.array([1.0, 3.0, 8.0, 2.0], dtype=np.float32))),
    "tiny_llama_partial_rotary": dict(arch="llama", dtype=np.float32, heads=4, kv=2, tied=True,
                                      bias=False, rope=dict(dim=10)),
    # Type "llama3" with its factor: the factor is already inside rope_freqs.weight and must not
    # be applied a second time as linear interpolation.
    "tiny_llama3_scaling_type": dict(arch="llama", dtype=np.float32, heads=4, kv=2, tied=True,
                                     bias=False, rope=dict(type="llama3", factor=8.0,
                                                           freq_factors=llama3_freq_factors(16))),
    "tiny_llama_linear_legacy_key": dict(arch="llama", dtype=np.float32, heads=4, kv=2, tied=True,
                                         bias=False, rope=dict(legacy_linear=3.0)),
}


def make(name, v, rng, n_tokens=N_TOKENS):
    hd = N_EMBD // v["heads"]
    rope = v.get("rope", {})
    W = {}
    if "freq_factors" in rope:
        W["rope_freqs.weight"] = rope["freq_factors"]

    def mat(rows, cols, scale=0.15):
        return (rng.standard_normal((rows, cols)) * scale).astype(v["dtype"])

    W["token_embd.weight"] = mat(N_VOCAB, N_EMBD, 1.0)
    W["output_norm.weight"] = (1 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)
    if not v["tied"]:
        W["output.weight"] = mat(N_VOCAB, N_EMBD)
    for layer in range(N_LAYERS):
        p = f"blk.{layer}."
        W[p + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)
        W[p + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)
        W[p + "attn_q.weight"] = mat(N_EMBD, N_EMBD)
        W[p + "attn_k.weight"] = mat(v["kv"] * hd, N_EMBD)
        W[p + "attn_v.weight"] = mat(v["kv"] * hd, N_EMBD)
        W[p + "attn_output.weight"] = mat(N_EMBD, N_EMBD)
        if v["bias"]:
            W[p + "attn_q.bias"] = (0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)
            W[p + "attn_k.bias"] = (0.1 * rng.standard_normal(v["kv"] * hd)).astype(np.float32)
            W[p + "attn_v.bias"] = (0.1 * rng.standard_normal(v["kv"] * hd)).astype(np.float32)
        W[p + "ffn_gate.weight"] = mat(N_FF, N_EMBD)
        W[p + "ffn_up.weight"] = mat(N_FF, N_EMBD)
        W[p + "ffn_down.weight"] = mat(N_EMBD, N_FF)

    a = v["arch"]
    w = GGUFWriter(str(OUT / f"{name}.gguf"), a)
    w.add_block_count(N_LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(v["heads"])
    w.add_head_count_kv(v["kv"])
    w.add_rope_freq_base(THETA)
    w.add_layer_norm_rms_eps(EPS)
    w.add_vocab_size(N_VOCAB)
    if v.get("scale", 1.0) != 1.0:
        w.add_string(f"{a}.rope.scaling.type", "linear")
        w.add_float32(f"{a}.rope.scaling.factor", v["scale"])
    write_rope_keys(w, a, rope)
    for tname, t in W.items():
        w.add_tensor(tname, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tokens = rng.integers(0, N_VOCAB, n_tokens).tolist()
    hp = {"n_layers": N_LAYERS, "n_heads": v["heads"], "n_kv_heads": v["kv"], "eps": EPS,
          "theta": THETA, "neox": a == "qwen2", "linear_scale": v.get("scale", 1.0)}
    hp.update(reference_rope(rope))
    logits = llama_numpy.forward({k: t.astype(np.float64) for k, t in W.items()}, hp, tokens)
    return {"tokens": tokens, "logits": np.round(logits, 6).tolist()}


def write_rope_keys(w, a, rope):
    if "dim" in rope:
        w.add_rope_dimension_count(rope["dim"])
    if "yarn" in rope:
        y = rope["yarn"]
        w.add_string(f"{a}.rope.scaling.type", "yarn")
        w.add_float32(f"{a}.rope.scaling.factor", y["factor"])
        w.add_uint32(f"{a}.rope.scaling.original_context_length", y["orig_ctx"])
        for key in ("beta_fast", "beta_slow"):
            if key in y:
                w.add_float32(f"{a}.rope.scaling.yarn_{key}", y[key])
        if "attn_factor" in y:
            w.add_float32(f"{a}.rope.scaling.attn_factor", y["attn_factor"])
    if "type" in rope:
        w.add_string(f"{a}.rope.scaling.type", rope["type"])
        w.add_float32(f"{a}.rope.scaling.factor", rope["factor"])
        w.add_uint32(f"{a}.rope.scaling.original_context_length", ORIG_CTX)
    if "legacy_linear" in rope:
        w.add_float32(f"{a}.rope.scale_linear", rope["legacy_linear"])


def reference_rope(rope):
    """The hyper-parameters llama_numpy.forward needs for what write_rope_keys wrote. A "llama3"
    type contributes nothing beyond its rope_freqs tensor: Meta's factor is already inside it
    (llama.cpp's converter writes the tensor and no type at all)."""
    hp = {}
    if "dim" in rope:
        hp["rope_dim"] = rope["dim"]
    if "yarn" in rope:
        hp["yarn"] = {**YARN_DEFAULTS, **rope["yarn"]}
    if "freq_factors" in rope:
        hp["freq_factors"] = rope["freq_factors"].astype(np.float64)
    if "legacy_linear" in rope:
        hp["linear_scale"] = rope["legacy_linear"]
    return hp


GEMMA3 = dict(n_layers=3, n_heads=4, n_kv_heads=1, head_dim=32, eps=1e-6, theta=1e6,
              theta_local=10000.0, window=8, pattern=3)


def make_gemma3(rng, n_tokens=N_TOKENS):
    g = GEMMA3
    q_dim, kv_dim = g["n_heads"] * g["head_dim"], g["n_kv_heads"] * g["head_dim"]

    def mat(rows, cols, scale=0.15):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def norm(n):  # stored as the converter writes them: 1 + Gemma's w
        return (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    W = {"token_embd.weight": mat(N_VOCAB, N_EMBD, 0.2), "output_norm.weight": norm(N_EMBD)}
    for layer in range(g["n_layers"]):
        p = f"blk.{layer}."
        W[p + "attn_norm.weight"] = norm(N_EMBD)
        W[p + "attn_q.weight"] = mat(q_dim, N_EMBD)
        W[p + "attn_k.weight"] = mat(kv_dim, N_EMBD)
        W[p + "attn_v.weight"] = mat(kv_dim, N_EMBD)
        W[p + "attn_q_norm.weight"] = norm(g["head_dim"])
        W[p + "attn_k_norm.weight"] = norm(g["head_dim"])
        W[p + "attn_output.weight"] = mat(N_EMBD, q_dim)
        W[p + "post_attention_norm.weight"] = norm(N_EMBD)
        W[p + "ffn_norm.weight"] = norm(N_EMBD)
        W[p + "ffn_gate.weight"] = mat(N_FF, N_EMBD)
        W[p + "ffn_up.weight"] = mat(N_FF, N_EMBD)
        W[p + "ffn_down.weight"] = mat(N_EMBD, N_FF)
        W[p + "post_ffw_norm.weight"] = norm(N_EMBD)

    a = "gemma3"
    w = GGUFWriter(str(OUT / "tiny_gemma3.gguf"), a)
    w.add_block_count(g["n_layers"])
    w.add_context_length(256)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(g["n_heads"])
    w.add_head_count_kv(g["n_kv_heads"])
    w.add_key_length(g["head_dim"])
    w.add_value_length(g["head_dim"])
    w.add_rope_freq_base(g["theta"])
    w.add_layer_norm_rms_eps(g["eps"])
    w.add_vocab_size(N_VOCAB)
    w.add_uint32(f"{a}.attention.sliding_window", g["window"])
    w.add_uint32(f"{a}.attention.sliding_window_pattern", g["pattern"])
    for tname, t in W.items():
        w.add_tensor(tname, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tokens = rng.integers(0, N_VOCAB, n_tokens).tolist()
    logits = gemma3_numpy.forward({k: t.astype(np.float64) for k, t in W.items()}, g, tokens)
    return {"tokens": tokens, "logits": np.round(logits, 6).tolist()}


def main():
    rng = np.random.default_rng(2026)
    expected = {name: make(name, v, rng) for name, v in VARIANTS.items()}
    (OUT / "tiny_models_expected.json").write_text(json.dumps(expected) + "\n")
    rope_expected = {
        name: make(name, v, np.random.default_rng(zlib.crc32(name.encode())), N_ROPE_TOKENS)
        for name, v in ROPE_VARIANTS.items()
    }
    (OUT / "tiny_rope_expected.json").write_text(json.dumps(rope_expected) + "\n")
    gemma3 = {"tiny_gemma3": make_gemma3(np.random.default_rng(zlib.crc32(b"tiny_gemma3")))}
    (OUT / "tiny_gemma3_expected.json").write_text(json.dumps(gemma3) + "\n")
    names = [*VARIANTS, *ROPE_VARIANTS, *gemma3]
    print("wrote", ", ".join(f"{n}.gguf" for n in names), "and their expected logits")


if __name__ == "__main__":
    main()
