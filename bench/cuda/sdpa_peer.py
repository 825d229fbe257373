#!/usr/bin/env python3
"""torch SDPA (flash backend) peer for bench_attention_cuda: same shapes, bf16, same table.

Prefill forward at batch x seqlen = 16k tokens and 2048 hidden (the FlashAttention benchmark
convention), timed with CUDA events, median of 20 after 3 warm-ups. Also times SDPA flash
backward (dQ, dK, dV) and forward + backward, the peer of Vela's prefill_backward.

--decode: the decode peer instead, in the layout of bench_attention_cuda's decode table (one
query token per sequence, 32 q heads on 8 kv heads, head_dim 128, bf16, contiguous K/V, SDPA
with enable_gqa on the flash backend), so compare_decode.py puts the two side by side.
Usage: sdpa_peer.py [--fwd-only | --decode]
"""
import math
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F


def median_ms(fn, reps=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def copy_gbs():
    """Device-to-device copy bandwidth, read + write, as bench_attention_cuda reports it."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() / ms / 1e6


def decode():
    """SDPA decode over contiguous bf16 K/V: each "us" is the mean of >= 40 back-to-back calls,
    replayed from a CUDA graph, rotating over >= 256 MB of K/V copies, so L2 never serves the
    previous call's cache. "eager us" times the same calls launched from Python."""
    heads, kv_heads, hd = 32, 8, 128
    copy = copy_gbs()
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; "
          f"copy D2D: {copy:.0f} GB/s (read + write)")
    print("\n| kernel | kv format | batch | context | splits | us (CUDA graph) | GB/s | % of copy | "
          "eager us |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in (1, 8, 32, 64):
        for ctx in (1024, 4096, 16384, 32768):
            kv_bytes = 2 * batch * kv_heads * ctx * hd * 2  # K and V, bf16
            copies = max(1, -(-(256 << 20) // kv_bytes))
            qs = [torch.randn(batch, heads, 1, hd, device="cuda", dtype=torch.bfloat16)
                  for _ in range(copies)]
            kvs = [(torch.randn(batch, kv_heads, ctx, hd, device="cuda", dtype=torch.bfloat16),
                    torch.randn(batch, kv_heads, ctx, hd, device="cuda", dtype=torch.bfloat16))
                   for _ in range(copies)]
            calls = max(40, copies)

            def run():
                for i in range(calls):
                    k, v = kvs[i % copies]
                    F.scaled_dot_product_attention(qs[i % copies], k, v, enable_gqa=True)

            def timed():
                """(eager us, CUDA-graph us) per call: eager includes Python's launch cost,
                which hides the kernel at small sizes; the graph replays the kernels alone."""
                eager = median_ms(run, reps=5) * 1e3 / calls
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    run()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    run()
                return eager, median_ms(graph.replay, reps=5) * 1e3 / calls

            backend = "flash"
            try:
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    eager, us = timed()
            except RuntimeError:  # no flash kernel for this case: what torch picks by itself
                backend = "default"
                eager, us = timed()
            gbs = kv_bytes / us / 1e3
            print(f"| torch sdpa {backend} | bf16 | {batch} | {ctx} | | {us:.1f} | {gbs:.0f} | "
                  f"{100 * gbs / copy:.0f}% | {eager:.1f} |")
            sys.stdout.flush()
            del qs, kvs
            torch.cuda.empty_cache()


def main():
    if "--decode" in sys.argv:
        return decode()
    fwd_only = "--fwd-only" in sys.argv  # skip the backward timings (quick forward comparisons)
    dev = torch.cuda.get_device_name()
    print(f"device: {dev}; torch {torch.__version__}")
    print("\n| kernel | head_dim | seqlen | batch | heads | causal | fwd ms | fwd TFLOP/s | "
          "fwd+bwd ms | bwd TFLOP/s | fwd+bwd TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for hd in (64, 128, 256):
        for s in (512, 1024, 2048, 4096, 8192, 16384):
            for causal in (False, True):
                batch, heads = 16384 // s, 2048 // hd
                q, k, v = (torch.randn(batch, heads, s, hd, device="cuda", dtype=torch.bfloat16,
                                       requires_grad=True) for _ in range(3))
                flops = 4 * batch * heads * s * s * hd / (2 if causal else 1)
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    grad = torch.randn_like(out)
                    if fwd_only:
                        print(f"| torch sdpa flash bf16 | {hd} | {s} | {batch} | {heads} | "
                              f"{int(causal)} | {fwd:.3f} | {flops / fwd / 1e9:.1f} | | | |")
                        continue
                    # backward alone: fwd+bwd minus fwd; 2.5x the forward FLOPs by convention
                    both = median_ms(lambda: torch.autograd.grad(
                        F.scaled_dot_product_attention(q, k, v, is_causal=causal), (q, k, v), grad))
                bwd = max(both - fwd, 1e-6)
                print(f"| torch sdpa flash bf16 | {hd} | {s} | {batch} | {heads} | {int(causal)} | "
                      f"{fwd:.3f} | {flops / fwd / 1e9:.1f} | {both:.3f} | {2.5 * flops / bwd / 1e9:.1f} | "
                      f"{3.5 * flops / both / 1e9:.1f} |")
                del q, k, v, out, grad
    sys.stdout.flush()


if __name__ == "__main__":
    main()
