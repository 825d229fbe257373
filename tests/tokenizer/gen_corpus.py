#!/usr/bin/env python3
"""Writes corpus.jsonl: the strings the tokenizer tests compare against Hugging Face.

Deterministic (fixed seed). Hand-written cases cover the awkward corners one by one; random
compositions of fragments from many scripts and shapes of text fill the rest.
Run: python3 tests/tokenizer/gen_corpus.py  (then regenerate the golden files)."""
import json
import pathlib
import random

HAND = [
    "", " ", "  ", "\t", "\n", "\r\n", " \n", "\n\n\n", "   \t  \n  ", "a", "Hello", " Hello",
    "Hello world", "Hello, world!", "hello   world", "hello\tworld", "hello\n\nworld",
    "trailing space ", "trailing spaces   ", "  leading spaces", "\tTabbed\tline\t",
    "I'm", "you're", "they've", "he'd", "she'll", "it's", "don't", "I'M LOUD", "YOU'RE", "'s",
    "rock 'n' roll", "O'Neil's", "It'S", "we'LL", "'tis", "''", "'",
    "0", "7", "42", "123", "1234", "12345", "123456789", "3.14159", "1,000,000", "-273.15",
    "version 2.0.1", "2024-11-27T19:45:00Z", "0x7fffffff", "1e-9", "99 bottles", "a1b2c3",
    "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348",
    "日本語のテキスト", "中文分词测试，包括标点。", "한국어 문장입니다.", "Привет, мир!",
    "Ελληνικά γράμματα", "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ภาษาไทย", "Tiếng Việt có dấu",
    "Ünïcödé àccénts", "naïve café résumé", "straße", "ﬁ ligature", "Å Å", "e\u0301", "Ǆ ǅ ǆ",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "I ❤️ Unicode", "🤖🤖🤖", "emoji😀inside", "✓ ✗ → ← ∀ ∃ ∑ ∫",
    "\u00a0nbsp\u00a0", "ideographic\u3000space", "thin\u2009space", "zero\u200bwidth", "\u2028line sep",
    "\x00nul", "bell\x07", "\x1b[31mred\x1b[0m", "tab\x0bvt\x0cff", "\u0085nel",
    "def f(x):\n    return x * 2\n", "int main() {\n\treturn 0;\n}\n", "for (int i = 0; i < n; ++i) {}",
    "if (a && b || !c) { x += 1; }", "print(\"hello\")  # comment", "SELECT * FROM t WHERE id = 1;",
    "<div class=\"x\">text</div>", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\System32",
    "$HOME/.config", "a->b", "x => x + 1", "a::b::c", "#include <vector>", "    indented",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
    "text<|im_end|>more", "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "< |im_start| >",
    "<s>", "</s>", "<unk>", "[INST] hi [/INST]", "<<SYS>>\nsys\n<</SYS>>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<repo_name>vela<file_sep>main.cpp", "!!!", "???", "...", "—", "–", "…", "«quotes»", "“smart”",
    "a" * 300, " " * 50, "\n" * 20, "ab" * 100, "😀" * 30, "1" * 64, "-" * 80, "=" * 33,
    "Mixed 日本 text with 123 numbers and émojis 🎉!", "ЁЖЗ abc 中 9 🙂",
    "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "tHe QuIcK",
]

WORDS = ("the of and to in is that for it as with was on be by this are or from at an not have "
         "but which one all were we when your can said there use each she do how their if will "
         "up other about out many then them these so some her would make like him into time has "
         "look two more write go see number no way could people my than first water been call "
         "who oil its now find long down day did get come made may part tokenizer inference "
         "attention quantization transformer llama smol vela kernel cache paged").split()
SCRIPTS = ["日本語", "東京都", "你好世界", "机器学习", "한국어", "서울", "Москва", "данные", "Αθήνα",
           "العربية", "עברית", "हिन्दी", "தமிழ்", "ไทย", "Ελλάδα", "Việt", "Ñandú", "Øresund",
           "Zürich", "ĳssel", "ß", "ﬀ", "ｆｕｌｌｗｉｄｔｈ", "ｶﾀｶﾅ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛"]
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏿", "❤️", "🔥", "🚀", "👩‍💻", "🏳️‍🌈", "🇩🇪", "✨", "🙈", "☃", "⚡"]
PUNCT = [".", ",", "!", "?", ";", ":", "'", "\"", "(", ")", "[", "]", "{", "}", "-", "_", "/",
         "\\", "@", "#", "$", "%", "^", "&", "*", "+", "=", "<", ">", "|", "~", "`", "...", "!?"]
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\n ", "\r\n", "\t\t", " \t ",
          "\u00a0", "\u3000", "\u2009", "\n\t"]
CODE = ["def", "return", "self.x", "x[i]", "f(a, b)", "{}", "=>", "::", "==", "!=", "<=", "&&",
        "++i", "0x1F", "std::vector<int>", "#define", "/* c */", "// c", "None", "null", "true"]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<|eot_id|>",
           "<file_sep>", "<|im_start|>assistant\n"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll"]


def number(rng):
    n = rng.choice([1, 1, 2, 3, 4, 5, 7, 10, 16, 25])
    s = "".join(rng.choice("0123456789") for _ in range(n))
    if rng.random() < 0.2:
        s += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
    return s


def fragment(rng):
    kind = rng.random()
    if kind < 0.35:
        w = rng.choice(WORDS)
        return w.capitalize() if rng.random() < 0.2 else (w.upper() if rng.random() < 0.05 else w)
    if kind < 0.47:
        return rng.choice(SCRIPTS)
    if kind < 0.55:
        return rng.choice(EMOJI)
    if kind < 0.65:
        return number(rng)
    if kind < 0.75:
        return rng.choice(PUNCT)
    if kind < 0.83:
        return rng.choice(CODE)
    if kind < 0.89:
        return rng.choice(CONTRACTIONS)
    if kind < 0.93:
        return rng.choice(SPECIAL)
    return rng.choice(SPACES)


def composed(rng):
    parts = []
    for _ in range(rng.randint(1, 14)):
        parts.append(fragment(rng))
        r = rng.random()
        parts.append(" " if r < 0.6 else ("" if r < 0.8 else rng.choice(SPACES)))
    s = "".join(parts)
    return s.rstrip(" ") if rng.random() < 0.7 else s


def main():
    rng = random.Random(20241127)
    corpus = list(HAND)
    while len(corpus) < 1100:
        corpus.append(composed(rng))
    out = pathlib.Path(__file__).with_name("corpus.jsonl")
    with out.open("w", encoding="utf-8") as f:
        for s in corpus:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    print(f"wrote {len(corpus)} strings to {out}")


if __name__ == "__main__":
    main()
