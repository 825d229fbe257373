#!/usr/bin/env bash
# Speculative decoding on the CPU (issue 23): engine decode tokens/s with speculation off and on,
# greedy, with the acceptance counters. Usage: scripts/bench_spec.sh [vela binary] [repetitions]
set -euo pipefail
cd "$(dirname "$0")/.."
VELA=${1:-build/release/bin/vela}
REPS=${2:-3}
uptime
# n-gram (prompt lookup) on SmolLM2-135M, an input-grounded prompt (edit the given code).
"$VELA" bench -t 2 -p 0 -n 128 -r "$REPS" --spec ngram -f bench/prompts/edit_code_chatml.txt
# Draft model: Qwen2.5-Coder 0.5B drafting for 1.5B, a HumanEval-style prompt.
"$VELA" bench -t 2 -m models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf -p 0 -n 64 -r "$REPS" \
    --spec draft --draft-model models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    -f bench/prompts/humaneval_style_chatml.txt
# What a verification step costs: one forward of 1 row vs 6 rows (the last token + 5 drafts).
for m in models/SmolLM2-135M-Instruct.Q4_1.gguf models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
         models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
    for p in 1 6; do "$VELA" bench -t 2 -m "$m" -p "$p" -n 0 -r 10; done
done
uptime
