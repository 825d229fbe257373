#!/usr/bin/env python3
"""Measured speculative-decoding speed-up vs the one predicted from acceptance and forward costs.

Prediction (Leviathan et al. 2023): speed-up = tokens per target step / cost of a step, the
cost in units of one plain decode step of the target: the verification forward (1 + drafted
rows) plus the draft forwards (depth per step, each costing c_draft). Verification cost is
interpolated from measured target forwards of 1, 6 and 9 rows (`vela bench -p N -n 0`).

    python3 scripts/plot_spec.py   # writes docs/img/spec_speedup.png

Inputs are the rows of docs/benchmarks.md, "Speculative decoding on CPU (issue 23)".
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Qwen2.5-Coder-1.5B Q4_K_M forward of N rows, relative to 1 row (2 threads):
# scripts/bench_spec_trees.sh, 2026-12-05 13:32 UTC: pp1 15.29, pp6 60.09, pp9 64.42 rows/s.
QWEN15_ROWS = {1: 1.0, 6: (6 / 60.09) / (1 / 15.29), 9: (9 / 64.42) / (1 / 15.29)}
# Qwen2.5-Coder-0.5B 1-row forward relative to the 1.5B's: pp1 34.33 vs 15.29 (same run).
QWEN05_DRAFT = 15.29 / 34.33


def verify_cost(rows, table):
    """Piecewise-linear in the rows between the measured points (extrapolated past the last)."""
    xs = sorted(table)
    for a, b in zip(xs, xs[1:]):
        if rows <= b or b == xs[-1]:
            return table[a] + (table[b] - table[a]) * (rows - a) / (b - a)
    return table[xs[-1]]


# label, tokens per target step, draft tokens (verification rows - 1) per step, draft forwards
# per step, cost of a draft forward, verification cost table, measured speed-up, source.
ROWS = [
    # n-gram rows: docs/benchmarks.md table (2026-12-05 07:24-07:38 UTC), edit-code prompt;
    # drafted per step = (tokens per step - 1) / acceptance; prompt lookup costs ~nothing.
    ("n-gram chain", 2.62, 1.62 / 0.667, 0, 0.0, QWEN15_ROWS, 1.67, "benchmarks.md 07:24"),
    ("n-gram tree", 2.69, 1.69 / 0.629, 0, 0.0, QWEN15_ROWS, 1.63, "benchmarks.md 07:24"),
    # Self-speculation, SmolLM2-135M at 5.5k context (benchmarks.md): a draft forward reads
    # ~104 MB of ~219 MB (bytes estimate, not a timing); verification rows taken as free
    # (the step reads weights + 5.5k tokens of KV once): costs here are estimates.
    ("self (SmolLM2, 5.5k ctx)", 3.32, 2.32 / 0.863, 2.32 / 0.863, 104 / 219,
     {1: 1.0, 9: 1.0}, 1.26, "benchmarks.md; costs from bytes"),
    # Draft model, Qwen 0.5B -> 1.5B, HumanEval-style prompt: scripts/bench_spec_trees.sh,
    # 2026-12-05 13:30-13:33 UTC ("per verifying step: N draft tokens, D deep").
    ("draft chain", 5.73, 4.91, 4.91, QWEN05_DRAFT, QWEN15_ROWS, 1.19, "bench_spec_trees 13:30"),
    ("draft tree, sized", 5.73, 4.94, 4.91, QWEN05_DRAFT, QWEN15_ROWS, 1.22,
     "bench_spec_trees 13:30"),
    ("draft tree, filled", 5.73, 7.61, 4.85, QWEN05_DRAFT, QWEN15_ROWS, 1.05,
     "bench_spec_trees 13:30"),
    # Same pair, prose prompt (2026-12-05 13:25-13:29 UTC, one vela bench per row).
    ("draft chain, prose", 2.38, 2.38, 2.38, QWEN05_DRAFT, QWEN15_ROWS, 0.93, "prose 13:25"),
    ("draft tree filled, prose", 2.86, 7.45, 2.83, QWEN05_DRAFT, QWEN15_ROWS, 0.78,
     "prose 13:25"),
]


# vela bench times decode from the first token on, and the draft model catches up on the whole
# prompt (140 tokens here, a fresh request each repetition) in its first propose, inside that
# window: at 228 rows/s (`vela bench -m 0.5B -p 128 -n 0`, 13:50 UTC, beside a peer's 1-thread
# run) ~0.61 s of the ~3.6 s. Off/on t/s of the HumanEval-style draft rows (13:30 run) to
# recompute their speed-up without it.
DRAFT_PREFILL_S = 140 / 228.16
TIMED_TOKENS = 63  # -n 64: the first token starts the clock
OFF_ON = {
    "draft chain": (14.86, 17.71),
    "draft tree, sized": (14.51, 17.64),
    "draft tree, filled": (14.83, 15.55),
}


def without_draft_prefill(off, on):
    return TIMED_TOKENS / (TIMED_TOKENS / on - DRAFT_PREFILL_S) / off


def predicted(tokens, drafted, forwards, c_draft, table):
    return tokens / (verify_cost(1 + drafted, table) + forwards * c_draft)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    out = os.path.join(root, "docs", "img", "spec_speedup.png")
    fig, ax = plt.subplots(figsize=(7, 5.5))
    print(f"{'row':28} {'predicted':>9} {'measured':>8} {'ratio':>6}")
    top = 0.0
    for label, tokens, drafted, forwards, c_draft, table, measured, _ in ROWS:
        p = predicted(tokens, drafted, forwards, c_draft, table)
        print(f"{label:28} {p:9.2f} {measured:8.2f} {measured / p:6.2f}")
        ax.scatter(p, measured, s=30)
        ax.annotate(label, (p, measured), textcoords="offset points", xytext=(5, -3), fontsize=8)
        top = max(top, p, measured)
        if label in OFF_ON:
            m2 = without_draft_prefill(*OFF_ON[label])
            print(f"{'  without draft prefill':28} {p:9.2f} {m2:8.2f} {m2 / p:6.2f}")
            ax.scatter(p, m2, s=30, facecolors="none", edgecolors="k")
            ax.plot([p, p], [measured, m2], "k-", lw=0.4)
    lim = (0.6, top * 1.1)
    ax.plot(lim, lim, "k--", lw=0.8, label="measured = predicted")
    ax.plot(lim, [0.8 * x for x in lim], "k:", lw=0.8, label="measured = 0.8 x predicted")
    ax.scatter([], [], s=30, facecolors="none", edgecolors="k",
               label="draft rows without the draft's prompt prefill (est.)")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("predicted speed-up (tokens per step / step cost in target decode steps)")
    ax.set_ylabel("measured decode speed-up (vela bench, on / off)")
    ax.set_title("Speculative decoding on CPU (2 threads): measured vs predicted")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=120)
    print("wrote", os.path.relpath(out, root))


if __name__ == "__main__":
    main()
