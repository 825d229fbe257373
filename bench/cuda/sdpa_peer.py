#!/usr/bin/env python3
"""torch SDPA (flash backend) peer for bench_attention_cuda: same shapes, bf16, same table.

Prefill forward at batch x seqlen = 16k tokens and 2048 hidden (the FlashAttention benchmark
convention), timed with CUDA events, median of 20 after 3 warm-ups. Also times SDPA flash
backward (dQ, dK, dV) and forward + backward, the peer of Vela's prefill_backward.
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


def main():
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
