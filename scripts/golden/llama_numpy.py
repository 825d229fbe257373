"""Float64 numpy forward of a Llama-family model (Llama, Qwen2): the exact-math reference for
Vela's model code. No activation quantisation, plain causal softmax attention.

`forward(W, hp, tokens)` takes dequantised weights by GGUF tensor name (2-D as [rows, cols]) and
a dict of hyper-parameters: n_layers, n_heads, n_kv_heads, eps, theta, rope_dim, neox,
linear_scale (1 = none).
"""
import numpy as np


def rope_tables(T, hd, hp):
    dim = hp.get("rope_dim", hd)
    freqs = hp["theta"] ** (-np.arange(0, dim, 2) / dim)
    ang = (np.arange(T)[:, None] / hp.get("linear_scale", 1.0)) * freqs[None, :]
    return np.cos(ang), np.sin(ang), dim


def apply_rope(x, cos, sin, dim, neox):
    """x [T, H, hd]; rotates the first `dim` dims of each head."""
    out = x.copy()
    c, s = cos[:, None, :], sin[:, None, :]
    if neox:  # pairs (i, i + dim/2)
        a, b = x[..., : dim // 2], x[..., dim // 2: dim]
        out[..., : dim // 2] = a * c - b * s
        out[..., dim // 2: dim] = a * s + b * c
    else:  # GGUF Llama layout: adjacent pairs (2i, 2i+1)
        a, b = x[..., 0:dim:2], x[..., 1:dim:2]
        out[..., 0:dim:2] = a * c - b * s
        out[..., 1:dim:2] = a * s + b * c
    return out


def forward(W, hp, tokens):
    emb = W["token_embd.weight"]
    n_embd = emb.shape[1]
    H, KV = hp["n_heads"], hp["n_kv_heads"]
    hd = n_embd // H
    T = len(tokens)
    cos, sin, dim = rope_tables(T, hd, hp)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + hp["eps"]) * w

    def linear(h, name):
        y = h @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    x = emb[tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(hp["n_layers"]):
        p = f"blk.{layer}."
        h = rms(x, W[p + "attn_norm.weight"])
        q = apply_rope(linear(h, p + "attn_q").reshape(T, H, hd), cos, sin, dim, hp["neox"])
        k = apply_rope(linear(h, p + "attn_k").reshape(T, KV, hd), cos, sin, dim, hp["neox"])
        v = linear(h, p + "attn_v").reshape(T, KV, hd)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
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
    return rms(x, W["output_norm.weight"]) @ out.T
