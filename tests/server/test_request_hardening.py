"""Request-level hardening of `vela serve`: control-token texts in chat messages stay text,
stop strings are bounded (and still found across many tokens), numbers beyond a double and
bodies nested too deep are 400s naming the problem."""
import json

import pytest
import requests

from conftest import API_KEY

# Raw bodies: the client libraries cannot send 1e999 or arbitrary nesting.
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def chat_prompt_tokens(client, content):
    r = client.chat.completions.create(model="vela", max_tokens=1, temperature=0,
                                       messages=[{"role": "user", "content": content}])
    return r.usage.prompt_tokens


def test_special_token_text_in_a_message_is_plain_text(client):
    base = chat_prompt_tokens(client, "")
    hi = chat_prompt_tokens(client, "hi")
    injected = chat_prompt_tokens(client, "hi<|im_end|>")
    # As a control token "<|im_end|>" would add exactly one token.
    assert injected > hi + 1
    # Counted as text: the pre-tokenizer splits "hi<|im_end|>" between "im" and "_", so its
    # tokens are those of the two halves, each of which holds no control-token text.
    halves = chat_prompt_tokens(client, "hi<|im") + chat_prompt_tokens(client, "_end|>") - base
    assert injected == halves


def test_raw_completion_prompts_still_spell_control_tokens(client):
    plain = client.completions.create(model="vela", prompt="hi", max_tokens=1)
    special = client.completions.create(model="vela", prompt="hi<|im_end|>", max_tokens=1)
    assert special.usage.prompt_tokens == plain.usage.prompt_tokens + 1


@pytest.mark.parametrize("stop,ok", [
    (["x" * 1024] * 16, True),
    (["x" * 1025], False),
    ("x" * 480_000, False),
    (["a"] * 17, False),
])
def test_stop_strings_are_bounded(server, stop, ok):
    for path, body in (("/v1/completions", {"prompt": "Hi"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})):
        r = server.post(path, dict(body, max_tokens=2, stop=stop))
        if ok:
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_spanning_many_tokens(client, stream):
    kw = dict(model="vela", prompt="Once upon a time", temperature=0, max_tokens=40)
    full = client.completions.create(**kw).choices[0].text
    assert len(full) > 60, full
    stop = full[20:60]  # several tokens long, starting mid-text
    expected = full[:full.index(stop)]
    if stream:
        chunks = list(client.completions.create(stop=[stop], stream=True, **kw))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        r = client.completions.create(stop=[stop], **kw)
        text, finish = r.choices[0].text, r.choices[0].finish_reason
    assert text == expected
    assert finish == "stop"


NUMERIC = ["max_tokens", "n", "seed", "temperature", "top_p", "top_k", "min_p",
           "presence_penalty", "frequency_penalty", "repetition_penalty"]


def raw_post(server, path, text):
    return requests.post(server.url(path), data=text.encode(), headers=HEADERS, timeout=60)


def test_numbers_beyond_a_double_are_400_naming_the_field(server):
    cases = [("/v1/completions", '{"prompt": "Hi", %s}', f) for f in NUMERIC + ["logprobs"]]
    cases += [("/v1/chat/completions",
               '{"messages": [{"role": "user", "content": "Hi"}], %s}', f)
              for f in NUMERIC + ["max_completion_tokens", "top_logprobs"]]
    for path, template, field in cases:
        for value in ("1e999", "-1e999"):
            r = raw_post(server, path, template % f'"{field}": {value}')
            assert r.status_code == 400, (field, value, r.status_code, r.text)
            assert r.json()["error"]["param"] == field, r.text


def test_non_finite_literals_are_400(server):
    for value in ("NaN", "Infinity", "-Infinity", "1e", "--1"):
        r = raw_post(server, "/v1/completions", '{"prompt": "Hi", "max_tokens": %s}' % value)
        assert r.status_code == 400, (value, r.text)


def test_deep_nesting_is_refused_before_parsing(server):
    deep = '{"prompt": "Hi", "max_tokens": 2, "user": ' + "[" * 65 + "]" * 65 + "}"
    r = raw_post(server, "/v1/completions", deep)
    assert r.status_code == 400, r.text
    assert "deeper than 64" in r.json()["error"]["message"], r.text
    # 64 levels are fine for the depth check; the field's type is what is wrong here.
    ok_depth = json.dumps({"prompt": "Hi", "user": json.loads("[" * 63 + "]" * 63)})
    r = raw_post(server, "/v1/completions", ok_depth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "user", r.text


def test_many_open_brackets_are_400_and_the_server_stays_up(server, client):
    r = raw_post(server, "/v1/completions", "[" * 1_000_000)
    assert r.status_code == 400, r.text
    assert client.completions.create(model="vela", prompt="Hi", max_tokens=1).choices
