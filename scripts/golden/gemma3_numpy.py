"""Float64 numpy forward of Gemma 3 (text): the exact-math reference for Vela's gemma3 path.

Written from Google's Gemma 3 description (gemma_pytorch, HF Gemma3ForCausalLM) and the facts
llama.cpp's converter and loader fix for GGUF files:
- embeddings are multiplied by sqrt(n_embd);
- every block is x += post_attn_norm(attn(attn_norm(x))); x += post_ffw_norm(ffn(ffn_norm(x)));
  Gemma's RMSNorm scales by (1 + w), and the GGUF converter stores w + 1, so here every norm is
  a plain RMSNorm with the stored weight;
- queries and keys are RMS-normalised per head (head_dim weights) before the rotary embedding,
  NeoX pair layout (i, i + head_dim/2); head_dim comes from `attention.key_length`;
- q.k is scaled by 1/sqrt(head_dim) (query_pre_attn_scalar = head_dim below 27B);
- local layers attend to keys at distance < sliding_window and rotate with base
  `rope.freq_base_swa` (10000 when absent); global layers see every earlier key and use
  `rope.freq_base`; layer il is global when il % pattern == pattern - 1;
- the feed-forward is GeGLU: gelu_tanh(gate) * up.

`forward(W, hp, tokens)`: W by GGUF tensor name (2-D as [rows, cols]); hp: n_layers, n_heads,
n_kv_heads, head_dim, eps, theta, theta_local, window, pattern.
"""
import numpy as np

from llama_numpy import apply_rope


def rope_tables(T, dim, theta):
    freqs = theta ** (-np.arange(0, dim, 2) / dim)
    ang = np.arange(T, dtype=np.float64)[:, None] * freqs[None, :]
    return np.cos(ang), np.sin(ang)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(W, hp, tokens):
    emb = W["token_embd.weight"]
    n_embd = emb.shape[1]
    H, KV, hd = hp["n_heads"], hp["n_kv_heads"], hp["head_dim"]
    T = len(tokens)
    tables = {False: rope_tables(T, hd, hp["theta"]), True: rope_tables(T, hd, hp["theta_local"])}

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + hp["eps"]) * w

    t, s = np.arange(T)[:, None], np.arange(T)[None, :]
    causal = np.where(s <= t, 0.0, -np.inf)
    windowed = np.where((s <= t) & (t - s < hp["window"]), 0.0, -np.inf)

    x = emb[tokens] * np.sqrt(n_embd)
    for layer in range(hp["n_layers"]):
        p = f"blk.{layer}."
        local = layer % hp["pattern"] < hp["pattern"] - 1
        cos, sin = tables[local]
        h = rms(x, W[p + "attn_norm.weight"])
        q = rms((h @ W[p + "attn_q.weight"].T).reshape(T, H, hd), W[p + "attn_q_norm.weight"])
        k = rms((h @ W[p + "attn_k.weight"].T).reshape(T, KV, hd), W[p + "attn_k_norm.weight"])
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, KV, hd)
        q, k = apply_rope(q, cos, sin, hd, True), apply_rope(k, cos, sin, hd, True)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
        sc = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + (windowed if local else causal)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", sc, v).reshape(T, H * hd)
        x = x + rms(a @ W[p + "attn_output.weight"].T, W[p + "post_attention_norm.weight"])
        h = rms(x, W[p + "ffn_norm.weight"])
        ff = gelu_tanh(h @ W[p + "ffn_gate.weight"].T) * (h @ W[p + "ffn_up.weight"].T)
        x = x + rms(ff @ W[p + "ffn_down.weight"].T, W[p + "post_ffw_norm.weight"])
    return rms(x, W["output_norm.weight"]) @ emb.T
