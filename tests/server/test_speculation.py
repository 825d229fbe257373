"""`vela serve --spec ngram` (chains and token trees) and `--spec self`: greedy completions
equal the default server's, and /metrics reports the speculation counters."""
import os
import subprocess

import pytest

from conftest import _model_path, launch, shutdown

PROMPT = ("Repeat exactly: alpha beta gamma delta epsilon zeta eta theta. "
          "Repeat exactly: alpha beta gamma delta")


@pytest.mark.parametrize("args", [
    ["--spec", "ngram", "--spec-max-tokens", "4"],
    ["--spec", "ngram", "--spec-max-tokens", "8", "--spec-branches", "3"],
    ["--spec", "self", "--spec-max-tokens", "3", "--spec-window", "16", "--spec-max-cost", "1"],
])
def test_speculation_keeps_greedy_output(server, args):
    body = {"model": "vela", "prompt": PROMPT, "max_tokens": 32, "temperature": 0}
    want = server.post("/v1/completions", body).json()["choices"][0]["text"]
    spec = launch(args)
    try:
        got = spec.post("/v1/completions", body).json()["choices"][0]["text"]
        assert got == want
        m = spec.wait_idle()
        assert m["vela_spec_draft_tokens_total"] > 0
        assert 0 <= m["vela_spec_accepted_tokens_total"] <= m["vela_spec_draft_tokens_total"]
        assert m["vela_spec_mean_accepted_length"] >= 1
    finally:
        shutdown(spec)


def test_per_request_draft_limit(server):
    """llama-server's `speculative.n_max`: 0 turns drafting off for that request (same text, no
    drafted tokens), a value outside 0..64 is a 400 naming the field."""
    body = {"model": "vela", "prompt": PROMPT, "max_tokens": 32, "temperature": 0}
    want = server.post("/v1/completions", body).json()["choices"][0]["text"]
    spec = launch(["--spec", "ngram", "--spec-max-tokens", "4"])
    try:
        got = spec.post("/v1/completions", dict(body, **{"speculative.n_max": 0}))
        assert got.status_code == 200, got.text
        assert got.json()["choices"][0]["text"] == want
        assert spec.wait_idle()["vela_spec_draft_tokens_total"] == 0
        bad = spec.post("/v1/completions", dict(body, **{"speculative.n_max": 65}))
        assert bad.status_code == 400
        assert "speculative.n_max" in bad.text
    finally:
        shutdown(spec)


def test_max_batch_turns_drafting_off(server):
    """--spec-max-batch N: no drafting in a step with more than N running sequences (0: never),
    the text unchanged."""
    body = {"model": "vela", "prompt": PROMPT, "max_tokens": 32, "temperature": 0}
    want = server.post("/v1/completions", body).json()["choices"][0]["text"]
    spec = launch(["--spec", "ngram", "--spec-max-tokens", "4", "--spec-max-batch", "0"])
    try:
        got = spec.post("/v1/completions", body).json()["choices"][0]["text"]
        assert got == want
        assert spec.wait_idle()["vela_spec_draft_tokens_total"] == 0
    finally:
        shutdown(spec)


def test_spec_draft_without_model_is_refused():
    out = subprocess.run([os.environ["VELA_BIN"], "serve", "-m", _model_path(), "--spec", "draft"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "--spec draft needs --draft-model" in out.stderr
