#!/usr/bin/env python3
"""SentencePiece-style ("llama") tokenizer fixtures: a tokenizer-only GGUF and expected ids.

Source: Mistral-7B-v0.1's SentencePiece model (32000 pieces, byte fallback, Llama-2 layout), as
shipped in the PyPI package `mistral-common` (mistral_common/data/tokenizer.model.v1).
Independent reference: the `sentencepiece` library itself (pip `sentencepiece`) encoding the
committed corpus. Writes
    data/mistral_v1_tokenizer.gguf  tokens, scores, token types and special ids, laid out as
                                    llama.cpp's converter writes a Llama-2/Mistral GGUF
    data/mistral_v1_golden.json     per corpus string: `ids_plain` = sp.encode(text) (special
                                    texts are plain text to sentencepiece), `ids_special` =
                                    text split at "<s>"/"</s>" with each piece sp.encode()d (the
                                    dummy prefix is added after every special token, as llama.cpp
                                    and HF's legacy Llama tokenizer do), `decoded` = sp.decode.
Run: python3 tests/tokenizer/gen_spm_golden.py [path/to/tokenizer.model.v1]
     (default: the file inside an installed or unpacked mistral_common package)
"""
import json
import pathlib
import sys

import gguf
import sentencepiece as spm

HERE = pathlib.Path(__file__).parent
SPECIALS = ["<s>", "</s>"]


def find_model():
    if len(sys.argv) > 1:
        return pathlib.Path(sys.argv[1])
    import mistral_common  # noqa: imported only to locate its data folder
    return pathlib.Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"


def token_type(sp, i):
    if sp.is_unknown(i):
        return gguf.TokenType.UNKNOWN
    if sp.is_control(i):
        return gguf.TokenType.CONTROL
    if sp.is_byte(i):
        return gguf.TokenType.BYTE
    if sp.is_unused(i):
        return gguf.TokenType.UNUSED
    return gguf.TokenType.NORMAL


def write_gguf(sp, path):
    w = gguf.GGUFWriter(str(path), "llama")
    n = sp.get_piece_size()
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types([token_type(sp, i) for i in range(n)])
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path}")


def split_specials(text):
    """Leftmost-longest split at special-token texts: [(piece, is_special)]."""
    out, start, pos = [], 0, 0
    while pos < len(text):
        hit = next((s for s in sorted(SPECIALS, key=len, reverse=True) if text.startswith(s, pos)), None)
        if hit is None:
            pos += 1
            continue
        if pos > start:
            out.append((text[start:pos], False))
        out.append((hit, True))
        pos += len(hit)
        start = pos
    if start < len(text):
        out.append((text[start:], False))
    return out


def encode_special(sp, text):
    ids = []
    for piece, special in split_specials(text):
        ids += [sp.piece_to_id(piece)] if special else sp.encode(piece)
    return ids


def main():
    sp = spm.SentencePieceProcessor(model_file=str(find_model()))
    write_gguf(sp, HERE / "data" / "mistral_v1_tokenizer.gguf")
    with (HERE / "corpus.jsonl").open(encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f]
    cases = []
    for text in corpus:
        special = encode_special(sp, text)
        cases.append({"text": text, "ids_special": special, "ids_plain": sp.encode(text),
                      "decoded": sp.decode(special)})
    path = HERE / "data" / "mistral_v1_golden.json"
    path.write_text(json.dumps({"model": "mistral tokenizer.model.v1", "cases": cases},
                               ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
