#!/usr/bin/env python3
"""Concurrent sequences a fixed KV pool holds, per KV format (issue 24).

For each format, starts `vela serve` with the same pool in bytes (--kv-cache-memory-bytes), sends
--requests long distinct prompts at once (no shared prefix), and samples /metrics every 20 ms:
the most sequences running together, the pool's blocks and bytes per token. Then the same load
is timed end to end. Prints a markdown table with the command and machine.

    python3 scripts/bench_kv_concurrency.py [--pool 48MiB] [--requests 48] [--words 600]

Needs `requests` (PyPI). Every address is loopback.
"""
import argparse
import os
import platform
import random
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("river stone lamp garden window paper silver morning bridge harbor valley letter candle "
         "forest music winter station orchard market ladder mirror engine meadow pocket thunder "
         "blanket compass castle feather island journey kettle lantern mountain needle ocean "
         "pepper quartz saddle tunnel violet wagon yarn zephyr anchor basket cellar desert").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(url):
    text = requests.get(url + "/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(vela_[a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def prompt(i, words):
    rng = random.Random(i)
    return f"Story {i}: " + " ".join(rng.choice(WORDS) for _ in range(words)) + "\nSummary:"


def run(vela, model, fmt, pool, n_requests, n_words, max_tokens, threads, parallel, extra):
    k, v, block, group = fmt
    port = free_port()
    cmd = [vela, "serve", "-m", model, "-t", str(threads), "--port", str(port), "-c", "2048",
           "--parallel", str(parallel), "--max-queue", "4096", "--kv-cache-memory-bytes", pool,
           "--kv-type-k", k, "--kv-type-v", v, "--kv-block-size", str(block),
           "--kv-quant-group", str(group)] + extra
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {shlex.join(cmd)}\n{proc.stderr.read()}")
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        m0 = metrics(url)
        peak = {"running": 0, "blocks": 0}
        done = threading.Event()

        def sample():
            while not done.is_set():
                m = metrics(url)
                peak["running"] = max(peak["running"], int(m.get("vela_requests_running", 0)))
                peak["blocks"] = max(peak["blocks"], int(m.get("vela_kv_blocks_used", 0)))
                time.sleep(0.02)

        prompt_tokens, errors = [], []

        def client(i):
            try:
                r = requests.post(url + "/v1/completions", timeout=1800, json={
                    "prompt": prompt(i, n_words), "max_tokens": max_tokens, "temperature": 0,
                    "ignore_eos": True})
                r.raise_for_status()
                prompt_tokens.append(r.json()["usage"]["prompt_tokens"])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(str(e))

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.time()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(n_requests)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        wall = time.time() - start
        done.set()
        sampler.join()
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
        return {
            "blocks": int(m0.get("vela_kv_blocks_total", 0)),
            "bytes_per_token": int(m0.get("vela_kv_bytes_per_token", 0)),
            "peak_running": peak["running"],
            "peak_blocks": peak["blocks"],
            "prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),
            "wall": wall,
            "tok_s": n_requests * max_tokens / wall,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vela", default=os.path.join(ROOT, "build/release/bin/vela"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--pool", default="48MiB", help="KV pool, as --kv-cache-memory-bytes")
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--words", type=int, default=600, help="prompt length in words")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=512, help="vela serve --parallel")
    ap.add_argument("--variants", default="",
                    help="serve flags compared per format, ';' separated (e.g. ';--swa-full')")
    ap.add_argument("--formats", default="f16/f16/16/32,q8/q8/16/32,q8/q4/16/32,q4/q4/16/32,"
                    "q4/q4/64/64", help="K/V/block/group, comma separated")
    a = ap.parse_args()
    formats = [tuple(f.split("/")) for f in a.formats.split(",")]
    print(f"`{shlex.join([sys.executable] + sys.argv)}`  ")
    print(f"{platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load {os.getloadavg()[0]:.1f}; model {os.path.basename(a.model)}, pool {a.pool}, "
          f"{a.requests} requests of {a.words} words, {a.max_tokens} tokens each\n")
    print("| K / V (block, group) | KV bytes per token | blocks in the pool | prompt tokens | "
          "most sequences running | wall s | generated tok/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for f in formats:
        for variant in a.variants.split(";"):
            r = run(a.vela, a.model, f, a.pool, a.requests, a.words, a.max_tokens, a.threads,
                    a.parallel, shlex.split(variant))
            label = f"{f[0]} / {f[1]} ({f[2]}, {f[3]})" + (f" {variant}" if variant else "")
            print(f"| {label} | {r['bytes_per_token']} | {r['blocks']} | "
                  f"{r['prompt_tokens']:.0f} | {r['peak_running']} | {r['wall']:.1f} | "
                  f"{r['tok_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
