#!/usr/bin/env bash
# Quality of the quantised KV formats, Vela beside llama.cpp on the same GGUF and text: each
# engine's f16-KV run writes a base of every scored token's distribution (llama-perplexity's
# --kl-divergence-base format), then each quantised format of the same engine is compared with
# its own base: mean KL divergence, same-top-token rate, and perplexity change.
#
# Bits per stored value (scales included) do not depend on head_dim (a multiple of 32): f16 16,
# q8 / q8_0 8.5, q4_0 4.5, q4_1 5, q5_1 6. Vela's q4 V: 4 + 32 / group (an fp16 scale and min per
# group of --kv-quant-group values, default 32: 5 bits); its q4 K: 4 + 32 / block (KIVI: an fp16
# scale and min per channel per block of --kv-block-size tokens, default 16: 6 bits); its q8:
# 8 + 16 / group. So blocks and groups of 64 spend exactly q4_0's 4.5 bits, of 32 q4_1's 5, and
# the defaults (6 / 5) llama.cpp's q5_1 K + q4_1 V.
#
#   scripts/bench_kv_quality.sh LLAMA_CPP_BIN_DIR [model] [chunks] [ctx]
#
# Environment: TEXT (default Debian's GPL-3), VELA_KV and LLAMA_KV (the formats to run, as the
# lists below), VELA (the binary), VELA_BASE_KV (Vela's base run, default f16; f32 measures f16
# KV itself: VELA_KV="f16/f16/16/32 ...").
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA=$1
MODEL=${2:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
CHUNKS=${3:-14}
CTX=${4:-512}
VELA=${VELA:-build/release/bin/vela}
TEXT=${TEXT:-/usr/share/common-licenses/GPL-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LD_LIBRARY_PATH="$LLAMA${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "model $MODEL, $CHUNKS chunks of $CTX, $(basename "$TEXT"), 2 threads"
bits() {  # bits per value of format $1 for K ($2 = k) or V, Vela's block $3 and group $4
    case $1 in
        f16) echo 16 ;; q8_0) echo 8.5 ;; q4_0) echo 4.5 ;; q4_1) echo 5 ;; q5_1) echo 6 ;;
        q8) awk -v g="$4" 'BEGIN { print 8 + 16 / g }' ;;
        q4) if [ "$2" = k ]; then awk -v b="$3" 'BEGIN { print 4 + 32 / b }'
            else awk -v g="$4" 'BEGIN { print 4 + 32 / g }'; fi ;;
    esac
}
echo "| engine | KV (K / V) | bits (K / V) | mean KLD | same top | PPL vs f16 |"
echo "|---|---|---|---:|---:|---:|"
"$VELA" perplexity -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" "$TEXT" \
    --kv-type "${VELA_BASE_KV:-f16}" --kl-divergence-base "$tmp/vela.kld" >/dev/null 2>&1
# K, V, block size, group size
VELA_KV=${VELA_KV:-"q8/q8/16/32 q8/q4/16/32 q8/f16/16/32 q4/q4/16/32 q4/f16/16/32 q4/q4/32/32 q4/q4/64/64"}
LLAMA_KV=${LLAMA_KV:-"q8_0/q8_0 q8_0/q4_0 q4_0/q4_0 q8_0/f16 q4_1/q4_1 q5_1/q4_1"}
for kv in $VELA_KV; do
    kv=${kv//\// }
    set -- $kv
    line=$("$VELA" perplexity -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" "$TEXT" \
        --kv-type-k "$1" --kv-type-v "$2" --kv-block-size "$3" --kv-quant-group "$4" \
        --kl-divergence "$tmp/vela.kld" 2>/dev/null | grep "^KL")
    kld=$(sed -nE 's/.*mean ([0-9.-]+) .*/\1/p' <<<"$line")
    top=$(sed -nE 's/.*same top token ([0-9.]+)%.*/\1/p' <<<"$line")
    dppl=$(sed -nE 's/.*base ([+-][0-9.]+)%.*/\1/p' <<<"$line")
    echo "| vela (block $3, group $4) | $1 / $2 | $(bits "$1" k "$3" "$4") / $(bits "$2" v "$3" "$4") | $kld | $top% | $dppl% |"
done
"$LLAMA/llama-perplexity" -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" -f "$TEXT" -fa on \
    --kl-divergence-base "$tmp/llama.kld" >/dev/null 2>&1
for kv in $LLAMA_KV; do
    kv=${kv//\// }
    set -- $kv
    out=$("$LLAMA/llama-perplexity" -m "$MODEL" -t 2 -c "$CTX" --chunks "$CHUNKS" -f "$TEXT" \
        -fa on -ctk "$1" -ctv "$2" --kl-divergence-base "$tmp/llama.kld" --kl-divergence 2>&1)
    kld=$(sed -nE 's/^Mean +KLD: +([0-9.-]+).*/\1/p' <<<"$out")
    top=$(sed -nE 's/^Same top p: +([0-9.]+).*/\1/p' <<<"$out")
    ratio=$(sed -nE 's/^Mean PPL\(Q\)\/PPL\(base\) +: +([0-9.]+).*/\1/p' <<<"$out")
    dppl=$(awk -v r="$ratio" 'BEGIN { printf "%+.3f", 100 * (r - 1) }')
    echo "| llama.cpp | $1 / $2 | $(bits "$1" k) / $(bits "$2" v) | $kld | $top% | $dppl% |"
done
