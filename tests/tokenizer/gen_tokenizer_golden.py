#!/usr/bin/env python3
"""Generates the expected token ids (data/*_golden.json) that test_tokenizer.cpp compares with.

Independent reference: Hugging Face `tokenizers` (pip package `tokenizers`, Rust). No
`transformers`/`torch` needed: the HF tokenizer is assembled from the GGUF's own vocabulary and
merges exactly as SmolLM2's published tokenizer.json declares it:
    model          BPE(vocab, merges), no unk token, no byte fallback
    pre_tokenizer  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)]
    decoder        ByteLevel
    added tokens   every CONTROL (3) token as special, every USER_DEFINED (4) token as non-special
(transformers' own GGUF converter is not used: it ignores `tokenizer.ggml.pre` and would drop the
Digits step.) For each corpus string it records the ids with special-token texts parsed
(`ids_special`) and with them treated as plain text (`ids_plain`, encode_special_tokens=True),
and HF's decode(skip_special_tokens=True) of ids_special.

Chat templates: jinja2 renders the real templates (SmolLM2's from the GGUF, Qwen2, Llama-3,
Llama-2) in the same sandboxed environment and options transformers' apply_chat_template uses
(trim_blocks, lstrip_blocks, loopcontrols); see chat_cases().

Run: python3 tests/tokenizer/gen_tokenizer_golden.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import pathlib
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent.parent


def read_corpus():
    with (HERE / "corpus.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def gguf_tokenizer_fields(path):
    r = GGUFReader(str(path))
    return {k: f.contents() for k, f in r.fields.items() if k.startswith("tokenizer.")}


def hf_smollm(fields):
    tokens = fields["tokenizer.ggml.tokens"]
    types = fields["tokenizer.ggml.token_type"]
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    added = [AddedToken(t, special=(ty == 3), normalized=False)
             for t, ty in zip(tokens, types) if ty in (3, 4)]
    tk.add_tokens(added)
    return tk


def encode_cases(tk, corpus):
    cases = []
    for text in corpus:
        tk.encode_special_tokens = False
        special = tk.encode(text, add_special_tokens=False).ids
        tk.encode_special_tokens = True
        plain = tk.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids_special": special, "ids_plain": plain,
                      "decoded": tk.decode(special, skip_special_tokens=True)})
    tk.encode_special_tokens = False
    return cases


QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Meta-Llama-3-8B-Instruct's template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Llama-2-chat's template.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "  Hi there \n"}, {"role": "assistant", "content": "Hello. "},
     {"role": "user", "content": "日本語で答えて 🙂"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "empty system"},
     {"role": "assistant", "content": "ok"}, {"role": "user", "content": "\tmulti\nline\n"}],
    [{"role": "user", "content": ""}],
]


def render(template, messages, add_generation_prompt, bos, eos):
    # As transformers' _compile_jinja_template.
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token=bos, eos_token=eos)


def chat_cases(smollm_template):
    families = [("smollm2", smollm_template, "<|im_start|>", "<|im_end|>"),
                ("qwen2", QWEN2_TEMPLATE, "", "<|im_end|>"),
                ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
                ("llama2", LLAMA2_TEMPLATE, "<s>", "</s>")]
    cases = []
    for name, template, bos, eos in families:
        for messages in CONVERSATIONS:
            for gen in (False, True):
                text = render(template, messages, gen, bos, eos)
                # Vela's rendering never starts with BOS: encode(add_bos) adds the token.
                if bos and name != "smollm2" and text.startswith(bos):
                    text = text[len(bos):]
                cases.append({"family": name, "template": template, "bos": bos, "eos": eos,
                              "messages": messages, "add_generation_prompt": gen, "expected": text})
    return cases


def write(name, obj):
    path = HERE / "data" / name
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main():
    model = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fields = gguf_tokenizer_fields(model)
    corpus = read_corpus()
    write("smollm2_golden.json", {"model": model.name, "cases": encode_cases(hf_smollm(fields), corpus)})
    write("chat_golden.json", {"cases": chat_cases(fields["tokenizer.chat_template"])})


if __name__ == "__main__":
    main()
