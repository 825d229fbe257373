#!/usr/bin/env python3
"""Gemma chat-format fixture: llama.cpp's own rendering of conversations with its built-in "gemma"
template (llama_chat_apply_template through `llama-cpp-python` 0.3.36, pip), the reference for
Vela's Gemma chat format. Gemma 3 270M's GGUF carries no Jinja template, so llama.cpp's native
rendering is the one to match. Writes data/gemma3_chat_golden.json.
Run: python3 tests/tokenizer/gen_gemma3_chat_golden.py
"""
import ctypes
import json
import pathlib

import llama_cpp

HERE = pathlib.Path(__file__).parent
CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "  Be kind.\n"}, {"role": "user", "content": "  What is 2+2?  "},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?\n"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": " b "},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
    [{"role": "system", "content": "S1"}, {"role": "system", "content": "S2"},
     {"role": "user", "content": "Q"}],
    [{"role": "user", "content": "text with <end_of_turn> inside"}],
    [{"role": "user", "content": "ünïcödé ✨\t"}, {"role": "assistant", "content": "\nok"}],
]


def render(messages, add_generation_prompt):
    chat = (llama_cpp.llama_chat_message * len(messages))()
    keep = []
    for i, m in enumerate(messages):
        role, content = m["role"].encode(), m["content"].encode()
        keep += [role, content]
        chat[i].role, chat[i].content = role, content
    size = 1 << 16
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_chat_apply_template(b"gemma", chat, len(messages), add_generation_prompt,
                                            buf, size)
    assert 0 < n < size, n
    return buf.raw[:n].decode()


def main():
    cases = [{"messages": m, "add_generation_prompt": gen, "expected": render(m, gen)}
             for m in CONVERSATIONS for gen in (True, False)]
    dest = HERE / "data" / "gemma3_chat_golden.json"
    dest.write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {dest}: {len(cases)} cases")


if __name__ == "__main__":
    main()
