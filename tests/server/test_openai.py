"""The official `openai` client against `vela serve`: completions, chat, streaming, n > 1,
stop strings, seeds, logprobs, auth and context limits."""
import math

import openai
import pytest

from conftest import CTX

GREEDY = dict(temperature=0, max_tokens=12)
MESSAGES = [{"role": "user", "content": "Name three colours."}]


def test_models_and_health(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["vela"]


def test_completion_greedy_is_deterministic(client):
    a = client.completions.create(model="vela", prompt="The capital of France is", **GREEDY)
    b = client.completions.create(model="vela", prompt="The capital of France is", **GREEDY)
    assert a.choices[0].text == b.choices[0].text
    assert a.choices[0].text.strip() != ""
    assert a.choices[0].finish_reason in ("stop", "length")
    assert a.usage.prompt_tokens > 0
    assert a.usage.completion_tokens <= 12
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens


def test_completion_token_prompt_and_echo(client):
    text = client.completions.create(model="vela", prompt="Hello", **GREEDY)
    ids = client.completions.create(model="vela", prompt=[19556], echo=True, **GREEDY)
    assert ids.choices[0].text.startswith("Hello")
    assert ids.usage.prompt_tokens == 1
    # The tokenizer adds no BOS for this model, so both prompts are the same single token.
    assert ids.choices[0].text == "Hello" + text.choices[0].text


def test_chat_stream_matches_non_stream(client):
    full = client.chat.completions.create(model="vela", messages=MESSAGES, **GREEDY)
    chunks = list(client.chat.completions.create(
        model="vela", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_completion_stream_without_usage(client):
    chunks = list(client.completions.create(model="vela", prompt="One, two,", stream=True, **GREEDY))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_n_choices_with_seed(client):
    kw = dict(model="vela", messages=MESSAGES, temperature=1.0, max_tokens=10, seed=1234)
    many = client.chat.completions.create(n=3, **kw)
    one = client.chat.completions.create(**kw)
    again = client.chat.completions.create(n=3, **kw)
    assert [c.index for c in many.choices] == [0, 1, 2]
    texts = [c.message.content for c in many.choices]
    assert texts == [c.message.content for c in again.choices]   # seed reproducibility
    assert texts[0] == one.choices[0].message.content          # choice 0 keeps the seed
    assert len(set(texts)) > 1                                  # other choices get other seeds
    assert 3 <= many.usage.completion_tokens <= 30
    assert many.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt is counted once


def test_different_seeds_differ(client):
    kw = dict(model="vela", prompt="Once upon a time", temperature=1.0, max_tokens=16)
    texts = {client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)}
    assert len(texts) > 1


def test_stop_string(client):
    full = client.completions.create(model="vela", prompt="1, 2, 3, 4, 5,", temperature=0,
                                     max_tokens=16).choices[0].text
    # A stop string from the middle of the greedy output: the output ends just before it.
    stop = full[len(full) // 2: len(full) // 2 + 2]
    assert stop.strip(), full
    cut = client.completions.create(model="vela", prompt="1, 2, 3, 4, 5,", temperature=0,
                                    max_tokens=16, stop=[stop, "never-appears"])
    assert cut.choices[0].text == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_bad_api_key(server):
    bad = openai.OpenAI(base_url=server.url("/v1"), api_key="wrong", timeout=30, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.completions.create(model="vela", prompt="hi", max_tokens=1)
    assert e.value.status_code == 401
    assert e.value.body["code"] == "invalid_api_key"


def test_context_overflow(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="vela", prompt="hello " * (CTX + 10), max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded"
    assert e.value.body["param"] == "prompt"


def test_max_tokens_clamped_to_context(client):
    r = client.completions.create(model="vela", prompt="Hi", max_tokens=10**15, temperature=0,
                                  stop=["\n", "."])
    assert r.choices[0].finish_reason in ("stop", "length")


def test_queue_full_is_429(server):
    # -np 4 plus --max-queue 4: a request for 9 choices can never be admitted.
    r = server.post("/v1/completions", {"prompt": "hi", "max_tokens": 1, "n": 9})
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_chat_logprobs_describe_the_greedy_tokens(client):
    r = client.chat.completions.create(model="vela", messages=MESSAGES, logprobs=True,
                                       top_logprobs=3, max_tokens=8, temperature=0)
    choice = r.choices[0]
    content = choice.logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        # Greedy: the sampled token is the most likely one.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-6)
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1 + 1e-5
        assert bytes(entry.bytes) == entry.token.encode()
    if choice.finish_reason == "length":
        assert b"".join(bytes(e.bytes) for e in content).decode() == choice.message.content


def test_completion_logprobs_and_stream_agree(client):
    args = dict(model="vela", prompt="The capital of France is", max_tokens=6, temperature=0,
                logprobs=2)
    r = client.completions.create(**args)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(x <= 0 for x in lp.token_logprobs)
    assert all(1 <= len(t) <= 2 for t in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)
    streamed = []
    for chunk in client.completions.create(stream=True, **args):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += chunk.choices[0].logprobs.token_logprobs
    assert streamed == pytest.approx(lp.token_logprobs, abs=1e-6)


def test_top_logprobs_without_logprobs_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="vela", messages=MESSAGES, top_logprobs=2, max_tokens=2)
    assert e.value.body["param"] == "top_logprobs"