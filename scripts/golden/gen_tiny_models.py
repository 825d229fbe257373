#!/usr/bin/env python3
"""Writes tiny random Llama-family GGUFs and their float64 numpy logits (llama_numpy.py) to
tests/model/data/: the exact-math check of Vela's model code on the architecture variants the
default model does not exercise (Qwen2's NeoX rotary layout and QKV biases, an untied LM head,
linear RoPE scaling, F16 weights, MQA).

F32/F16 weights take Vela's float matmul path (no activation quantisation), so the comparison can
be tight.
"""
import json
import pathlib

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType

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


def make(name, v, rng):
    hd = N_EMBD // v["heads"]
    W = {}

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
    if v["scale"] != 1.0:
        w.add_string(f"{a}.rope.scaling.type", "linear")
        w.add_float32(f"{a}.rope.scaling.factor", v["scale"])
    for tname, t in W.items():
        w.add_tensor(tname, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tokens = rng.integers(0, N_VOCAB, N_TOKENS).tolist()
    hp = {"n_layers": N_LAYERS, "n_heads": v["heads"], "n_kv_heads": v["kv"], "eps": EPS,
          "theta": THETA, "neox": a == "qwen2", "linear_scale": v["scale"]}
    logits = llama_numpy.forward({k: t.astype(np.float64) for k, t in W.items()}, hp, tokens)
    return {"tokens": tokens, "logits": np.round(logits, 6).tolist()}


def main():
    rng = np.random.default_rng(2026)
    expected = {name: make(name, v, rng) for name, v in VARIANTS.items()}
    (OUT / "tiny_models_expected.json").write_text(json.dumps(expected) + "\n")
    print("wrote", ", ".join(f"{n}.gguf" for n in VARIANTS), "and tiny_models_expected.json")


if __name__ == "__main__":
    main()
