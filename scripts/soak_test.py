#!/usr/bin/env python3
"""Soak test of `vela serve` under load and attack at once, on loopback only.

For --minutes: 64 streaming and 16 non-streaming clients (random disconnects mid-request), a
slowloris attacker (--slowloris sockets sending one header line every few seconds) and a stream
of malformed bodies, while a probe asks /health twice a second. Then SIGTERM with streams in
flight. Checks and reports:
  - /health latency (max, p99): must stay under 1 s;
  - malformed responses (bad status line, bad JSON, SSE without [DONE]): must be 0;
  - greedy outputs under load equal to the same prompts on the idle server;
  - KV blocks used once idle: must be 0; RSS before / peak / after;
  - after SIGTERM: every in-flight stream ends with a final chunk and [DONE], exit code 0.
Exits non-zero if a check fails. Every request loop is bounded in time and count.
"""
import argparse
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "soak-key"
GREEDY_PROMPTS = [f"Write one sentence about {t}." for t in
                  ["rivers", "clocks", "snow", "bridges", "owls", "maps", "glass", "bread"]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.problems = []

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def problem(self, what):
        with self.lock:
            self.counts["malformed"] = self.counts.get("malformed", 0) + 1
            if len(self.problems) < 20:
                self.problems.append(what)


def greedy(base, prompt, max_tokens=24, timeout=120):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    r = requests.post(base + "/v1/completions", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {KEY}"})
    return r.status_code, r.json()["choices"][0]["text"] if r.status_code == 200 else r.text


def stream_client(base, stats, stop, rng, reference):
    while not stop.is_set():
        prompt = rng.choice(GREEDY_PROMPTS)
        hang_up = rng.random() < 0.3
        try:
            body = {"prompt": prompt, "max_tokens": 24, "temperature": 0, "stream": True}
            r = requests.post(base + "/v1/completions", json=body, stream=True, timeout=300,
                              headers={"Authorization": f"Bearer {KEY}"})
            if r.status_code == 429:
                stats.count("429")
                time.sleep(0.2)
                continue
            if r.status_code != 200:
                stats.problem(f"stream status {r.status_code}: {r.text[:200]}")
                continue
            text, done, n = "", False, 0
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                if line == b"data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                text += chunk["choices"][0]["text"]
                n += 1
                if hang_up and n >= rng.randint(1, 5):
                    break
            r.close()
            if hang_up and not done:
                stats.count("stream_hangups")
                continue
            if not done:
                stats.problem("stream ended without [DONE]")
            elif text != reference[prompt]:
                stats.problem(f"greedy output differs under load for {prompt!r}: {text!r}")
            else:
                stats.count("streams_ok")
        except (requests.RequestException, ValueError) as e:
            stats.problem(f"stream client: {e!r}")


def plain_client(base, stats, stop, rng, reference):
    while not stop.is_set():
        prompt = rng.choice(GREEDY_PROMPTS)
        try:
            if rng.random() < 0.3:
                # Hang up before the answer: raw socket, closed after a short wait.
                port = int(base.rsplit(":", 1)[1])
                body = json.dumps({"prompt": prompt, "max_tokens": 200, "temperature": 0,
                                   "ignore_eos": True}).encode()
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
                               f"Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                              + body)
                    time.sleep(rng.uniform(0.05, 1.0))
                stats.count("plain_hangups")
                continue
            status, text = greedy(base, prompt, timeout=300)
            if status == 429:
                stats.count("429")
                time.sleep(0.2)
            elif status != 200:
                stats.problem(f"plain status {status}: {text[:200]}")
            elif text != reference[prompt]:
                stats.problem(f"greedy output differs under load for {prompt!r}: {text!r}")
            else:
                stats.count("plain_ok")
        except (requests.RequestException, ValueError, KeyError) as e:
            stats.problem(f"plain client: {e!r}")


def slowloris(port, n, stats, stop):
    socks = []
    while not stop.is_set():
        while len(socks) < n and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
                stats.count("slowloris_opened")
            except OSError:
                break
        for s in list(socks):
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                socks.remove(s)
                s.close()
        stop.wait(3)
    for s in socks:
        s.close()


MALFORMED = [
    b"{", b"[" * 100000, b'{"prompt": "x", "max_tokens": 1e999}', b"\x00" * 100,
    b'{"prompt": "' + b"a" * 5000, b'{"messages": 5}', b"null",
]


def malformed_client(base, stats, stop, rng):
    while not stop.is_set():
        body = rng.choice(MALFORMED)
        path = rng.choice(["/v1/completions", "/v1/chat/completions"])
        try:
            r = requests.post(base + path, data=body, timeout=30,
                              headers={"Authorization": f"Bearer {KEY}"})
            if not 400 <= r.status_code < 500 or "error" not in r.json():
                stats.problem(f"malformed body answered {r.status_code}: {r.text[:200]}")
            else:
                stats.count("malformed_refused")
        except (requests.RequestException, ValueError) as e:
            stats.problem(f"malformed client: {e!r}")
        stop.wait(0.05)


def health_probe(base, seconds, conn):
    """Own process, so the load generator's threads do not delay the probe's measurement."""
    latencies, failures = [], []
    t_end = time.time() + seconds
    while time.time() < t_end:
        t0 = time.time()
        try:
            r = requests.get(base + "/health", timeout=5)
            if r.status_code != 200:
                failures.append(f"/health answered {r.status_code}")
        except requests.RequestException as e:
            failures.append(f"/health failed: {e!r}")
        latencies.append(time.time() - t0)
        time.sleep(0.5)
    conn.send((latencies, failures))


def metrics(base):
    text = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {KEY}"},
                        timeout=10).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def drain_check(base, proc, n_streams):
    """Opens long streams, SIGTERMs the server, checks each ends with a final chunk + [DONE]."""
    results = []

    def run():
        body = {"prompt": "Tell a long story.", "max_tokens": 2000, "temperature": 0,
                "ignore_eos": True, "stream": True}
        try:
            r = requests.post(base + "/v1/completions", json=body, stream=True, timeout=120,
                              headers={"Authorization": f"Bearer {KEY}"})
            events = [l for l in r.iter_lines() if l.startswith(b"data: ")]
            results.append(events)
        except requests.RequestException as e:
            results.append(repr(e))

    threads = [threading.Thread(target=run) for _ in range(n_streams)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while time.time() < deadline and metrics(base)["vela_requests_running"] < n_streams:
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
    for t in threads:
        t.join(timeout=60)
    ok = 0
    for ev in results:
        if (isinstance(ev, list) and len(ev) >= 2 and ev[-1] == b"data: [DONE]" and
                json.loads(ev[-2][6:])["choices"][0]["finish_reason"] in ("abort", "length")):
            ok += 1
    return rc, ok, len(results)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vela", default=os.path.join(ROOT, "build/release/bin/vela"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--plain", type=int, default=16)
    ap.add_argument("--slowloris", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"soak seed {args.seed}")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [args.vela, "serve", "-m", args.model, "-t", "2", "--port", str(port), "-np", "16",
           "--api-key", KEY, "--drain-timeout", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            if requests.get(base + "/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.time() > deadline or proc.poll() is not None:
            sys.exit("server did not start")
        time.sleep(0.2)

    reference = {p: greedy(base, p)[1] for p in GREEDY_PROMPTS}
    rss_before = rss_kb(proc.pid)
    stats, stop = Stats(), threading.Event()
    threads = [threading.Thread(target=stream_client,
                                args=(base, stats, stop, random.Random(args.seed * 1000 + i),
                                      reference)) for i in range(args.streams)]
    threads += [threading.Thread(target=plain_client,
                                 args=(base, stats, stop, random.Random(args.seed * 2000 + i),
                                       reference)) for i in range(args.plain)]
    threads += [threading.Thread(target=slowloris, args=(port, args.slowloris, stats, stop)),
                threading.Thread(target=malformed_client,
                                 args=(base, stats, stop, random.Random(args.seed))),
                ]
    probe_end, probe_conn = multiprocessing.Pipe()
    probe = multiprocessing.Process(target=health_probe, args=(base, args.minutes * 60, probe_conn))
    t0 = time.time()
    probe.start()
    for t in threads:
        t.start()
    rss_peak = rss_before
    while time.time() - t0 < args.minutes * 60:
        rss_peak = max(rss_peak, rss_kb(proc.pid))
        time.sleep(1)
    latencies, failures = probe_end.recv()
    probe.join()
    for f in failures:
        stats.problem(f)
    stop.set()
    for t in threads:
        t.join(timeout=300)

    deadline = time.time() + 60
    while time.time() < deadline:
        m = metrics(base)
        if m["vela_kv_blocks_used"] == 0 and m["vela_requests_running"] == 0:
            break
        time.sleep(0.2)
    rss_after = rss_kb(proc.pid)
    m = metrics(base)
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    rc, drained_ok, drained_n = drain_check(base, proc, 8)

    print(f"duration {args.minutes} min, clients {args.streams} streaming + {args.plain} plain, "
          f"slowloris {args.slowloris} sockets")
    for k in sorted(stats.counts):
        print(f"  {k}: {stats.counts[k]}")
    print(f"/health probes {len(lat)}: max {max(lat):.3f} s, p99 {p99:.3f} s")
    print(f"KV blocks used once idle: {m['vela_kv_blocks_used']:.0f}")
    print(f"RSS MB before {rss_before / 1024:.0f}, peak {rss_peak / 1024:.0f}, "
          f"after {rss_after / 1024:.0f}")
    print(f"SIGTERM: exit code {rc}, {drained_ok}/{drained_n} streams ended with a final chunk "
          f"and [DONE]")
    for p in stats.problems:
        print("  problem:", p)
    failed = (stats.counts.get("malformed", 0) > 0 or not lat or max(lat) >= 1.0 or
              m["vela_kv_blocks_used"] != 0 or rc != 0 or drained_ok != drained_n)
    print("FAILED" if failed else "PASSED")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
