#!/usr/bin/env python3
"""Round-trip time of small responses on a kept-alive connection and on fresh ones, for one or
more `vela serve` binaries side by side (e.g. before / after a change). Loopback only.

    python3 scripts/keepalive_latency.py build/release/bin/vela /tmp/vela_old
"""
import os
import socket
import statistics
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(call, n=300):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def main():
    for binary in sys.argv[1:]:
        port = free_port()
        proc = subprocess.Popen([binary, "serve", "-m", MODEL, "-t", "2", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    requests.get(base + "/health", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            s = requests.Session()
            body = {"prompt": "Hi", "max_tokens": 1, "temperature": 0}
            rows = [("GET /health, kept alive", lambda: s.get(base + "/health").raise_for_status()),
                    ("GET /health, new connection",
                     lambda: requests.get(base + "/health").raise_for_status()),
                    ("POST 1-token completion, kept alive",
                     lambda: s.post(base + "/v1/completions", json=body).raise_for_status())]
            for label, call in rows:
                p50, p99 = measure(call)
                print(f"| {binary} | {label} | {p50:.2f} | {p99:.2f} |")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
