#!/usr/bin/env python3
"""Gemma 3 tokenizer fixture: llama.cpp's token ids for every string of the committed corpus.

Reference: llama.cpp's own tokenizer, through `llama-cpp-python` (pip, 0.3.36) loading only the
vocabulary of models/gemma-3-270m-q4_k_m.gguf (scripts/fetch_models.sh gemma3). The 262,144-token
vocabulary stays in the GGUF; the fixture holds only the expected ids. Writes
    data/gemma3_golden.json   per string: `ids_plain` = tokenize(special=False) (control-token
                              texts are plain text), `ids_special` = tokenize(special=True), both
                              without BOS; plus a few Gemma chat strings after the corpus.
Run: python3 tests/tokenizer/gen_gemma3_golden.py
"""
import json
import pathlib

from llama_cpp import Llama

HERE = pathlib.Path(__file__).parent
MODEL = HERE.parents[1] / "models/gemma-3-270m-q4_k_m.gguf"
GEMMA_CASES = [
    "<start_of_turn>user\nWhat is gravity?<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nHi<end_of_turn>",
    "text<end_of_turn>more<start_of_turn>",
    "  two spaces, then <start_of_turn> and\n\n\nnewlines\t\ttabs",
]


def main():
    llm = Llama(model_path=str(MODEL), vocab_only=True, verbose=False)
    texts = [json.loads(line) for line in (HERE / "corpus.jsonl").read_text().split("\n") if line]
    cases = []
    for text in texts + GEMMA_CASES:
        cases.append({
            "text": text,
            "ids_plain": llm.tokenize(text.encode(), add_bos=False, special=False),
            "ids_special": llm.tokenize(text.encode(), add_bos=False, special=True),
        })
    dest = HERE / "data" / "gemma3_golden.json"
    dest.write_text(json.dumps({"model": MODEL.name, "cases": cases}, ensure_ascii=False) + "\n")
    print(f"wrote {dest}: {len(cases)} cases")


if __name__ == "__main__":
    main()
