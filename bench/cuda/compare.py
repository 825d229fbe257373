#!/usr/bin/env python3
"""Joins the prefill-forward tables of bench_attention_cuda (vela.md) and sdpa_peer.py (sdpa.md)
from one run on one card and prints Vela / SDPA-flash ratios side by side.

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


if __name__ == "__main__":
    main()
