#!/usr/bin/env python3
"""Side by side decode tables of several bench_attention_cuda runs from one call on one card
(e.g. the committed kernel and a candidate, or the torch SDPA peer and Vela): per (KV format, batch, context) the splits, the time
and % of copy bandwidth of each run, and each run's speed relative to the first. A run given
twice (A, B, A) shows the call's drift.

Usage: compare_decode.py NAME=DECODE_MD [NAME=DECODE_MD ...]
"""
import sys


def decode_rows(path):
    """(kv format, batch, context) -> (splits, us, % of copy) of the planned rows of a run
    (bench_attention_cuda decode, or sdpa_peer.py --decode)."""
    out = {}
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 8 and cells[0].startswith(("vela decode", "torch sdpa")):
                out[(cells[1], int(cells[2]), int(cells[3]))] = (cells[4], float(cells[5]),
                                                                 cells[7])
    return out


def main():
    if len(sys.argv) < 2 or any("=" not in a for a in sys.argv[1:]):
        sys.exit(__doc__)
    runs = [(a.split("=", 1)[0], decode_rows(a.split("=", 1)[1])) for a in sys.argv[1:]]
    base_name, base = runs[0]
    head = "| kv format | batch | context |"
    rule = "|---|---|---|"
    for i, (name, _) in enumerate(runs):
        head += f" {name} splits | {name} us | {name} % of copy |"
        rule += "---|---|---|"
        if i > 0:
            head += f" {name} / {base_name} speed |"
            rule += "---|"
    print(head)
    print(rule)
    for key in base:
        line = f"| {key[0]} | {key[1]} | {key[2]} |"
        for i, (_, rows) in enumerate(runs):
            if key not in rows:
                line += " | | |" + (" |" if i > 0 else "")
                continue
            splits, us, pct = rows[key]
            line += f" {splits} | {us:.1f} | {pct} |"
            if i > 0:
                line += f" {base[key][1] / us:.3f}x |"
        print(line)

if __name__ == "__main__":
    main()
