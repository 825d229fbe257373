"""`vela serve` with quantised KV formats, K and V chosen apart: the server answers, and /metrics
reports the KV bytes per token of the formats asked for (SmolLM2-135M: 30 layers x 3 KV heads x
head_dim 64; f16 rows are 128 bytes, q8 rows 64 + 2 fp16 scales = 68 bytes, q4 V rows 32 + 2
fp16 (scale, min) pairs = 40 bytes, q4 K rows 32 + a block's 64 fp16 (scale, min) pairs / 16
tokens = 48 bytes)."""
import pytest

from conftest import launch, shutdown

ROWS = 30 * 3  # layers x KV heads


@pytest.mark.parametrize("args, row_bytes", [
    ([], 128 + 128),
    (["--kv-type", "q8"], 68 + 68),
    (["--kv-type-k", "q8"], 68 + 128),
    (["--kv-type", "q8", "--kv-type-v", "f32"], 68 + 256),
    (["--kv-type-k", "q8", "--kv-type-v", "q4"], 68 + 40),
    (["--kv-type", "q4"], 48 + 40),
    # Blocks and groups of 64: K 32 + 64 pairs / 64 tokens, V 32 + 1 pair: 4.5 bits each.
    (["--kv-type", "q4", "--kv-block-size", "64", "--kv-quant-group", "64"], 36 + 36),
    (["--kv-type", "q8", "--kv-quant-group", "128"], 66 + 66),
])
def test_kv_bytes_per_token_follow_the_formats(args, row_bytes):
    srv = launch(args)
    try:
        assert srv.metrics()["vela_kv_bytes_per_token"] == ROWS * row_bytes
        r = srv.post("/v1/completions", {"prompt": "The capital of France is", "max_tokens": 8,
                                         "temperature": 0})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"]
    finally:
        shutdown(srv)


@pytest.mark.parametrize("policy", ["sinks", "h2o"])
def test_kv_eviction_counts_evicted_tokens_and_frees_everything(policy):
    """A 64-token budget: a sequence holds at most 64 + one block (16) of KV after a step, and
    one more after the step that ends it (finished sequences are not cut), so of its prompt + 95
    computed tokens at least that many minus 81 are evicted; the reply is complete, /metrics
    counts the evicted tokens, and the pool drains."""
    srv = launch(["--kv-evict", policy, "--kv-budget", "64", "--kv-sinks", "4"])
    try:
        prompt = "Write a long story about a lighthouse keeper and the sea. " * 3
        r = srv.post("/v1/completions", {"prompt": prompt, "max_tokens": 96, "temperature": 0,
                                         "ignore_eos": True})
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        assert usage["completion_tokens"] == 96
        m = srv.wait_idle()
        assert m["vela_kv_evicted_tokens_total"] >= usage["prompt_tokens"] + 95 - 81
        assert m["vela_kv_blocks_used"] == 0
    finally:
        shutdown(srv)


@pytest.mark.parametrize("args, block_bytes", [
    (["--kv-type", "q8"], ROWS * 136 * 16),
    (["--kv-type", "q4", "--kv-block-size", "64", "--kv-quant-group", "64"], ROWS * 72 * 64),
])
def test_kv_pool_in_bytes_holds_as_many_blocks_as_fit(args, block_bytes):
    """--kv-cache-memory-bytes: the pool is as many whole blocks of the chosen formats as fit."""
    pool = 2 << 20
    srv = launch(args + ["--kv-cache-memory-bytes", "2MiB"])
    try:
        assert srv.metrics()["vela_kv_blocks_total"] == pool // block_bytes
        r = srv.post("/v1/completions", {"prompt": "The capital of France is", "max_tokens": 4,
                                         "temperature": 0})
        assert r.status_code == 200, r.text
    finally:
        shutdown(srv)
