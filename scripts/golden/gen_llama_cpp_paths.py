#!/usr/bin/env python3
"""Writes tests/model/data/llama_cpp_paths.json: llama.cpp's logits on the default model along
the two paths the one-prefill golden (gen_llama_cpp_golden.py) does not cover:

- decode: for each greedy prompt of llama_cpp_golden.json, the prompt then llama.cpp's own 64
  greedy tokens fed one at a time (batch 1, llama.cpp's decode path); top-20 ids and logits of
  every step's row;
- chunked prefill: the first 128 tokens of each teacher-forced text evaluated in batches of 7
  (n_batch = n_ubatch = 7); top-20 ids and logits of every position.

Runs llama.cpp through `llama-cpp-python` (pip, 0.3.36, built from source). Nothing here is Vela.
Run from the repository root: python3 scripts/golden/gen_llama_cpp_paths.py
"""
import json
import pathlib
import sys

import numpy as np
from llama_cpp import Llama

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
DATA = ROOT / "tests/model/data"
TOP = 20
N_CHUNKED = 128


def top_k(row):
    ids = np.argsort(-row, kind="stable")[:TOP]
    return ids.tolist(), np.round(row[ids], 5).tolist()


def main():
    golden = json.loads((DATA / "llama_cpp_golden.json").read_text())
    out = {"model": MODEL.name, "decode": {}, "chunked": {}}

    llm = Llama(model_path=str(MODEL), n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=2,
                logits_all=True, verbose=False, seed=0)
    for name, g in golden["greedy"].items():
        llm.reset()
        llm.eval(g["tokens"])
        steps = []
        for tok in g["generated"]:
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            ids, logits = top_k(row)
            steps.append({"top_ids": ids, "top_logits": logits})
            llm.eval([tok])  # one token per decode call
        out["decode"][name] = {"tokens": g["tokens"], "generated": g["generated"], "steps": steps}
        print(f"decode {name}: {len(steps)} steps", file=sys.stderr)

    chunky = Llama(model_path=str(MODEL), n_ctx=1024, n_batch=7, n_ubatch=7, n_threads=2,
                   logits_all=True, verbose=False, seed=0)
    for name, tf in golden["teacher_forced"].items():
        tokens = tf["tokens"][:N_CHUNKED]
        chunky.reset()
        chunky.eval(tokens)
        rows = [top_k(np.array(chunky.scores[p], dtype=np.float32)) for p in range(len(tokens))]
        out["chunked"][name] = {"tokens": tokens, "top_ids": [r[0] for r in rows],
                                "top_logits": [r[1] for r in rows]}
        print(f"chunked {name}: {len(tokens)} positions", file=sys.stderr)

    dest = DATA / "llama_cpp_paths.json"
    dest.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {dest} ({dest.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
