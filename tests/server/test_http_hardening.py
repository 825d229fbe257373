"""The server under pressure and attack: each case here stopped or degraded the server before
(slowloris, unbounded bodies, hang-ups not noticed, lenient parsing, a slow keep-alive path, an
abrupt drain, a scheduler deadlock under KV pressure) and must now be answered cleanly."""
import json
import re
import socket
import statistics
import threading
import time

import pytest
import requests

from conftest import API_KEY, launch, rss_kb, shutdown

GOOD = {"prompt": "Hello", "max_tokens": 2, "temperature": 0}


def _head(method, path, extra="", length=None):
    h = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
    if length is not None:
        h += f"Content-Length: {length}\r\n"
    return (h + extra + "\r\n").encode()


def _exchange(port, data, timeout=10):
    """Sends raw bytes, reads until the server closes; returns (bytes, seconds)."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                part = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not part:
                break
            out += part
    return out, time.time() - t0


def _status(raw):
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize("extra,body,status", [
    ("Content-Length: 2\r\nContent-Length: 2\r\n", b"{}", 400),
    ("Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", 400),
    ("Content-Length: +2\r\n", b"{}", 400),
    ("Content-Length: -1\r\n", b"", 400),
    ("Content-Length: 99999999999999999999999999\r\n", b"", 400),
    ("Content-Length: 9999999999\r\n", b"", 413),
    ("Content-Encoding: gzip\r\nContent-Length: 2\r\n", b"{}", 415),
    ("Transfer-Encoding: identity\r\n", b"", 501),
    ("X-Folded: a\r\n b\r\nContent-Length: 2\r\n", b"{}", 400),
])
def test_ambiguous_framing_is_refused_at_once(server, extra, body, status):
    raw, seconds = _exchange(server.port, _head("POST", "/v1/completions", extra) + body)
    assert _status(raw) == status, raw[:300]
    assert b"Connection: close" in raw
    assert seconds < 2  # no wait for a body that is never coming
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]["message"]


def test_nul_in_authorization_is_refused(server):
    head = (f"GET /v1/models HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {API_KEY}\x00junk\r\n"
            "\r\n").encode()
    raw, _ = _exchange(server.port, head)
    assert _status(raw) == 400
    # A key that is a prefix of the real one, or longer, is refused (compare without early exit).
    for key in [API_KEY[:-1], API_KEY + "x", ""]:
        r = requests.get(server.url("/v1/models"), headers={"Authorization": f"Bearer {key}"},
                         timeout=10)
        assert r.status_code == 401


def test_pipelined_requests_are_all_answered_in_order(server):
    body = json.dumps(GOOD).encode()
    data = (_head("GET", "/health") + _head("GET", "/v1/models") +
            _head("POST", "/v1/completions", length=len(body)) + body +
            _head("GET", "/nothing", "Connection: close\r\n"))
    raw, _ = _exchange(server.port, data)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
    assert statuses == [200, 200, 200, 404], raw[:2000]


def test_chunked_body_over_the_limit_is_413_without_buffering(server):
    before = rss_kb(server)
    head = _head("POST", "/v1/completions", "Transfer-Encoding: chunked\r\n")
    chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"  # 1 MiB chunks, 200 of them
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head)
        sent = 0
        try:
            for _ in range(200):
                s.sendall(chunk)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = s.recv(65536)
    assert _status(raw) == 413, raw[:200]
    assert rss_kb(server) - before < 64 * 1024


def test_gzip_body_is_refused_not_inflated(server):
    import gzip
    bomb = gzip.compress(b" " * (50 << 20))
    r = requests.post(server.url("/v1/completions"), data=bomb, timeout=10,
                      headers={"Authorization": f"Bearer {API_KEY}", "Content-Encoding": "gzip"})
    assert r.status_code == 415


def test_deeply_nested_json_is_cheap_to_refuse(server):
    before = rss_kb(server)
    for _ in range(5):
        r = server.post("/v1/completions", None, data=b"[" * ((1 << 20) - 16))
        assert r.status_code == 400, r.text[:200]
    assert rss_kb(server) - before < 32 * 1024


def test_keep_alive_round_trip_is_fast(server):
    """A small response on a kept-alive connection once took ~42 ms (Nagle + delayed ACK)."""
    s = requests.Session()
    times = []
    for _ in range(100):
        t0 = time.perf_counter()
        assert s.get(server.url("/health"), timeout=5).status_code == 200
        times.append(time.perf_counter() - t0)
    # The benchmark (docs/benchmarks-server.md) measures the real figure; this only catches the
    # 40 ms class of regression with room for a loaded CI machine.
    assert statistics.median(times) < 0.010, statistics.median(times)


def _long_body(stream):
    return {"prompt": "Once upon a time", "max_tokens": 900, "temperature": 0,
            "ignore_eos": True, "stream": stream}


def _wait(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("stream", [False, True])
def test_hang_up_cancels_running_request_at_once(server, stream):
    body = json.dumps(_long_body(stream)).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(_head("POST", "/v1/completions", length=len(body)) + body)
    assert _wait(lambda: server.metrics()["vela_kv_blocks_used"] > 0, 10)
    s.close()
    # 900 tokens take far longer than this: the hang-up itself must end the request.
    m = server.wait_idle(timeout=3)
    assert m["vela_kv_blocks_used"] == 0


def test_hang_up_of_a_queued_request_is_noticed(server):
    """-np 4: four long requests run, a fifth waits; its client leaves before any token."""
    runners = []
    for _ in range(4):
        body = json.dumps(_long_body(True)).encode()
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(_head("POST", "/v1/completions", length=len(body)) + body)
        runners.append(s)
    assert _wait(lambda: server.metrics()["vela_requests_running"] == 4, 10)
    body = json.dumps(_long_body(False)).encode()
    queued = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    queued.sendall(_head("POST", "/v1/completions", length=len(body)) + body)
    assert _wait(lambda: server.metrics()["vela_requests_waiting"] == 1, 10)
    queued.close()
    assert _wait(lambda: server.metrics()["vela_requests_waiting"] == 0, 2)
    for s in runners:
        s.close()
    server.wait_idle(timeout=5)


@pytest.fixture(scope="module")
def tight_server():
    """Short header and request timeouts and few connections, to see slow clients cut and
    evicted and long requests timed out."""
    srv = launch(["--header-timeout", "2", "--max-connections", "64", "--timeout", "2"])
    yield srv
    shutdown(srv)


def test_slowloris_does_not_starve_health(tight_server):
    srv = tight_server
    stop = threading.Event()
    socks = []

    def attacker(n):
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: a\r\n")
                socks.append(s)
            except OSError:
                pass
        while not stop.is_set():
            for s in list(socks):
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    socks.remove(s)
            time.sleep(0.5)

    t = threading.Thread(target=attacker, args=(300,), daemon=True)
    t.start()
    latencies = []
    t_end = time.time() + 6
    while time.time() < t_end:
        t0 = time.time()
        r = requests.get(srv.url("/health"), timeout=5)  # a fresh connection each time
        latencies.append(time.time() - t0)
        assert r.status_code == 200
        time.sleep(0.1)
    stop.set()
    t.join()
    # The old server timed out on every probe. This client shares 2 cores with the attacker
    # and, under ctest -j2, another test: a single probe can lose a scheduler slice, so the
    # bound is on the 90th percentile, with a looser cap on the worst one.
    latencies.sort()
    p90, worst = latencies[int(0.9 * (len(latencies) - 1))], latencies[-1]
    assert p90 < 1.0 and worst < 2.0, (p90, worst)
    # Slow heads are cut at the header timeout (2 s) or evicted: once the last one opened has
    # had its 2 s, none is still open.
    time.sleep(3)
    survivors = 0
    for s in socks:
        try:
            s.settimeout(2)
            data = s.recv(4096)
            survivors += 0 if (data == b"" or data.startswith(b"HTTP/1.1 408")) else 1
        except socket.timeout:
            survivors += 1
        except OSError:
            pass
        s.close()
    assert survivors == 0, f"{survivors} of {len(socks)} slow sockets still open"
    m = srv.metrics()
    assert m["vela_kv_blocks_used"] == 0


def test_timeouts_are_reported_as_timeouts(tight_server):
    """A request that outlives --timeout: 408 when not streamed; when streamed, an error event
    then [DONE] (never a finish_reason of "length", which would pass for a complete answer)."""
    srv = tight_server
    body = {"prompt": "Once upon a time", "max_tokens": 5000, "temperature": 0, "ignore_eos": True}
    r = requests.post(srv.url("/v1/completions"), json=body, headers=srv.headers, timeout=30)
    assert r.status_code == 408 and r.json()["error"]["code"] == "timeout", r.text[:300]
    r = requests.post(srv.url("/v1/completions"), json=dict(body, stream=True), stream=True,
                      headers=srv.headers, timeout=30)
    events = [line for line in r.iter_lines() if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[-2][6:])["error"]["code"] == "timeout"
    assert all(b'"finish_reason":"length"' not in e for e in events)
    srv.wait_idle(timeout=10)


def test_api_key_from_environment_and_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("file-secret\n")
    for args, env, key in [([], {"VELA_API_KEY": "env-secret"}, "env-secret"),
                           (["--api-key-file", str(key_file)], {}, "file-secret")]:
        srv = launch(args, env=env, api_key=None)
        try:
            assert requests.get(srv.url("/v1/models"), timeout=5).status_code == 401
            ok = requests.get(srv.url("/v1/models"), timeout=5,
                              headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200
        finally:
            shutdown(srv)


def test_sigterm_drain_ends_every_stream_properly():
    srv = launch(["--drain-timeout", "1"])
    streams = []

    def run_stream(i):
        r = requests.post(srv.url("/v1/completions"), json=_long_body(True), stream=True,
                          headers=srv.headers, timeout=60)
        events = [line for line in r.iter_lines() if line.startswith(b"data: ")]
        streams.append((r.status_code, events))

    non_stream = []

    def run_plain():
        r = requests.post(srv.url("/v1/completions"), json=_long_body(False), headers=srv.headers,
                          timeout=60)
        non_stream.append((r.status_code, r.json()))

    threads = [threading.Thread(target=run_stream, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=run_plain))
    for t in threads:
        t.start()
    assert _wait(lambda: srv.metrics()["vela_requests_running"] == 4, 20)
    time.sleep(0.5)
    srv.proc.send_signal(15)
    time.sleep(0.2)
    health = requests.get(srv.url("/health"), timeout=5)
    assert health.status_code == 503 and health.json()["status"] == "draining"
    rc = srv.proc.wait(timeout=30)
    for t in threads:
        t.join(timeout=30)
    log = srv.proc.stdout.read().decode(errors="replace")
    assert rc == 0, log
    assert len(streams) == 3
    for status, events in streams:
        assert status == 200
        assert events[-1] == b"data: [DONE]"
        last = json.loads(events[-2][len(b"data: "):])
        assert last["choices"][0]["finish_reason"] == "abort"
    assert non_stream[0][0] == 503, non_stream
    assert non_stream[0][1]["error"]["code"] == "aborted"


def test_kv_pressure_does_not_deadlock():
    """Three ~195-token prompts that cannot all fit 32 blocks of 16 tokens, each generating 96
    tokens: before, the scheduler stalled with every block held by waiting sequences (all three
    requests hung; 36 words instead of 40 happened to pass)."""
    srv = launch(["--kv-blocks", "32", "-np", "16"])
    try:
        results = []

        def run(i):
            words = " ".join(f"w{i}x{j}" for j in range(40))  # ~195 distinct tokens
            r = requests.post(srv.url("/v1/completions"), headers=srv.headers, timeout=60,
                              json={"prompt": words, "max_tokens": 96, "temperature": 0,
                                    "ignore_eos": True})
            results.append(r)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(results) == 3
        for r in results:
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["completion_tokens"] == 96
        srv.wait_idle(timeout=10)
    finally:
        shutdown(srv)
