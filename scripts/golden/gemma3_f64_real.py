#!/usr/bin/env python3
"""Vela vs llama.cpp vs a float64 reference on the REAL Gemma 3 270M GGUF, teacher-forced.

What it computes
----------------
The text is tokenised once (llama.cpp's tokenizer through llama-cpp-python, BOS added) and cut
into chunks of --ctx tokens, the first token of every chunk replaced by BOS: exactly what
`vela perplexity` and llama-perplexity do. On the second half of each chunk (the positions those
tools score) we get the next-token distribution from
  * f64      : a float64 numpy forward of the GGUF, every tensor dequantised with the `gguf`
               package (the weights are the quantised ones; only the arithmetic is exact);
  * lcpp     : llama.cpp (llama-cpp-python, CPU), flash attention off;
  * lcpp_fa  : llama.cpp, flash attention on (its own noise floor);
  * vela     : read from the --kl-divergence-base file written by `vela perplexity`.
Every source is stored in that file's format (log-softmax quantised to 16 bits over the top 16
nats) so all of them are compared through the same rounding. For each pair (A vs REF) it prints
  same top-1   : share of positions where argmax A == argmax REF,
  |dlp(top)|   : mean |logprob_A(t) - logprob_REF(t)|, t = REF's top token,
  KL           : mean KL(REF || A) (as llama-perplexity --kl-divergence computes it).

Gemma 3 as implemented here (the GGUF keys `gemma3.*`, Google's/HF's definition, llama.cpp's
loader defaults for keys the converter leaves out):
  x = embd[tok] * sqrt(n_embd); per layer
    x += post_attention_norm(attn(attn_norm(x)));  x += post_ffw_norm(ffn(ffn_norm(x)))
  norms are RMSNorm with the stored weight (the converter already stored w + 1), eps from GGUF;
  q, k RMS-normalised per head (head_dim = attention.key_length) before NeoX RoPE;
  scores scaled by 1/sqrt(query_pre_attn_scalar) = 1/sqrt(head_dim) (270M: 256), no softcapping;
  layer il is global when il % 6 == 5 (RoPE base rope.freq_base = 1e6, full causal), otherwise
  local (RoPE base 10000, keys at distance < sliding_window = 512 only);
  ffn = down(gelu_tanh(gate(h)) * up(h)); logits = output_norm(x) @ token_embd^T (tied).

--quirks adds llama.cpp's CPU roundings to the f64 forward, to see which one explains a gap:
  gelu16 : GELU input and output rounded to fp16 (ggml's GGML_GELU_FP16 lookup table)
  q8act  : matmul inputs quantised as ggml does before quantised dot products (Q8_0 blocks of
           32 for Q5_0/Q8_0 weights, Q8_K blocks of 256 for Q4_K/Q6_K weights)
  kv16   : K, V (the f16 KV cache), Q and the softmax probabilities rounded to fp16 (ggml's
           non-flash path multiplies f16 K/V by fp16-converted operands)
  f32    : every matmul output and the residual stream rounded to float32: no engine quirk,
           just float32-sized noise, to measure how much this model amplifies rounding

How to run (2 cores: nice it; ~5 minutes for 2 chunks of 1024 with one quirk set):
  vela perplexity -m models/gemma-3-270m-q4_k_m.gguf -t 2 -c 1024 --chunks 2 \
      --kl-divergence-base /tmp/g3/vela.kld /usr/share/common-licenses/GPL-3
  nice python3 scripts/golden/gemma3_f64_real.py --vela-kld /tmp/g3/vela.kld \
      [--quirks gelu16,q8act,kv16] [--cache /tmp/g3]
--ctx/--chunks/the text are taken from the Vela file's header (its token ids are checked against
llama.cpp's tokenisation of the same text). Results per source are cached in --cache as .npy.
"""
import argparse
import gc
import os
import sys
import time

import numpy as np

import gguf

MODEL = "models/gemma-3-270m-q4_k_m.gguf"
TEXT = "/usr/share/common-licenses/GPL-3"


# ----------------------------------------------------------------------------------------------
# llama-perplexity's logits file (the --kl-divergence-base format)
# ----------------------------------------------------------------------------------------------

def quantise_logsoftmax(logits):
    """Rows of logits -> (scale, min_log_prob, q uint16) exactly as the file stores them."""
    logits = np.asarray(logits, dtype=np.float64)
    mx = logits.max(-1, keepdims=True)
    mn = np.maximum(logits.min(-1, keepdims=True), mx - 16.0)
    log_sum = np.log(np.exp(logits - mx).sum(-1, keepdims=True))
    scale = (mx - mn) / 65535.0
    q = np.where(logits > mn, np.rint((logits - mn) / scale), 0).astype(np.uint16)
    return scale[:, 0].astype(np.float32), (mn - mx - log_sum)[:, 0].astype(np.float32), q


def read_kld(path):
    """-> n_ctx, n_vocab, n_chunks, tokens (as stored), scale, min_log_prob, q (records)."""
    data = np.fromfile(path, dtype=np.uint8)
    assert data[:8].tobytes() == b"_logits_", "not a llama-perplexity logits file"
    n_ctx, n_vocab, n_chunks = np.frombuffer(data[8:20].tobytes(), dtype="<i4")
    at = 20 + 4 * n_chunks * n_ctx
    tokens = np.frombuffer(data[20:at].tobytes(), dtype="<i4")
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rec = np.frombuffer(data[at:].tobytes(), dtype="<u2").reshape(-1, nv)
    assert rec.shape[0] == n_chunks * (n_ctx - 1 - n_ctx // 2), rec.shape
    hdr = rec[:, :4].copy().view("<f4")
    return int(n_ctx), int(n_vocab), int(n_chunks), tokens, hdr[:, 0], hdr[:, 1], rec[:, 4:4 + n_vocab]


def logprobs(src):
    scale, minlp, q = src
    return q.astype(np.float64) * scale[:, None].astype(np.float64) + minlp[:, None]


# ----------------------------------------------------------------------------------------------
# float64 Gemma 3 forward
# ----------------------------------------------------------------------------------------------

def load_model(path):
    """Every tensor dequantised to float64 (2-D as [rows, cols]) plus the hyper-parameters."""
    r = gguf.GGUFReader(path)
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("gemma3.")}
    W, qtype = {}, {}
    for t in r.tensors:
        W[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)
        qtype[t.name] = t.tensor_type.name
    hd = int(f["gemma3.attention.key_length"])
    hp = dict(n_layers=int(f["gemma3.block_count"]), n_heads=int(f["gemma3.attention.head_count"]),
              n_kv_heads=int(f["gemma3.attention.head_count_kv"]), head_dim=hd,
              eps=float(f["gemma3.attention.layer_norm_rms_epsilon"]),
              theta=float(f["gemma3.rope.freq_base"]),
              theta_local=float(f.get("gemma3.rope.freq_base_swa", 10000.0)),
              window=int(f["gemma3.attention.sliding_window"]),
              pattern=int(f.get("gemma3.attention.sliding_window_pattern", 6)),
              scale=1.0 / np.sqrt(hd))  # query_pre_attn_scalar == head_dim for 270M
    return W, qtype, hp


def fp16(x):
    return x.astype(np.float16).astype(np.float64)


def q8_0(x):
    """ggml quantize_row_q8_0 round trip (blocks of 32, fp16 scale)."""
    b = x.reshape(*x.shape[:-1], -1, 32)
    d = np.abs(b).max(-1, keepdims=True) / 127.0
    q = np.rint(np.divide(b, d, out=np.zeros_like(b), where=d > 0))
    return (q * fp16(d.astype(np.float32).astype(np.float64))).reshape(x.shape)


def q8_k(x):
    """ggml quantize_row_q8_K round trip (blocks of 256, scale = signed max / -127, fp32)."""
    b = x.reshape(*x.shape[:-1], -1, 256).astype(np.float32)
    idx = np.abs(b).argmax(-1)[..., None]
    mx = np.take_along_axis(b, idx, -1)
    iscale = np.divide(np.float32(-127.0), mx, out=np.zeros_like(mx), where=mx != 0)
    q = np.minimum(127, np.rint(iscale * b))  # ggml's nearest_int rounds half to even as well
    d = np.divide(np.float32(1.0), iscale, out=np.zeros_like(iscale), where=iscale != 0)
    return (q * d).astype(np.float64).reshape(x.shape)


def rope_neox(x, pos, theta):
    """NeoX rotation: pairs (i, i + d/2), angle pos * theta^(-2i/d). x: [T, heads, d]."""
    d = x.shape[-1]
    ang = pos[:, None] * theta ** (-np.arange(0, d, 2) / d)[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :d // 2], x[..., d // 2:]
    return np.concatenate([a * c - b * s, a * s + b * c], -1)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def gelu_fp16_table(x):
    """ggml_vec_gelu_f32 with GGML_GELU_FP16: y = fp16(gelu(fp16(x))), x <= -10 -> 0, x >= 10 -> x."""
    y = fp16(gelu_tanh(fp16(x).astype(np.float32).astype(np.float64)))
    return np.where(x <= -10.0, 0.0, np.where(x >= 10.0, x, y))


def forward(W, qtype, hp, tokens, first, quirks=()):
    """Logits (float64) at positions first .. T-2 of a teacher-forced pass over `tokens`."""
    H, KV, hd = hp["n_heads"], hp["n_kv_heads"], hp["head_dim"]
    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)

    def mm(x, name):  # x @ W^T, with llama.cpp's activation quantisation when asked
        if "q8act" in quirks:
            t = qtype[name]
            if t in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
                x = q8_0(x)
            elif t.endswith("_K"):
                x = q8_k(x)
        y = x @ W[name].T
        return y.astype(np.float32).astype(np.float64) if "f32" in quirks else y

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + hp["eps"]) * w

    t, s = np.arange(T)[:, None], np.arange(T)[None, :]
    causal = np.where(s <= t, 0.0, -np.inf)
    windowed = np.where((s <= t) & (t - s < hp["window"]), 0.0, -np.inf)  # distance 512: masked
    f32 = (lambda z: z.astype(np.float32).astype(np.float64)) if "f32" in quirks else (lambda z: z)
    gelu = gelu_fp16_table if "gelu16" in quirks else gelu_tanh

    x = W["token_embd.weight"][tokens] * np.sqrt(W["token_embd.weight"].shape[1])
    for il in range(hp["n_layers"]):
        p = f"blk.{il}."
        local = il % hp["pattern"] != hp["pattern"] - 1
        h = rms(x, W[p + "attn_norm.weight"])
        q = rms(mm(h, p + "attn_q.weight").reshape(T, H, hd), W[p + "attn_q_norm.weight"])
        k = rms(mm(h, p + "attn_k.weight").reshape(T, KV, hd), W[p + "attn_k_norm.weight"])
        v = mm(h, p + "attn_v.weight").reshape(T, KV, hd)
        theta = hp["theta_local"] if local else hp["theta"]
        q, k = rope_neox(q, pos, theta) * hp["scale"], rope_neox(k, pos, theta)
        if "kv16" in quirks:
            q, k, v = fp16(q), fp16(k), fp16(v)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
        sc = np.einsum("thd,shd->hts", q, k) + (windowed if local else causal)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        if "kv16" in quirks:
            sc = fp16(sc)
        a = np.einsum("hts,shd->thd", sc, v).reshape(T, H * hd)
        x = f32(x + rms(mm(a, p + "attn_output.weight"), W[p + "post_attention_norm.weight"]))
        h = rms(x, W[p + "ffn_norm.weight"])
        ff = gelu(mm(h, p + "ffn_gate.weight")) * mm(h, p + "ffn_up.weight")
        x = f32(x + rms(mm(ff, p + "ffn_down.weight"), W[p + "post_ffw_norm.weight"]))
    return mm(rms(x[first:T - 1], W["output_norm.weight"]), "token_embd.weight")


# ----------------------------------------------------------------------------------------------
# llama.cpp through llama-cpp-python
# ----------------------------------------------------------------------------------------------

def llama_tokens(model, text):
    import llama_cpp
    tk = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    return tk.tokenize(text, add_bos=True, special=False)


def llama_cpp_scores(model, chunks, n_ctx, flash_attn, threads):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                          logits_all=True, n_threads=threads, n_threads_batch=threads,
                          flash_attn=flash_attn, verbose=False)
    first, out = n_ctx // 2, []
    for c in chunks:
        llm.reset()
        llm.eval(list(map(int, c)))
        out.append(quantise_logsoftmax(llm.scores[first:n_ctx - 1]))
    del llm
    gc.collect()
    return tuple(np.concatenate(z) for z in zip(*out))


# ----------------------------------------------------------------------------------------------

def compare(a, ref):
    """(same top-1, mean |dlogprob of ref's top token|, mean KL(ref || a))."""
    la, lr = logprobs(a), logprobs(ref)
    ta, tr = la.argmax(-1), lr.argmax(-1)
    rows = np.arange(len(tr))
    dlp = np.abs(la[rows, tr] - lr[rows, tr])
    kl = (np.exp(lr) * (lr - la)).sum(-1)
    return (ta == tr).mean(), dlp.mean(), kl.mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--vela-kld", required=True, help="vela perplexity --kl-divergence-base file")
    ap.add_argument("--quirks", default="", help="comma list of gelu16,q8act,kv16,f32 (extra f64 run)")
    ap.add_argument("--cache", default="/tmp/g3")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    t0 = time.time()

    n_ctx, n_vocab, n_chunks, vtok, *vela = read_kld(args.vela_kld)
    vela = tuple(vela)
    first = n_ctx // 2
    ltok = np.array(llama_tokens(args.model, open(args.text, "rb").read()), dtype=np.int32)
    n = n_chunks * n_ctx
    if not np.array_equal(ltok[:n], vtok):
        i = int(np.argmax(ltok[:n] != vtok))
        sys.exit(f"token ids differ at {i}: llama.cpp {ltok[i]} vela {vtok[i]}")
    print(f"{n_chunks} chunks of {n_ctx}: {n} token ids identical in Vela and llama.cpp; "
          f"{n_chunks * (n_ctx - 1 - first)} scored positions")
    chunks = ltok[:n].reshape(n_chunks, n_ctx).copy()
    chunks[:, 0] = ltok[0]  # BOS first, as both perplexity tools do

    def cached(name, fn):
        path = os.path.join(args.cache, f"{name}_c{n_ctx}x{n_chunks}.npz")
        if os.path.exists(path):
            z = np.load(path)
            return z["scale"], z["minlp"], z["q"]
        t = time.time()
        src = fn()
        np.savez(path, scale=src[0], minlp=src[1], q=src[2])
        print(f"  {name}: {time.time() - t:.0f} s", flush=True)
        return src

    src = {"vela": vela}
    src["lcpp"] = cached("lcpp", lambda: llama_cpp_scores(args.model, chunks, n_ctx, False, args.threads))
    src["lcpp_fa"] = cached("lcpp_fa", lambda: llama_cpp_scores(args.model, chunks, n_ctx, True, args.threads))

    runs = [("f64", ())]
    if args.quirks:
        runs.append(("f64+" + args.quirks.replace(",", "+"), tuple(args.quirks.split(","))))
    W = None
    for name, quirks in runs:
        def run(quirks=quirks):
            nonlocal W
            if W is None:
                W = load_model(args.model)
            parts = [quantise_logsoftmax(forward(W[0], W[1], W[2], c, first, quirks)) for c in chunks]
            return tuple(np.concatenate(z) for z in zip(*parts))
        src[name] = cached(name.replace("+", "_"), run)

    pairs = [("vela", "f64"), ("lcpp", "f64"), ("lcpp_fa", "f64"), ("vela", "lcpp"), ("lcpp_fa", "lcpp")]
    if args.quirks:
        q = runs[1][0]
        pairs += [("vela", q), ("lcpp", q), ("lcpp_fa", q), ("f64", q)]
    print(f"\n{'A':>10} vs {'REF':<24} {'same top-1':>10} {'|dlp(top)|':>11} {'KL':>10}")
    for a, r in pairs:
        top1, dlp, kl = compare(src[a], src[r])
        print(f"{a:>10} vs {r:<24} {100 * top1:9.2f}% {dlp:11.5f} {kl:10.6f}")
    print(f"\nwall {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
