"""`vela serve --tensor-parallel 3` on CPU ranks (SmolLM2-135M: 9 heads and 3 KV heads, so one KV
head a rank): the server forks two workers, answers, and its KV holds a third of the heads per
rank. A worker that dies stops the group without hanging the server: the request in flight and
every later one get a 503 naming the rank, /health reports the failure, and the server still
shuts down cleanly, leaving no worker behind."""
import os
import signal
import time

import requests

from conftest import launch, shutdown

ROWS_PER_RANK = 30 * 1  # layers x the rank's KV heads
F16_ROW = 128  # head_dim 64 in fp16


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] == "Z"  # a zombie: exited, awaiting its reaper
    except FileNotFoundError:
        return True


def test_tensor_parallel_serves_and_reports_a_dead_rank():
    srv = launch(["--tensor-parallel", "3"])
    workers = _children(srv.proc.pid)
    try:
        assert len(workers) == 2, workers
        body = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
        r = srv.post("/v1/completions", body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"]
        assert srv.metrics()["vela_kv_bytes_per_token"] == ROWS_PER_RANK * 2 * F16_ROW

        os.kill(workers[1], signal.SIGKILL)
        r = srv.post("/v1/completions", body)
        assert r.status_code == 503, r.text
        assert "killed by signal 9" in r.text, r.text
        health = requests.get(srv.url("/health"), timeout=10)
        assert health.status_code == 503
        assert health.json()["status"] == "failed"
        r = srv.post("/v1/completions", body)
        assert r.status_code == 503 and "engine stopped" in r.text, r.text
    finally:
        shutdown(srv)
    deadline = time.time() + 10
    while not all(_gone(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert all(_gone(w) for w in workers), workers
