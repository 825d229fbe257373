"""Starts one `vela serve` on a free loopback port for the whole test session.

The binary comes from $VELA_BIN (ctest passes it), the model from $VELA_MODEL_PATH or
<source>/models. Teardown sends SIGTERM and checks the graceful drain exits 0.
"""
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest
import requests

API_KEY = "test-key-123"
CTX = 1024


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_path():
    env = os.environ.get("VELA_MODEL_PATH")
    if env:
        return env
    root = pathlib.Path(__file__).resolve().parents[2]
    return str(root / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")


class Server:
    def __init__(self, port):
        self.port = port
        self.proc = None
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {API_KEY}"}

    def url(self, path):
        return self.base + path

    def post(self, path, body, timeout=60, **kw):
        return requests.post(self.url(path), json=body, headers=self.headers, timeout=timeout, **kw)

    def metrics(self):
        text = requests.get(self.url("/metrics"), headers=self.headers, timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_idle(self, timeout=30):
        """Polls /metrics until no sequence runs or waits and no KV block is used."""
        deadline = time.time() + timeout
        m = {}
        while time.time() < deadline:
            m = self.metrics()
            if m["vela_kv_blocks_used"] == 0 and m["vela_requests_running"] == 0 \
                    and m["vela_requests_waiting"] == 0:
                return m
            time.sleep(0.1)
        raise AssertionError(f"server not idle after {timeout}s: {m}")


def launch(extra_args=(), env=None, api_key=API_KEY):
    """Starts `vela serve` on a free port with the suite's defaults plus `extra_args`; returns the
    Server once /health answers. Stop it with shutdown()."""
    binary = os.environ.get("VELA_BIN")
    if not binary:
        pytest.fail("set VELA_BIN to the vela binary (ctest does)")
    model = _model_path()
    if not os.path.exists(model):
        pytest.fail(f"model {model} absent: scripts/setup.sh fetches it")
    port = _free_port()
    options = {"-m": model, "-t": "2", "-c": str(CTX), "--host": "127.0.0.1", "--port": str(port),
               "-np": "4", "--max-queue": "4", "--timeout": "60", "--max-body": str(1 << 20),
               "--drain-timeout": "5"}
    if api_key:
        options["--api-key"] = api_key
    extra = list(extra_args)
    options.update(zip(extra[0::2], extra[1::2]))  # flag, value pairs override the defaults
    cmd = [binary, "serve"] + [x for kv in options.items() for x in kv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **(env or {})))
    srv = Server(port)
    srv.proc = proc
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
        try:
            if requests.get(srv.url("/health"), timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.time() < deadline, "vela serve did not come up within 60 s"
        time.sleep(0.1)
    return srv


def shutdown(srv, timeout=30):
    """SIGTERM, then the graceful drain must exit 0. Returns the server's log."""
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        raise
    log = srv.proc.stdout.read().decode(errors="replace")
    assert rc == 0, log
    assert "stopped" in log, log
    return log


def rss_kb(srv):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="session")
def server():
    srv = launch()
    yield srv
    shutdown(srv)


@pytest.fixture(scope="session")
def client(server):
    import openai  # a missing client must fail the suite, not skip it
    return openai.OpenAI(base_url=server.url("/v1"), api_key=API_KEY, timeout=60, max_retries=0)
