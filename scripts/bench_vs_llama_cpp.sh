#!/usr/bin/env bash
# Side-by-side CPU comparison of Vela and llama.cpp on the same GGUFs, machine and thread count,
# in one run. For each model:
#   - llama-bench style pp512 / tg128 throughput (`vela bench` beside `llama-bench`);
#   - decode's weight traffic (bytes read per token x tokens/s) against a STREAM-like read of the
#     same number of bytes on the same threads (bench_read_bandwidth), the memory-bound ceiling;
#   - perplexity on a real English text (GPL-3 from Debian's base-files), context 512, and the
#     peak RSS of that same job in each engine;
#   - teacher-forced agreement: Vela's distributions at every scored token are written in
#     llama-perplexity's --kl-divergence-base format and llama.cpp compares its own with them
#     (KL divergence, same top token), beside llama.cpp's own noise floor (its flash-attention
#     path against its plain path on the same tokens).
#
#   scripts/bench_vs_llama_cpp.sh LLAMA_CPP_BIN_DIR [THREADS] [MODEL.gguf ...]
#
# LLAMA_CPP_BIN_DIR holds llama-bench and llama-perplexity built from llama.cpp's own source
# (not part of this repository). Models default to every real model present in models/.
# REPS (default 5) repetitions per throughput test; CHUNKS (default 8) perplexity chunks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${1:?usage: $0 LLAMA_CPP_BIN_DIR [THREADS] [MODEL.gguf ...]}"
threads="${2:-$(nproc)}"
shift $(($# >= 2 ? 2 : 1))
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    for name in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
                qwen2.5-coder-1.5b-instruct-q4_k_m.gguf gemma-3-270m-q4_k_m.gguf; do
        [ -f "$root/models/$name" ] && models+=("$root/models/$name")
    done
fi
bin="$root/build/release/bin"
text=/usr/share/common-licenses/GPL-3   # Debian package base-files
reps="${REPS:-5}"
chunks="${CHUNKS:-8}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; threads: $threads; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "llama.cpp: $("$llama/llama-bench" --version 2>&1 | head -1 || true)"

# Peak RSS in KiB of a command; its stdout and stderr go to $2.
rss() { local out=$1; shift; /usr/bin/time -f "%M" -o "$tmp/rss" "$@" > "$out" 2>&1; cat "$tmp/rss"; }

for model in "${models[@]}"; do
    echo
    echo "=== $(basename "$model") ($(($(stat -c %s "$model") >> 20)) MiB) ==="
    vela_json="$("$bin/vela" bench -m "$model" -t "$threads" -p 512 -n 128 -r "$reps" --json)"
    llama_json="$("$llama/llama-bench" -m "$model" -t "$threads" -p 512 -n 128 -r "$reps" -o json 2>/dev/null)"
    # Bytes one decode step reads: every weight except the embedding table (one row per token),
    # which the LM head reads whole when the output matrix is tied to it.
    decode_bytes=$(python3 - "$model" <<'PY'
import sys
from gguf import GGUFReader
t = {x.name: int(x.n_bytes) for x in GGUFReader(sys.argv[1]).tensors}
print(sum(t.values()) - (t["token_embd.weight"] if "output.weight" in t else 0))
PY
)
    bw=$("$bin/bench_read_bandwidth" $((decode_bytes >> 20)) "$threads" 20 | grep -o 'best [0-9.]*' | cut -d' ' -f2)
    python3 - "$vela_json" "$llama_json" "$decode_bytes" "$bw" <<'PY'
import json, sys
vela = {r["test"]: r for r in json.loads(sys.argv[1])}
llama = {}
for r in json.loads(sys.argv[2]):
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    llama[test] = {"tokens_per_second": r["avg_ts"], "stddev": r["stddev_ts"]}
print(f"{'test':6} {'vela t/s':>14} {'llama.cpp t/s':>16} {'ratio':>7}")
for test in ("pp512", "tg128"):
    v, l = vela[test], llama[test]
    print(f"{test:6} {v['tokens_per_second']:9.1f} ±{v['stddev']:5.1f} {l['tokens_per_second']:10.1f} ±{l['stddev']:5.1f}"
          f" {v['tokens_per_second'] / l['tokens_per_second']:6.2f}x")
gb, bw = int(sys.argv[3]) / 1e9, float(sys.argv[4])
v, l = gb * vela["tg128"]["tokens_per_second"], gb * llama["tg128"]["tokens_per_second"]
print(f"decode reads {gb * 1e3:.0f} MB/token: Vela {v:.1f} GB/s ({100 * v / bw:.0f}% of read bandwidth), "
      f"llama.cpp {l:.1f} GB/s ({100 * l / bw:.0f}%); STREAM-like read of {gb * 1e3:.0f} MB: {bw:.1f} GB/s")
PY

    v_rss=$(rss "$tmp/vela_ppl" "$bin/vela" perplexity -m "$model" -t "$threads" -c 512 --chunks "$chunks" \
            --kl-divergence-base "$tmp/vela.kld" "$text")
    l_rss=$(rss "$tmp/llama_ppl" "$llama/llama-perplexity" -m "$model" -t "$threads" -c 512 --chunks "$chunks" \
            -fa off -f "$text" --kl-divergence-base "$tmp/llama.kld")
    v_ppl=$(grep -o 'PPL = [0-9.]*' "$tmp/vela_ppl" | cut -d' ' -f3)
    l_ppl=$(grep -o 'Final estimate: PPL = [0-9.]*' "$tmp/llama_ppl" | awk '{print $5}')
    # llama.cpp (plain attention path) against Vela's distributions, and against its own plain
    # path with flash attention on: the noise floor of one engine changing only its arithmetic.
    "$llama/llama-perplexity" -m "$model" -t "$threads" -c 512 -fa off \
        --kl-divergence-base "$tmp/vela.kld" --kl-divergence > "$tmp/kl_vela" 2>&1
    "$llama/llama-perplexity" -m "$model" -t "$threads" -c 512 -fa on \
        --kl-divergence-base "$tmp/llama.kld" --kl-divergence > "$tmp/kl_self" 2>&1
    kl() { grep -E "^Mean +KLD:" "$1" | awk '{print $3}'; }
    top() { grep -E "^Same top p:" "$1" | awk '{print $4}'; }
    python3 - "$v_ppl" "$l_ppl" "$v_rss" "$l_rss" "$(kl "$tmp/kl_vela")" "$(top "$tmp/kl_vela")" \
        "$(kl "$tmp/kl_self")" "$(top "$tmp/kl_self")" "$chunks" <<'PY'
import sys
vp, lp, vr, lr = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"perplexity, GPL-3, -c 512, {sys.argv[9]} chunks: Vela {vp:.4f}, llama.cpp {lp:.4f} ({100 * (vp - lp) / lp:+.3f}%)")
print(f"peak RSS of that job: Vela {vr >> 10} MiB, llama.cpp {lr >> 10} MiB ({vr / lr:.2f}x)")
print(f"teacher-forced vs llama.cpp: same top token {sys.argv[6]}%, mean KLD {sys.argv[5]}; "
      f"llama.cpp's own noise floor (flash attention on vs off): {sys.argv[8]}%, mean KLD {sys.argv[7]}")
PY
done
