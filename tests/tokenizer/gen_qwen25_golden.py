#!/usr/bin/env python3
"""Expected token ids of the real Qwen2.5-Coder tokenizer (151,936 tokens) on the committed corpus.

Primary reference: Hugging Face `tokenizers`, assembled from the GGUF's own vocabulary and merges
as Qwen2.5's published tokenizer.json declares it:
    model          BPE(vocab, merges), no unk token, no byte fallback
    pre_tokenizer  Sequence[Split(Regex(Qwen2's regex), "isolated"), ByteLevel(use_regex=False)]
    decoder        ByteLevel
    added tokens   every CONTROL (3) token as special, every USER_DEFINED (4) token as non-special
Second reference: llama.cpp's own tokenizer (pip `llama-cpp-python`, Llama(vocab_only=True)) on
the same GGUF. The two agree on every string except those holding "</s>": that text is an
ordinary token (128247) in Qwen's vocabulary, which llama.cpp alone turns into a control token
("control-looking token ... its type will be overridden", llama-vocab.cpp). Vela follows the
model's own tokenizer (HF); the script asserts that "</s>" explains every disagreement.
Writes data/qwen2.5_coder_golden.json in the format tokenizer_test_util.h reads.

Run: python3 tests/tokenizer/gen_qwen25_golden.py models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
"""
import json
import pathlib
import sys

import llama_cpp
from gen_bpe_regex_golden import QWEN2_REGEX
from gen_tokenizer_golden import encode_cases, gguf_tokenizer_fields, read_corpus
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

HERE = pathlib.Path(__file__).parent


def hf_qwen2(fields):
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(tokens) if types[i] == 1}
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (3, 4):
            tk.add_tokens([AddedToken(t, special=(ty == 3), normalized=False)])
            assert tk.token_to_id(t) == i, t
    return tk


def cross_check_with_llama_cpp(model, cases):
    llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    differing = []
    for c in cases:
        data = c["text"].encode("utf-8")
        if (llm.tokenize(data, add_bos=False, special=True) != c["ids_special"] or
                llm.tokenize(data, add_bos=False, special=False) != c["ids_plain"]):
            differing.append(c["text"])
    assert all("</s>" in t for t in differing), [t for t in differing if "</s>" not in t]
    print(f"llama.cpp agrees on {len(cases) - len(differing)}/{len(cases)} strings; "
          f"the other {len(differing)} all hold '</s>'")


def main():
    model = sys.argv[1]
    fields = gguf_tokenizer_fields(model)
    assert fields["tokenizer.ggml.pre"] == "qwen2", fields["tokenizer.ggml.pre"]
    cases = encode_cases(hf_qwen2(fields), read_corpus())
    cross_check_with_llama_cpp(model, cases)
    out = HERE / "data" / "qwen2.5_coder_golden.json"
    out.write_text(json.dumps({"model": pathlib.Path(model).name, "cases": cases},
                              ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
