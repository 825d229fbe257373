"""`vela --tensor-parallel 3` on CPU ranks (SmolLM2-135M: 9 heads and 3 KV heads, so one KV
head a rank): the server forks two workers, answers, and its KV holds a third of the heads per
rank. A worker that dies stops the group without hanging the server: the request in flight and
every later one get a 503 naming the rank, /health reports the failure, and the server still
shuts down cleanly, leaving no worker behind. Ranks started apart, as mpirun starts them, meet
over TCP and give the same text as forked ranks."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import requests

from conftest import _model_path, launch, shutdown

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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GENERATE = ["generate", "--device", "cpu", "-t", "1", "--tensor-parallel", "3",
            "-p", "The capital of France is", "-n", "16", "--temperature", "0"]


def _forked_text():
    out = subprocess.run([os.environ["VELA_BIN"], *GENERATE, "-m", _model_path()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_ranks_started_apart_meet_over_tcp():
    """Three processes with mpirun's environment (OMPI_COMM_WORLD_*): rank 0 generates, the
    others serve its steps and exit 0; the text equals that of forked ranks (the same sums in
    the same order, bit for bit)."""
    master = f"127.0.0.1:{_free_port()}"
    procs = []
    for rank in (1, 2, 0):
        env = dict(os.environ, OMPI_COMM_WORLD_SIZE="3", OMPI_COMM_WORLD_RANK=str(rank),
                   VELA_TP_MASTER=master)
        procs.append(subprocess.Popen([os.environ["VELA_BIN"], *GENERATE, "-m", _model_path()],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[2][0] == _forked_text(), outs[2]
    assert outs[0][0] == "" and outs[1][0] == ""  # the workers print nothing


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="OpenMPI's mpirun is not installed")
def test_mpirun_launch():
    master = f"127.0.0.1:{_free_port()}"
    out = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3",
                          "-x", f"VELA_TP_MASTER={master}", os.environ["VELA_BIN"], *GENERATE,
                          "-m", _model_path()], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout == _forked_text()
