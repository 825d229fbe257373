"""A barrage of malformed requests: each must get a 4xx JSON error (or, for hang-ups, a clean
abort), and the server must keep serving with its KV cache back to empty."""
import json
import random
import socket

import pytest

from conftest import API_KEY

GOOD = {"prompt": "Hello", "max_tokens": 2, "temperature": 0}
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def _mutations():
    """Bodies (already JSON-encoded, or raw bytes) that the server must refuse."""
    bad_values = [None, True, "x", -1, 0, 1e300, -1e300, 2**63, -(2**63) - 1, [], {}, [1, 2], "∞"]
    fields = {
        "max_tokens": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)
                                              and 1 <= v < 2**63),
        "temperature": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and 0 <= v <= 2),
        "top_p": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                         and 0 <= v <= 1),
        "top_k": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)
                                         and -1 <= v < 2**31),
        "min_p": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                         and 0 <= v <= 1),
        "n": lambda v: v is None or (v in (1, 2) and not isinstance(v, bool)),
        "presence_penalty": lambda v: v is None or (isinstance(v, (int, float))
                                                    and not isinstance(v, bool) and -2 <= v <= 2),
        "frequency_penalty": lambda v: v is None or (isinstance(v, (int, float))
                                                     and not isinstance(v, bool) and -2 <= v <= 2),
        "seed": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)
                                        and -(2**63) <= v < 2**63),
        "stop": lambda v: v is None or v in ("x", "∞", []),
        "stream": lambda v: v is None or isinstance(v, bool),
        "echo": lambda v: v is None or isinstance(v, bool),
        "prompt": lambda v: v in ("x", "∞", [1, 2]),
        "user": lambda v: v is None or isinstance(v, str),
        "stream_options": lambda v: v is None or v == {},
        "logprobs": lambda v: v is None or (type(v) is int and 0 <= v <= 5),
    }
    cases = []
    for field, ok in fields.items():
        for v in bad_values:
            body = dict(GOOD)
            body[field] = v
            cases.append((json.dumps(body).encode(), ok(v), f"{field}={v!r}"))
    raw = [b"", b"{", b"[]", b"null", b"42", b'"str"', b'{"prompt": "a",}', b"{'prompt': 'a'}",
           b'{"prompt": "\xff\xfe"}', b'{"prompt": "\xc3"}', b'{"prompt": "\xed\xa0\x80"}',
           b'{"prompt": "\\ud800"}', b"\x00" * 64, b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}",
           json.dumps({"prompt": ""}).encode(), json.dumps({"prompt": []}).encode(),
           json.dumps({"prompt": [-1]}).encode(), json.dumps({"prompt": [10**9]}).encode(),
           json.dumps({"prompt": ["a", "b"]}).encode(), json.dumps({"prompt": [1.5]}).encode(),
           json.dumps(dict(GOOD, unknown_field=1)).encode(), json.dumps(dict(GOOD, stop=[""])).encode(),
           json.dumps(dict(GOOD, stop=["a"] * 17)).encode(), json.dumps(dict(GOOD, logit_bias={"1": 5})).encode(),
           json.dumps({"max_tokens": 2}).encode()]
    cases += [(b, False, f"raw {b[:30]!r}") for b in raw]
    return cases


def _chat_mutations():
    bad_messages = [None, [], {}, "hi", [{}], [{"role": "user"}], [{"content": "hi"}],
                    [{"role": "wizard", "content": "hi"}], [{"role": "user", "content": 5}],
                    [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
                    [{"role": 1, "content": "hi"}], ["hi"], [[{"role": "user", "content": "hi"}]]]
    cases = [json.dumps(dict(CHAT, messages=m)).encode() for m in bad_messages]
    cases.append(json.dumps(dict(CHAT, prompt="x")).encode())
    cases.append(json.dumps(dict(CHAT, max_completion_tokens=0)).encode())
    cases.append(json.dumps(dict(CHAT, response_format={"type": "json_object"})).encode())
    cases.append(json.dumps(dict(CHAT, top_logprobs=3)).encode())
    return cases


def test_barrage_of_bad_requests(server):
    import requests
    session = requests.Session()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    n_bad = 0
    for body, acceptable, label in _mutations():
        r = session.post(server.url("/v1/completions"), data=body, headers=headers, timeout=60)
        if acceptable:
            assert r.status_code == 200, (label, r.text)
            continue
        n_bad += 1
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}, label
        assert err["message"], label
    for body in _chat_mutations():
        r = session.post(server.url("/v1/chat/completions"), data=body, headers=headers, timeout=60)
        assert r.status_code == 400, (body, r.text)
        n_bad += 1
    assert n_bad > 150
    for path, method in [("/v1/nothing", "GET"), ("/v1/completions", "GET"), ("/v1/models", "DELETE")]:
        r = session.request(method, server.url(path), headers=headers, timeout=10)
        assert 400 <= r.status_code < 500
        assert "error" in r.json()
    r = session.post(server.url("/v1/completions"), json=GOOD, timeout=10)  # no key
    assert r.status_code == 401
    assert server.post("/v1/completions", GOOD).status_code == 200
    server.wait_idle()


def test_random_garbage_bodies(server):
    import requests
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for _ in range(100):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        r = requests.post(server.url("/v1/chat/completions"), data=body, headers=headers, timeout=30)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_request_error"


def _raw_request(port, head, body_chunks, read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: expected for an oversized body
        if not read:
            return s
        data = b""
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
        return data
    finally:
        if read:
            s.close()


def test_100mb_body_is_413(server):
    size = 100 * 1024 * 1024
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").encode()
    chunk = b"a" * (1 << 20)
    data = _raw_request(server.port, head, (chunk for _ in range(100)))
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert server.post("/v1/completions", GOOD).status_code == 200


@pytest.mark.parametrize("endpoint", ["/v1/completions", "/v1/chat/completions"])
def test_client_hangs_up_mid_stream(server, endpoint):
    body = dict(CHAT) if "chat" in endpoint else dict(GOOD)
    body.update(max_tokens=400, stream=True, temperature=1.0, seed=3)
    payload = json.dumps(body).encode()
    head = (f"POST {endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
    s = _raw_request(server.port, head + payload, [], read=False)
    got = b""
    while got.count(b"data: ") < 3:  # bounded by the socket timeout
        part = s.recv(4096)
        assert part, got
        got += part
    assert server.metrics()["vela_kv_blocks_used"] > 0
    s.close()
    # The next write fails, the stream is released and the engine aborts the request.
    m = server.wait_idle(timeout=30)
    assert m["vela_kv_blocks_used"] == 0
    assert server.post("/v1/completions", GOOD).status_code == 200
