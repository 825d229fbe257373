#!/usr/bin/env python3
"""Write a GGUF with a real model's tensor shapes and hyper-parameters and random weights.

For speed benchmarks where only the shapes matter (decode is bandwidth, prefill is matmul shape):
Llama-3-8B (`--shape llama3-8b`), Qwen2.5-7B (`--shape qwen25-7b`, Q/K/V biases), SmolLM2-135M
(`--shape smollm2-135m`), and tiny shapes for tests (`tiny`, `tiny-qwen2`). Weights are normal(0, 0.02) from a fixed seed, norms 1.0,
biases 0. The text such a model writes is noise; its perplexity means nothing.

The tokenizer is a synthetic SentencePiece ("llama") vocabulary that llama.cpp and Vela both
load: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, "▁" and the printable ASCII
characters, then filler pieces "▁t<N>" up to the model's vocabulary size. Text tokenises into
single characters, with bytes for anything else.

Weights are generated in chunks by a pool of threads (numpy releases the GIL), each chunk from its
own PCG64 stream seeded by (seed, tensor index, chunk index), so the file does not depend on the
thread count, and written in order straight to the file: memory stays at a few chunks. A weight is
a normal quantile picked by 16 random bits (see value_table): fast, and normal for all purposes
here.

    python3 scripts/make_shape_gguf.py --shape llama3-8b --type f16 /tmp/llama3-8b-shape.f16.gguf
    python3 scripts/make_shape_gguf.py --shape tiny --type f32 /tmp/tiny.gguf

Needs numpy and the `gguf` package (pip gguf 0.19).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

try:
    import gguf
except ImportError:  # pragma: no cover
    sys.exit("make_shape_gguf.py: needs the `gguf` Python package (pip install gguf==0.19.0)")


@dataclass(frozen=True)
class Shape:
    arch: str
    name: str
    n_embd: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    n_ff: int
    n_vocab: int
    rope_base: float
    rms_eps: float
    n_ctx: int
    qkv_bias: bool = False
    tied_output: bool = False  # no output.weight: the output projection is token_embd


SHAPES = {
    "llama3-8b": Shape("llama", "Llama-3-8B shape (random weights)", 4096, 32, 32, 8, 14336,
                       128256, 500000.0, 1e-5, 8192),
    "qwen25-7b": Shape("qwen2", "Qwen2.5-7B shape (random weights)", 3584, 28, 28, 4, 18944,
                       152064, 1000000.0, 1e-6, 32768, qkv_bias=True),
    # SmolLM2-135M's shape (the default model): launch-bound decode, 64-wide heads. 576-wide
    # rows take the 32-element types (Q4_0, Q4_1, Q8_0), not the K-quants.
    "smollm2-135m": Shape("llama", "SmolLM2-135M shape (random weights)", 576, 30, 9, 3, 1536,
                          49152, 100000.0, 1e-5, 8192, tied_output=True),
    # Test shapes: rows are multiples of 256 so every llama.cpp quantisation applies.
    "tiny": Shape("llama", "tiny llama shape (random weights)", 256, 2, 4, 2, 768, 1024,
                  10000.0, 1e-5, 2048),
    "tiny-qwen2": Shape("qwen2", "tiny qwen2 shape (random weights)", 256, 2, 4, 2, 768, 1024,
                        1000000.0, 1e-6, 2048, qkv_bias=True),
}

STD = 0.02
CHUNK = 1 << 23  # elements per generated chunk


def vocabulary(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """A SentencePiece vocabulary: specials, byte tokens, single characters, fillers."""
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [T.BYTE] * 256
    chars = ["\u2581"] + [chr(c) for c in range(0x21, 0x7F)]
    tokens += chars
    types += [T.NORMAL] * len(chars)
    if n_vocab < len(tokens):
        sys.exit(f"make_shape_gguf.py: vocabulary of {n_vocab} is smaller than the "
                 f"{len(tokens)} fixed tokens")
    n_fill = n_vocab - len(tokens)
    tokens += [f"\u2581t{i}" for i in range(n_fill)]
    types += [T.NORMAL] * n_fill
    # Scores as SentencePiece writes them: higher merges first; fixed tokens score 0.
    scores = [0.0] * (n_vocab - n_fill) + [-float(i) for i in range(n_fill)]
    return tokens, scores, [int(t) for t in types]


def tensor_list(s: Shape) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape [rows, cols], kind) in file order; kind: weight | norm | bias."""
    head_dim = s.n_embd // s.n_heads
    q_dim, kv_dim = s.n_heads * head_dim, s.n_kv_heads * head_dim
    out = [("token_embd.weight", (s.n_vocab, s.n_embd), "weight")]
    for i in range(s.n_layers):
        p = f"blk.{i}."
        out.append((p + "attn_norm.weight", (s.n_embd,), "norm"))
        out.append((p + "attn_q.weight", (q_dim, s.n_embd), "weight"))
        out.append((p + "attn_k.weight", (kv_dim, s.n_embd), "weight"))
        out.append((p + "attn_v.weight", (kv_dim, s.n_embd), "weight"))
        if s.qkv_bias:
            out.append((p + "attn_q.bias", (q_dim,), "bias"))
            out.append((p + "attn_k.bias", (kv_dim,), "bias"))
            out.append((p + "attn_v.bias", (kv_dim,), "bias"))
        out.append((p + "attn_output.weight", (s.n_embd, q_dim), "weight"))
        out.append((p + "ffn_norm.weight", (s.n_embd,), "norm"))
        out.append((p + "ffn_gate.weight", (s.n_ff, s.n_embd), "weight"))
        out.append((p + "ffn_up.weight", (s.n_ff, s.n_embd), "weight"))
        out.append((p + "ffn_down.weight", (s.n_embd, s.n_ff), "weight"))
    out.append(("output_norm.weight", (s.n_embd,), "norm"))
    if not s.tied_output:
        out.append(("output.weight", (s.n_vocab, s.n_embd), "weight"))
    return out


def value_table(wtype: str) -> np.ndarray:
    """The 65536 equiprobable quantiles of normal(0, STD), in the output type.

    A weight is table[16 random bits]: a normal sample rounded to one of 65536 levels (finer than
    f16's spacing over nearly all the range, tails cut at 4.3 sigma), four times faster than
    numpy's standard_normal plus a float16 cast.
    """
    nd = statistics.NormalDist(0.0, STD)
    q = np.array([nd.inv_cdf((i + 0.5) / 65536) for i in range(65536)], dtype=np.float64)
    if wtype == "f32":
        return q.astype(np.float32)
    if wtype == "f16":
        return q.astype(np.float16)
    u = q.astype(np.float32).view(np.uint32)  # bf16: round to nearest even
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def make_chunk(table: np.ndarray, seed: int, ti: int, ci: int, n: int) -> np.ndarray:
    bits = np.random.PCG64([seed, ti, ci]).random_raw((n + 3) // 4).view(np.uint16)
    return table[bits[:n].astype(np.intp)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="GGUF file to write")
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--type", choices=["f16", "bf16", "f32"], default="f16",
                    help="type of the 2-D weights (norms and biases are always f32)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--layers", type=int, help="override the layer count (for tests)")
    ap.add_argument("--vocab", type=int, help="override the vocabulary size (for tests)")
    ap.add_argument("--threads", type=int, default=min(16, os.cpu_count() or 1))
    args = ap.parse_args()

    s = SHAPES[args.shape]
    if args.layers is not None:
        s = replace(s, n_layers=args.layers, name=f"{s.name}, {args.layers} layers")
    if args.vocab is not None:
        s = replace(s, n_vocab=args.vocab)
    wtype = args.type
    elt = {"f32": 4, "f16": 2, "bf16": 2}[wtype]
    raw = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
           "bf16": gguf.GGMLQuantizationType.BF16}[wtype]
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16}[wtype]

    t0 = time.monotonic()
    w = gguf.GGUFWriter(args.output, s.arch)
    w.add_name(s.name)
    w.add_file_type(int(ftype))
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layers)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_heads)
    w.add_head_count_kv(s.n_kv_heads)
    w.add_rope_dimension_count(s.n_embd // s.n_heads)
    w.add_rope_freq_base(s.rope_base)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_vocab_size(s.n_vocab)
    tokens, scores, types = vocabulary(s.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    table = value_table(wtype)
    tensors = tensor_list(s)
    total = 0
    for name, shape, kind in tensors:
        n = int(np.prod(shape))
        if kind == "weight":
            w.add_tensor_info(name, shape, np.dtype(np.float16), n * elt, raw_dtype=raw)
            total += n * elt
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), n * 4)
            total += n * 4
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    align = w.data_alignment

    def pad_to_alignment() -> None:
        pad = -fout.tell() % align
        if pad:
            fout.write(b"\0" * pad)

    print(f"{args.output}: {args.shape} ({s.arch}), {s.n_layers} layers, {len(tensors)} tensors, "
          f"{wtype}, {total / 2**30:.2f} GiB of tensor data, {args.threads} threads", flush=True)
    written = 0
    last_report = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for ti, (name, shape, kind) in enumerate(tensors):
            n = int(np.prod(shape))
            pad_to_alignment()
            if kind != "weight":
                fill = 1.0 if kind == "norm" else 0.0
                np.full(n, fill, dtype=np.float32).tofile(fout)
                written += n * 4
                continue
            # Bounded look-ahead: at most 2 chunks per thread in flight.
            starts = list(range(0, n, CHUNK))
            pending: list = []
            nxt = 0
            for ci in range(len(starts)):
                while nxt < len(starts) and len(pending) < 2 * args.threads:
                    m = min(CHUNK, n - starts[nxt])
                    pending.append(pool.submit(make_chunk, table, args.seed, ti, nxt, m))
                    nxt += 1
                chunk = pending.pop(0).result()
                chunk.tofile(fout)
                written += chunk.nbytes
                del chunk
            now = time.monotonic()
            if now - last_report > 5:
                last_report = now
                print(f"  {written / 2**30:7.2f} / {total / 2**30:.2f} GiB, "
                      f"{written / 2**20 / (now - t0):.0f} MiB/s", flush=True)
    pad_to_alignment()
    size = fout.tell()
    w.close()
    dt = time.monotonic() - t0
    print(f"wrote {args.output}: {size / 2**30:.2f} GiB in {dt:.1f} s "
          f"({size / 2**20 / dt:.0f} MiB/s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
