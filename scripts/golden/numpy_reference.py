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

import llama_numpy

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(model):
    """Dequantised float64 weights by tensor name and the hyper-parameters llama_numpy needs."""
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
    hp = {"n_layers": n_layers, "n_heads": n_heads, "n_kv_heads": n_kv, "eps": eps, "theta": theta,
          "neox": arch == "qwen2"}
    return W, hp


def main():
    tokens = json.loads(pathlib.Path(sys.argv[1]).read_text())
    model = sys.argv[3] if len(sys.argv) > 3 else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    W, hp = load(model)
    logits = llama_numpy.forward(W, hp, tokens)
    np.save(sys.argv[2], logits)


if __name__ == "__main__":
    main()
