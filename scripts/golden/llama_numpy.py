"""Float64 numpy forward of a Llama-family model (Llama, Qwen2): the exact-math reference for
Vela's model code. No activation quantisation, plain causal softmax attention.

`forward(W, hp, tokens)` takes dequantised weights by GGUF tensor name (2-D as [rows, cols]) and
a dict of hyper-parameters: n_layers, n_heads, n_kv_heads, eps, theta, rope_dim (partial rotary;
head_dim when absent), neox, linear_scale (1 = none), freq_factors (Llama-3 `rope_freqs`, one per
rotated pair), yarn (dict: factor, orig_ctx, beta_fast, beta_slow, attn_factor).

The RoPE variants are written from their sources, not from Vela's code:
- linear interpolation (Chen et al. 2023): angle = pos * theta_i / factor.
- Llama-3 frequency factors: the GGUF `rope_freqs.weight` tensor holds, per pair, the ratio by
  which Meta's llama3 scaling lowers that frequency; llama.cpp divides theta_i by it.
- YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension", sec. 3.2-3.4) with
  llama.cpp's discretisation of the ramp (see yarn_angles).
"""
import numpy as np


def yarn_angles(pos, freqs, dim, theta, y):
    """YaRN "NTK-by-parts" angles and the magnitude applied to cos/sin.

    Paper: a pair whose wavelength 2*pi/theta_i fits r_i = L / wavelength times into the original
    context L is extrapolated (kept) when r_i > beta_fast, interpolated (theta_i / s) when
    r_i < beta_slow, and mixed in between; attention logits are scaled by 1/t with
    sqrt(1/t) = 0.1 ln s + 1, which llama.cpp puts on both q and k by scaling cos/sin, times the
    GGUF `rope.scaling.attn_factor`. llama.cpp makes the ramp linear in the pair index rather than
    in r: it solves r_i = beta for the (fractional) pair index, floors the beta_fast end, ceils
    the beta_slow end, and clamps them to [0, dim - 1].
    """
    s, L = y["factor"], y["orig_ctx"]

    def pair_where_rotations_equal(beta):  # solve L * theta**(-2i/dim) / (2 pi) = beta for i
        return dim * np.log(L / (2 * np.pi * beta)) / (2 * np.log(theta))

    lo = max(0.0, np.floor(pair_where_rotations_equal(y["beta_fast"])))
    hi = min(dim - 1.0, np.ceil(pair_where_rotations_equal(y["beta_slow"])))
    i = np.arange(dim // 2)
    keep = 1.0 - np.clip((i - lo) / max(hi - lo, 1e-3), 0.0, 1.0)  # 1 = extrapolate
    per_pair = freqs * (keep + (1.0 - keep) / s)
    mscale = y["attn_factor"] * (1.0 + 0.1 * np.log(s))
    return pos[:, None] * per_pair[None, :], mscale


def rope_tables(T, hd, hp):
    dim = hp.get("rope_dim", hd)
    freqs = hp["theta"] ** (-np.arange(0, dim, 2) / dim)
    if "freq_factors" in hp:
        freqs = freqs / np.asarray(hp["freq_factors"], dtype=np.float64)
    pos = np.arange(T, dtype=np.float64)
    if "yarn" in hp:
        ang, mscale = yarn_angles(pos, freqs, dim, hp["theta"], hp["yarn"])
        return mscale * np.cos(ang), mscale * np.sin(ang), dim
    ang = (pos[:, None] / hp.get("linear_scale", 1.0)) * freqs[None, :]
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
