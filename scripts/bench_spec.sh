#!/usr/bin/env bash
# Speculative decoding on the CPU (issue 23): engine decode tokens/s with speculation off and on,
# greedy, with the acceptance counters; with LLAMA_CPP_BIN_DIR, llama.cpp's speculative decoding
# (llama-speculative-simple) on the same pair, prompt, draft length and threads, in the same run.
#
#   scripts/bench_spec.sh [vela binary] [repetitions] [LLAMA_CPP_BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VELA=${1:-build/release/bin/vela}
REPS=${2:-3}
LLAMA=${3:-}
target=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
draft=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
prompt=bench/prompts/humaneval_style_chatml.txt
uptime
# n-gram (prompt lookup) on SmolLM2-135M, an input-grounded prompt (edit the given code).
"$VELA" bench -t 2 -p 0 -n 128 -r "$REPS" --spec ngram -f bench/prompts/edit_code_chatml.txt
# Draft model: Qwen2.5-Coder 0.5B drafting for 1.5B, a HumanEval-style prompt.
"$VELA" bench -t 2 -m "$target" -p 0 -n 64 -r "$REPS" --spec draft --draft-model "$draft" -f "$prompt"
if [ -n "$LLAMA" ]; then
    echo "llama.cpp, same pair and prompt, 64 greedy tokens, at most 5 draft tokens:"
    "$LLAMA/llama-speculative-simple" -m "$target" -md "$draft" --spec-type draft-simple -f "$prompt" -n 64 -t 2 \
        --spec-draft-n-max 5 --temp 0 -c 2048 2>&1 | grep -E "decoded|n_drafted|n_accept|accept " || true
    echo "llama.cpp without speculation (llama-bench tg64 of the target):"
    "$LLAMA/llama-bench" -m "$target" -t 2 -p 0 -n 64 -r "$REPS" 2>/dev/null | grep tg64
fi
# What a verification step costs: one forward of 1 row vs 6 rows (the last token + 5 drafts).
for m in models/SmolLM2-135M-Instruct.Q4_1.gguf "$target" "$draft"; do
    for p in 1 6; do "$VELA" bench -t 2 -m "$m" -p "$p" -n 0 -r 10; done
done
uptime
