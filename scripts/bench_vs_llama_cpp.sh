#!/usr/bin/env bash
# Side-by-side CPU comparison of Vela and llama.cpp on the same GGUF, machine and thread count,
# in one run: llama-bench style pp512/tg128 throughput, peak RSS of a generate job, and
# perplexity on a real English text from Debian's base-files package.
#
#   scripts/bench_vs_llama_cpp.sh LLAMA_CPP_BIN_DIR [THREADS]
#
# LLAMA_CPP_BIN_DIR holds llama-bench, llama-perplexity and llama-completion built from
# llama.cpp's own source (not part of this repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${1:?usage: $0 LLAMA_CPP_BIN_DIR [THREADS]}"
threads="${2:-$(nproc)}"
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
vela="$root/build/release/bin/vela"
text=/usr/share/common-licenses/GPL-3   # Debian package base-files
reps="${REPS:-5}"

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; threads: $threads"
echo "model: $model"
echo

echo "== throughput (tokens/s, mean of $reps runs after a warm-up) =="
vela_json="$("$vela" bench -m "$model" -t "$threads" -p 512 -n 128 -r "$reps" --json)"
llama_json="$("$llama/llama-bench" -m "$model" -t "$threads" -p 512 -n 128 -r "$reps" -o json 2>/dev/null)"
python3 - "$vela_json" "$llama_json" <<'PY'
import json, sys
vela = {r["test"]: r for r in json.loads(sys.argv[1])}
llama = {}
for r in json.loads(sys.argv[2]):
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    llama[test] = {"tokens_per_second": r["avg_ts"], "stddev": r["stddev_ts"]}
print(f"{'test':6} {'vela t/s':>14} {'llama.cpp t/s':>16} {'ratio':>7}")
for test in ("pp512", "tg128"):
    v, l = vela[test], llama[test]
    print(f"{test:6} {v['tokens_per_second']:9.1f} ±{v['stddev']:4.1f} {l['tokens_per_second']:11.1f} ±{l['stddev']:4.1f}"
          f" {v['tokens_per_second'] / l['tokens_per_second']:6.2f}x")
PY
echo

echo "== peak RSS of the same generate job (128 greedy tokens) =="
prompt="Write a short story about a lighthouse keeper."
rss() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }
v_rss=$(rss "$vela" generate -m "$model" -t "$threads" -c 4096 -p "$prompt" -n 128 --temperature 0)
l_rss=$(rss "$llama/llama-completion" -m "$model" -t "$threads" -c 4096 -p "$prompt" -n 128 --temp 0 -no-cnv --no-warmup)
echo "vela: $((v_rss / 1024)) MiB   llama.cpp: $((l_rss / 1024)) MiB   ratio: $(python3 -c "print(f'{$v_rss/$l_rss:.2f}')")"
echo

echo "== perplexity on $text (base-files), context 512 =="
v_ppl=$("$vela" perplexity -m "$model" -t "$threads" -c 512 "$text" 2>/dev/null | grep -o 'PPL = [0-9.]*' | cut -d' ' -f3)
l_ppl=$("$llama/llama-perplexity" -m "$model" -t "$threads" -c 512 -f "$text" 2>&1 | grep -o 'Final estimate: PPL = [0-9.]*' | awk '{print $5}')
echo "vela: $v_ppl   llama.cpp: $l_ppl   relative difference: $(python3 -c "print(f'{100*($v_ppl-$l_ppl)/$l_ppl:+.3f}%')")"
