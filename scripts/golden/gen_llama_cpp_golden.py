#!/usr/bin/env python3
"""Generates tests/model/data/llama_cpp_golden.json: llama.cpp's logits and greedy output on the
default model, the independent reference for Vela's model tests.

Runs llama.cpp through `llama-cpp-python` (pip), pointed at a llama.cpp build of the same release
with LLAMA_CPP_LIB_PATH=<llama.cpp>/build/bin (or its own bundled build). Nothing here is Vela.

For each teacher-forced text (from Debian's base-files package, /usr/share/common-licenses) the
first N_TF tokens are evaluated in one batch with logits for every position; we store, per
position, the top-20 token ids with their logits plus the logits of 32 fixed random token ids
(full rows would be 60 MB). For each greedy prompt we store 64 greedily generated tokens and the
margin between llama.cpp's two best logits at each step.

The same texts are also run with llama.cpp's flash attention turned off: how far llama.cpp moves
from itself when only its attention arithmetic changes is the noise floor of 8-bit activation
quantisation, the yardstick for how close another engine can be expected to come.
"""
import json
import os
import pathlib
import sys

import numpy as np
from llama_cpp import Llama

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
N_TF = 300
TOP = 20
N_GREEDY = 64

TEXTS = {
    "gpl3": "/usr/share/common-licenses/GPL-3",
    "apache2": "/usr/share/common-licenses/Apache-2.0",
    "artistic": "/usr/share/common-licenses/Artistic",
}
GREEDY_PROMPTS = {
    "capital": ("The capital of France is", False),
    "code": ("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", False),
    "chat": ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
             "Face<|im_end|>\n<|im_start|>user\nWhat is gravity?<|im_end|>\n<|im_start|>assistant\n",
             True),
}


def load(flash_attn):
    return Llama(model_path=str(MODEL), n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=2,
                 logits_all=True, verbose=False, seed=0, flash_attn=flash_attn)


def main():
    llm = load(True)
    llm_no_fa = load(False)
    rng = np.random.default_rng(1234)
    probe_ids = sorted(rng.choice(llm.n_vocab(), size=32, replace=False).tolist())
    out = {"model": MODEL.name, "probe_ids": probe_ids, "teacher_forced": {}, "greedy": {}}

    for name, path in TEXTS.items():
        text = pathlib.Path(path).read_text()
        tokens = llm.tokenize(text.encode(), add_bos=False, special=False)[:N_TF]
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
        top = np.argsort(-logits, axis=1, kind="stable")[:, :TOP]
        llm_no_fa.reset()
        llm_no_fa.eval(tokens)
        no_fa = np.array(llm_no_fa.scores[: len(tokens)], dtype=np.float32)
        out["teacher_forced"][name] = {
            "source": path,
            "tokens": tokens,
            "top_ids": top.tolist(),
            "top_logits": np.round(np.take_along_axis(logits, top, 1), 5).tolist(),
            "probe_logits": np.round(logits[:, probe_ids], 5).tolist(),
            "no_fa_top1": no_fa.argmax(axis=1).tolist(),
            "no_fa_top_logits": np.round(np.take_along_axis(no_fa, top, 1), 5).tolist(),
        }
        print(f"{name}: {len(tokens)} tokens", file=sys.stderr)

    for name, (prompt, special) in GREEDY_PROMPTS.items():
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=special)
        llm.reset()
        llm.eval(tokens)
        generated, margins = [], []
        for _ in range(N_GREEDY):
            row = np.array(llm.scores[llm.n_tokens - 1])
            best2 = np.sort(row)[-2:]
            nxt = int(np.argmax(row))
            generated.append(nxt)
            margins.append(round(float(best2[1] - best2[0]), 5))
            llm.eval([nxt])
        out["greedy"][name] = {"prompt": prompt, "tokens": tokens, "generated": generated, "margins": margins,
                               "text": llm.detokenize(generated).decode("utf-8", "replace")}
        print(f"{name}: {out['greedy'][name]['text']!r}", file=sys.stderr)

    dest = ROOT / "tests/model/data/llama_cpp_golden.json"
    dest.write_text(json.dumps(out) + "\n")
    print(f"wrote {dest} ({dest.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
