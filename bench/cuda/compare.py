#!/usr/bin/env python3
"""Joins the tables of bench_attention_cuda (vela.md) and sdpa_peer.py (sdpa.md) from one run on
one card and prints Vela / SDPA-flash ratios side by side: prefill forward per kernel, then the
backward (SDPA's backward time is its fwd+bwd time minus its forward; bwd FLOPs = 2.5 x fwd).

Usage: compare.py VELA_MD SDPA_MD
"""
import sys


def rows(path, prefix):
    """Table rows whose first cell starts with prefix, as lists of stripped cells."""
    out = []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0].startswith(prefix):
                out.append(cells)
    return out


def main():
    vela_md, sdpa_md = sys.argv[1], sys.argv[2]
    # (head_dim, seqlen, causal) -> TFLOP/s
    peer = {(r[1], r[2], r[5]): float(r[7]) for r in rows(sdpa_md, "torch sdpa flash")}
    vela = {}
    for r in rows(vela_md, "vela prefill"):
        # rows of the forward table only: "vela prefill <kernel> bf16 | hd | s | batch | ..."
        if len(r) != 8 or not r[3].isdigit() or r[5] not in ("0", "1"):
            continue
        kernel = r[0].split()[2]
        vela.setdefault((r[1], r[2], r[5]), {})[kernel] = float(r[7])
    kernels = sorted({k for v in vela.values() for k in v})
    print("| head_dim | seqlen | causal | SDPA-flash TFLOP/s | " +
          " | ".join(f"{k} TFLOP/s | {k} / SDPA" for k in kernels) + " |")
    print("|---|---|---|---|" + "---|---|" * len(kernels))
    for key, per_kernel in vela.items():
        if key not in peer:
            continue
        cells = []
        for k in kernels:
            t = per_kernel.get(k)
            cells += [f"{t:.1f}", f"{t / peer[key]:.2f}x"] if t else ["", ""]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {peer[key]:.1f} | " + " | ".join(cells) + " |")
    backward(vela_md, sdpa_md)


def backward(vela_md, sdpa_md):
    peer = {(r[1], r[2], r[5]): r for r in rows(sdpa_md, "torch sdpa flash") if r[8]}
    table = [r for r in rows(vela_md, "vela fwd+bwd") if (r[1], r[2], r[5]) in peer]
    if not table:
        return
    print("\n| head_dim | seqlen | batch x heads | causal | Vela bwd ms | Vela bwd TFLOP/s | "
          "SDPA bwd ms | SDPA bwd TFLOP/s | bwd ratio | Vela fwd+bwd TFLOP/s | "
          "SDPA fwd+bwd TFLOP/s | fwd+bwd ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        hd, s, b, h, causal = r[1], r[2], int(r[3]), int(r[4]), r[5]
        fwd, bwd = float(r[6]), float(r[7])
        q = peer[(hd, s, causal)]
        peer_fwd, peer_both = float(q[6]), float(q[8])
        peer_bwd = peer_both - peer_fwd
        flops = 4 * b * h * int(s) ** 2 * int(hd) / (2 if causal == "1" else 1)
        vb, pb = 2.5 * flops / bwd / 1e9, 2.5 * flops / peer_bwd / 1e9
        vfb, pfb = 3.5 * flops / (fwd + bwd) / 1e9, 3.5 * flops / peer_both / 1e9
        print(f"| {hd} | {s} | {b} x {h} | {causal} | {bwd:.3f} | {vb:.1f} | {peer_bwd:.3f} | "
              f"{pb:.1f} | {vb / pb:.2f}x | {vfb:.1f} | {pfb:.1f} | {vfb / pfb:.2f}x |")


if __name__ == "__main__":
    main()
