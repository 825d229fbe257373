#!/usr/bin/env python3
"""Generates tests/model/data/gemma3_llama_cpp_golden.json: llama.cpp's logits and greedy output on
Gemma 3 270M (models/gemma-3-270m-q4_k_m.gguf, scripts/fetch_models.sh gemma3), the independent
reference for Vela's Gemma 3 forward. Runs llama.cpp through `llama-cpp-python` (pip, 0.3.36);
nothing here is Vela.

Teacher-forced texts (Debian's /usr/share/common-licenses), BOS first as Gemma needs: one of 128
tokens and one of 700, longer than the 512-token sliding window of the local layers, so a wrong
window shows from position 512 on. Per position: the top-20 token ids and logits, and the same
with llama.cpp's flash attention off (llama.cpp's distance from itself, the noise floor). Greedy
prompts: 32 greedily generated tokens and the margin between the two best logits at each step.
"""
import json
import pathlib
import sys

import numpy as np
from llama_cpp import Llama

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models/gemma-3-270m-q4_k_m.gguf"
TOP = 20
N_GREEDY = 32

TEXTS = {  # name: (file, tokens incl. BOS)
    "apache2": ("/usr/share/common-licenses/Apache-2.0", 128),
    "gpl3": ("/usr/share/common-licenses/GPL-3", 700),
}
GREEDY_PROMPTS = {  # name: (text, parse special tokens); the first two are confident runs
    "count": ("1, 2, 3, 4, 5, 6, 7, 8,", False),
    "license": ("GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n\nCopyright (C) 2007 Free "
                "Software Foundation, Inc.", False),
    "capital": ("The capital of France is", False),
    "chat": ("<start_of_turn>user\nWhat is gravity?<end_of_turn>\n<start_of_turn>model\n", True),
}


def load(flash_attn):
    return Llama(model_path=str(MODEL), n_ctx=1024, n_batch=1024, n_ubatch=1024, n_threads=2,
                 logits_all=True, verbose=False, seed=0, flash_attn=flash_attn)


def main():
    llm, llm_no_fa = load(True), load(False)
    out = {"model": MODEL.name, "teacher_forced": {}, "greedy": {}}
    for name, (path, n) in TEXTS.items():
        text = pathlib.Path(path).read_text()
        tokens = llm.tokenize(text.encode(), add_bos=True, special=False)[:n]
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
            "no_fa_top1": no_fa.argmax(axis=1).tolist(),
            "no_fa_top_logits": np.round(np.take_along_axis(no_fa, top, 1), 5).tolist(),
        }
        print(f"{name}: {len(tokens)} tokens", file=sys.stderr)

    for name, (prompt, special) in GREEDY_PROMPTS.items():
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=special)
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
        out["greedy"][name] = {"prompt": prompt, "special": special, "tokens": tokens,
                               "generated": generated, "margins": margins,
                               "text": llm.detokenize(generated).decode("utf-8", "replace")}
        print(f"{name}: {out['greedy'][name]['text']!r}", file=sys.stderr)

    dest = ROOT / "tests/model/data/gemma3_llama_cpp_golden.json"
    dest.write_text(json.dumps(out) + "\n")
    print(f"wrote {dest} ({dest.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
