"""`vela serve` with quantised KV formats, K and V chosen apart: the server answers, and /metrics
reports the KV bytes per token of the formats asked for (SmolLM2-135M: 30 layers x 3 KV heads x
head_dim 64; f16 rows are 128 bytes, q8 rows 64 + 2 fp16 scales = 68 bytes, q4 rows 32 + 2
fp16 (scale, min) pairs = 40 bytes)."""
import pytest

from conftest import launch, shutdown

ROWS = 30 * 3  # layers x KV heads


@pytest.mark.parametrize("args, row_bytes", [
    ([], 128 + 128),
    (["--kv-type", "q8"], 68 + 68),
    (["--kv-type-k", "q8"], 68 + 128),
    (["--kv-type", "q8", "--kv-type-v", "f32"], 68 + 256),
    (["--kv-type-k", "q8", "--kv-type-v", "q4"], 68 + 40),
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
