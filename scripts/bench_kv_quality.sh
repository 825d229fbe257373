#!/usr/bin/env bash
# Quality of the quantised KV formats, Vela beside llama.cpp on the same GGUF and text: each
# engine's f16-KV run writes a base of every scored token's distribution (llama-perplexity's
# --kl-divergence-base format), then each quantised format of the same engine is compared with
# its own base: mean KL divergence, same-top-token rate, and perplexity change.
#
# Bits per stored value (scales included) do not depend on head_dim (a multiple of 32): f16 16,
# q8 / q8_0 8.5, q4_0 4.5, q4_1 5, q5_1 6; Vela's q4 V 5 (an fp16 scale and min per 32 values),
# q4 K 6 (KIVI: an fp16 scale and min per channel per block of 16 tokens, Vela's default
# block). llama.cpp's q5_1 K + q4_1 V spends exactly the bits of Vela's q4 K + q4 V.
#
#   scripts/bench_kv_quality.sh LLAMA_CPP_BIN_DIR [model] [chunks] [ctx]
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA=$1
MODEL=${2:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
CHUNKS=${3:-14}
CTX=${4:-512}
VELA=${VELA:-build/release/bin/vela}
TEXT=/usr/share/common-licenses/GPL-3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LD_LIBRARY_PATH="$LLAMA${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "model $MODEL, $CHUNKS chunks of $CTX, $(basename "$TEXT"), 2 threads"
bits() {  # bits per value of format $1 for K ($2 = k) or V
    case $1 in
        f16) echo 16 ;; q8 | q8_0) echo 8.5 ;; q4_0) echo 4.5 ;; q4_1) echo 5 ;; q5_1) echo 6 ;;
        q4) if [ "$2" = k ]; then echo 6; else echo 5; fi ;;
    esac
}
echo "| engine | KV (K / V) | bits (K / V) | mean KLD | same top | PPL vs f16 |"
echo "|---|---|---|---:|---:|---:|"
"$VELA" perplexity -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" "$TEXT" \
    --kl-divergence-base "$tmp/vela.kld" >/dev/null 2>&1
for kv in "q8 q8" "q8 q4" "q8 f16" "q4 q4" "q4 f16"; do
    set -- $kv
    line=$("$VELA" perplexity -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" "$TEXT" \
        --kv-type-k "$1" --kv-type-v "$2" --kl-divergence "$tmp/vela.kld" 2>/dev/null | grep "^KL")
    kld=$(sed -nE 's/.*mean ([0-9.-]+) .*/\1/p' <<<"$line")
    top=$(sed -nE 's/.*same top token ([0-9.]+)%.*/\1/p' <<<"$line")
    dppl=$(sed -nE 's/.*base ([+-][0-9.]+)%.*/\1/p' <<<"$line")
    echo "| vela | $1 / $2 | $(bits "$1" k) / $(bits "$2" v) | $kld | $top% | $dppl% |"
done
"$LLAMA/llama-perplexity" -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" -f "$TEXT" -fa on \
    --kl-divergence-base "$tmp/llama.kld" >/dev/null 2>&1
for kv in "q8_0 q8_0" "q8_0 q4_0" "q4_0 q4_0" "q8_0 f16" "q4_1 q4_1" "q5_1 q4_1"; do
    set -- $kv
    out=$("$LLAMA/llama-perplexity" -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" -f "$TEXT" \
        -fa on -ctk "$1" -ctv "$2" --kl-divergence-base "$tmp/llama.kld" --kl-divergence 2>&1)
    kld=$(sed -nE 's/^Mean +KLD: +([0-9.-]+).*/\1/p' <<<"$out")
    top=$(sed -nE 's/^Same top p: +([0-9.]+).*/\1/p' <<<"$out")
    ratio=$(sed -nE 's/^Mean PPL\(Q\)\/PPL\(base\) +: +([0-9.]+).*/\1/p' <<<"$out")
    dppl=$(awk -v r="$ratio" 'BEGIN { printf "%+.3f", 100 * (r - 1) }')
    echo "| llama.cpp | $1 / $2 | $(bits "$1" k) / $(bits "$2" v) | $kld | $top% | $dppl% |"
done
