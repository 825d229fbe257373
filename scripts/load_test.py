#!/usr/bin/env python3
"""Load generator for OpenAI-compatible servers: `vela serve` beside llama.cpp's llama-server.

For each concurrency level, starts each server fresh (same model, threads, slots), fires
streamed /v1/completions requests from that many client threads, and reports throughput
(generated tokens / wall second), time to first token and inter-token latency (p50/p99).
A second workload sends chat requests sharing a long system prompt (prefix caching).
Writes a markdown table (--out) with the exact command and machine.

Needs `requests` (PyPI). Every address is loopback.
"""
import argparse
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPICS = ["the ocean", "a red bicycle", "winter mornings", "old libraries", "a lost key",
          "mountain trains", "a quiet village", "the first computer", "honey bees", "a lighthouse",
          "street markets", "paper airplanes", "thunderstorms", "a chess game", "desert nights",
          "a violin", "coffee", "city parks", "the moon landing", "a small boat"]
SYSTEM = ("You are a careful assistant for a travel company. " * 1 +
          "Answer briefly and politely. Always mention safety, local customs, the weather, the "
          "best season to travel, the currency, typical food, public transport, tipping habits, "
          "emergency numbers, museum opening hours and a short greeting in the local language. "
          "Never invent prices. If unsure, say so. Keep answers under one paragraph. ") * 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class ServerProcess:
    def __init__(self, cmd, port):
        self.cmd, self.port = cmd, port
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {shlex.join(cmd)}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start: {shlex.join(cmd)}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def stream_one(url, body):
    """One streamed request: (ttft, [inter-token gaps], completion tokens)."""
    t0 = time.perf_counter()
    ttft, last, gaps, chunks, usage = None, None, [], 0, None
    with requests.post(url, json=body, stream=True, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            msg = json.loads(line[6:])
            if msg.get("usage"):
                usage = msg["usage"].get("completion_tokens")
            ch = msg.get("choices") or []
            text = (ch[0].get("text") or (ch[0].get("delta") or {}).get("content") or "") if ch else ""
            if not text:
                continue
            now = time.perf_counter()
            if ttft is None:
                ttft = now - t0
            else:
                gaps.append(now - last)
            last = now
            chunks += 1
    return ttft, gaps, usage if usage else chunks


def run_level(port, concurrency, n_requests, make_body, path):
    url = f"http://127.0.0.1:{port}{path}"
    results, lock, next_i = [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= n_requests:
                    return
                next_i[0] += 1
            res = stream_one(url, make_body(i))
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts = [r[0] for r in results if r[0] is not None]
    gaps = [g for r in results for g in r[1]]
    tokens = sum(r[2] for r in results)
    # Decode rate once streaming: each stream's tokens after its first over the time they took,
    # summed (a speculative server streams several tokens a chunk, so the gaps alone mislead).
    decode = sum((r[2] - 1) / sum(r[1]) for r in results if r[1] and sum(r[1]) > 0)
    return {"requests": len(results), "tokens": tokens, "wall": wall, "tok_s": tokens / wall,
            "decode_tok_s": decode,
            "ttft_p50": percentile(ttfts, 50), "ttft_p99": percentile(ttfts, 99),
            "itl_p50": percentile(gaps, 50), "itl_p99": percentile(gaps, 99)}


def server_cmd(kind, args, port, slots, ctx_per_slot):
    if kind == "vela":
        return [args.vela, "serve", "-m", args.model, "-t", str(args.threads), "--port", str(port),
                "-c", str(ctx_per_slot), "-np", str(slots), "--kv-blocks", str(slots * ctx_per_slot // 16),
                "--max-queue", "1024"] + shlex.split(args.vela_args)
    return [args.llama_server, "-m", args.model, "-t", str(args.threads), "--port", str(port),
            "--host", "127.0.0.1", "-np", str(slots), "-c", str(slots * ctx_per_slot)] + \
        shlex.split(args.llama_args)


def long_prompt_body(text, chars, max_tokens, temperature=0.0):
    """Request i: `chars` characters of `text` from a distinct offset (wrapping), so no two
    requests share a prefix: long contexts where reading the KV dominates a decode step."""
    step = max(1, len(text) // 97)
    looped = text * (chars // max(1, len(text)) + 2)

    def body(i):
        start = (i * step) % len(text)
        piece = looped[start:start + chars]
        return {"model": "m", "prompt": piece, "max_tokens": max_tokens, "temperature": temperature,
                "seed": i, "stream": True, "stream_options": {"include_usage": True},
                "ignore_eos": True}
    return body


def completion_body(max_tokens, temperature=0.0):
    return lambda i: {"model": "m", "prompt": f"Write a short story about {TOPICS[i % len(TOPICS)]} "
                      f"(number {i}).", "max_tokens": max_tokens, "temperature": temperature,
                      "seed": i, "stream": True,
                      "stream_options": {"include_usage": True}, "ignore_eos": True}


def chat_body(max_tokens, temperature=0.0):
    return lambda i: {"model": "m", "max_tokens": max_tokens, "temperature": temperature,
                      "seed": i, "stream": True,
                      "stream_options": {"include_usage": True}, "ignore_eos": True,
                      "messages": [{"role": "system", "content": SYSTEM},
                                   {"role": "user", "content": f"I am going to visit place number {i}: "
                                    f"what about {TOPICS[i % len(TOPICS)]}?"}]}


def row(name, workload, c, r):
    return (f"| {name} | {workload} | {c} | {r['requests']} | {r['tokens']} | {r['tok_s']:.1f} | "
            f"{r['ttft_p50']*1e3:.0f} | {r['ttft_p99']*1e3:.0f} | {r['itl_p50']*1e3:.1f} | "
            f"{r['itl_p99']*1e3:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vela", default=os.path.join(ROOT, "build/release/bin/vela"))
    ap.add_argument("--llama-server", default="/work/peers/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-server")
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llama-args", default="",
                    help="extra llama-server arguments, e.g. '-ngl 99 -fa on' on a GPU")
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--shared-concurrency", type=int, default=16, help="0: no chat workload")
    ap.add_argument("--servers", default="vela,llama.cpp")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="0: greedy; else sampled with each server's default top-k/top-p/min-p")
    ap.add_argument("--vela-args", default="", help="extra `vela serve` arguments, e.g. '--spec self'")
    ap.add_argument("--prompt-file", default="",
                    help="long-context workload: each request a distinct slice of this text")
    ap.add_argument("--prompt-chars", type=int, default=60000, help="characters per slice")
    ap.add_argument("--ctx", type=int, default=512, help="context tokens per slot")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    text = open(args.prompt_file, encoding="utf-8", errors="replace").read() if args.prompt_file else ""

    levels = [int(c) for c in args.concurrency.split(",")]
    lines = []
    for kind in args.servers.split(","):
        for c in levels:
            port = free_port()
            srv = ServerProcess(server_cmd(kind, args, port, c, args.ctx), port)
            try:
                run_level(port, 1, 1, completion_body(4), "/v1/completions")  # warm-up
                if text:  # one request per slot: the batch is the concurrency
                    r = run_level(port, c, c, long_prompt_body(text, args.prompt_chars, args.max_tokens,
                                                               args.temperature), "/v1/completions")
                else:
                    r = run_level(port, c, max(2 * c, 8) if c < 64 else c,
                                  completion_body(args.max_tokens, args.temperature), "/v1/completions")
            finally:
                srv.stop()
            lines.append(row(kind, f"{args.prompt_chars}-char prompts" if text else "distinct prompts", c, r))
            if text:
                print(f"{kind} {c} streams: decode {r['decode_tok_s']:.1f} tokens/s (sum of per-stream rates)",
                      flush=True)
            print(lines[-1], flush=True)
        c = args.shared_concurrency
        if c <= 0:  # e.g. a model-shaped file without a chat template
            continue
        port = free_port()
        srv = ServerProcess(server_cmd(kind, args, port, c, 1024), port)
        try:
            r = run_level(port, c, 2 * c, chat_body(args.max_tokens, args.temperature), "/v1/chat/completions")
        finally:
            srv.stop()
        lines.append(row(kind, "shared system prompt (chat)", c, r))
        print(lines[-1], flush=True)

    header = ("| server | workload | concurrency | requests | gen tokens | tokens/s | TTFT p50 ms | "
              "TTFT p99 ms | ITL p50 ms | ITL p99 ms |\n|---|---|---|---|---|---|---|---|---|---|")
    table = header + "\n" + "\n".join(lines)
    if args.out:
        machine = f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, " \
                  f"load average before the run {os.getloadavg()[0]:.2f}"
        with open(args.out, "w") as f:
            f.write("# Server benchmark: vela serve vs llama.cpp llama-server\n\n")
            f.write(f"Command: `python3 {' '.join(shlex.quote(a) for a in sys.argv)}`\n\n")
            f.write(f"Machine: {machine}\n\n")
            f.write(f"Each server is restarted per level with `-np` = concurrency, {args.threads} threads, "
                    f"greedy decoding, max_tokens {args.max_tokens} with ignore_eos (every request generates exactly that many), streamed /v1/completions; TTFT is "
                    "measured by the client from sending to the first text chunk, ITL between text chunks.\n\n")
            f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
