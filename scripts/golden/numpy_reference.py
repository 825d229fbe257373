#!/usr/bin/env python3
"""Float64 numpy forward of a Llama-family GGUF (weights dequantised by the `gguf` package):
a second, independent reference for Vela's and llama.cpp's logits.

    numpy_reference.py TOKENS_JSON OUT_NPY [MODEL]

TOKENS_JSON is a JSON list of token ids; OUT_NPY receives the [n_tokens, n_vocab] logits.
Exact math: no activation quantisation, float64 everywhere, plain causal softmax attention.
"""
import json
import pathlib
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    tokens = json.loads(pathlib.Path(sys.argv[1]).read_text())
    model = sys.argv[3] if len(sys.argv) > 3 else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    r = GGUFReader(model)
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.")}
    arch = f["general.architecture"]
    n_layers = f[f"{arch}.block_count"]
    n_heads = f[f"{arch}.attention.head_count"]
    n_kv = f[f"{arch}.attention.head_count_kv"]
    eps = f[f"{arch}.attention.layer_norm_rms_epsilon"]
    theta = f[f"{arch}.rope.freq_base"]
    W = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64).reshape(
        [int(d) for d in reversed(t.shape)]) for t in r.tensors}
    emb = W["token_embd.weight"]
    n_embd = emb.shape[1]
    hd = n_embd // n_heads
    T = len(tokens)
    pos = np.arange(T)[:, None]
    freqs = theta ** (-np.arange(0, hd, 2) / hd)
    ang = pos * freqs[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x):  # x [T, H, hd], GGUF llama layout: adjacent pairs rotate
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    x = emb[tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(n_layers):
        p = f"blk.{l}."
        h = rms(x, W[p + "attn_norm.weight"])
        q = rope((h @ W[p + "attn_q.weight"].T).reshape(T, n_heads, hd))
        k = rope((h @ W[p + "attn_k.weight"].T).reshape(T, n_kv, hd))
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, n_kv, hd)
        g = n_heads // n_kv
        k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", s, v).reshape(T, n_embd)
        x = x + a @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"])
        gate = h @ W[p + "ffn_gate.weight"].T
        up = h @ W[p + "ffn_up.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ W[p + "ffn_down.weight"].T
    out = W.get("output.weight", emb)
    logits = rms(x, W["output_norm.weight"]) @ out.T
    np.save(sys.argv[2], logits)


if __name__ == "__main__":
    main()
