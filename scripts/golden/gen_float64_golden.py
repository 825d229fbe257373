#!/usr/bin/env python3
"""Writes tests/model/data/float64_golden.json: the default model's exact-math logits (float64
numpy forward of the dequantised GGUF weights, numpy_reference.py / llama_numpy.py), for the
three teacher-forced texts of llama_cpp_golden.json (tokens from llama.cpp's tokenizer), as the
top-20 ids and logits at every position plus the probe ids' logits. The parity test compares
Vela's prefill, chunked prefill and one-token decode paths against them under every CPU ISA.

Run from the repository root (needs numpy and gguf from PyPI; generated with numpy 2.4.6 and
gguf 0.19.0): python3 scripts/golden/gen_float64_golden.py
"""
import json
import pathlib

import numpy as np

import llama_numpy
import numpy_reference

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests/model/data"
TOP = 20


def main():
    golden = json.loads((DATA / "llama_cpp_golden.json").read_text())
    W, hp = numpy_reference.load(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf")
    probe_ids = golden["probe_ids"]
    out = {"model": golden["model"], "probe_ids": probe_ids, "texts": {}}
    for name, tf in golden["teacher_forced"].items():
        tokens = tf["tokens"]
        logits = llama_numpy.forward(W, hp, tokens)
        top_ids = np.argsort(-logits, axis=1, kind="stable")[:, :TOP]
        out["texts"][name] = {
            "tokens": tokens,
            "top_ids": top_ids.tolist(),
            "top_logits": [[round(float(x), 5) for x in row[ids]] for row, ids in zip(logits, top_ids)],
            "probe_logits": [[round(float(x), 5) for x in row[probe_ids]] for row in logits],
            # Gap between the best two logits: a near tie may go either way under any rounding.
            "margins": [round(float(row[ids[0]] - row[ids[1]]), 5) for row, ids in zip(logits, top_ids)],
        }
        print(f"{name}: {len(tokens)} positions")
    (DATA / "float64_golden.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
