#!/usr/bin/env bash
# Draft-model token trees on the CPU (issue 23): Qwen2.5-Coder 0.5B drafting for 1.5B, greedy,
# HumanEval-style prompt; each `vela bench` run alternates an engine without speculation and
# one with it (off / chain / tree in one script run), then the forward costs the speed-up
# prediction of scripts/plot_spec.py needs (target forwards of 1, 6 and 9 rows, a draft
# forward of 1 row).
#
#   scripts/bench_spec_trees.sh [vela binary] [repetitions]
set -euo pipefail
cd "$(dirname "$0")/.."
VELA=${1:-build/bin/vela}
REPS=${2:-2}
target=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
draft=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
prompt=bench/prompts/humaneval_style_chatml.txt
common=(bench -t 2 -m "$target" -p 0 -n 64 -r "$REPS" --spec draft --draft-model "$draft" -f "$prompt")
date -u; uptime
echo "== chain, 5 draft tokens"
"$VELA" "${common[@]}" --spec-max-tokens 5 | tail -6
echo "== tree: depth 5, 8 nodes, up to 4 candidates per depth, sized (default node gain 0.2)"
"$VELA" "${common[@]}" --spec-max-tokens 8 --spec-depth 5 --spec-branches 4 | tail -6
echo "== tree: depth 5, 8 nodes, up to 4 candidates per depth, budget filled (node gain 0)"
"$VELA" "${common[@]}" --spec-max-tokens 8 --spec-depth 5 --spec-branches 4 --spec-node-gain 0 | tail -6
echo "== forward costs (prompt rows per second: one forward of p rows)"
for p in 1 6 9; do "$VELA" bench -t 2 -m "$target" -p "$p" -n 0 -r 10 | grep pp; done
"$VELA" bench -t 2 -m "$draft" -p 1 -n 0 -r 10 | grep pp
uptime
