#!/usr/bin/env bash
# KV formats side by side: perplexity of Vela (f16, q8, q8 K + q4 V) and llama.cpp (f16, q8_0,
# q8_0 K + q4_0 V, q4_0; flash attention on, which llama.cpp needs for quantised V) on the same
# GGUF, text and context; then Vela's decode speed after a 4096-token context per format.
# Usage: scripts/bench_kv_formats.sh <llama.cpp bin folder> [model.gguf] [chunks]
set -eu
llama_bin="$1"
model="${2:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
chunks="${3:-14}"
vela="${VELA_BIN:-build/bin/vela}"
text=/usr/share/common-licenses/GPL-3
uptime
for kv in "--kv-type f16" "--kv-type q8" "--kv-type-k q8 --kv-type-v q4"; do
    echo "vela $kv: $("$vela" perplexity -m "$model" -t 2 -c 512 --chunks "$chunks" $kv "$text" \
        2>&1 | grep 'Final estimate')"
done
for kv in "f16 f16" "q8_0 q8_0" "q8_0 q4_0" "q4_0 q4_0"; do
    set -- $kv
    echo "llama.cpp -ctk $1 -ctv $2: $("$llama_bin/llama-perplexity" -m "$model" -t 2 -c 512 \
        --chunks "$chunks" -fa on -ctk "$1" -ctv "$2" -f "$text" 2>&1 | grep 'Final estimate')"
done
uptime
for kv in "--kv-type f16" "--kv-type q8" "--kv-type-k q8 --kv-type-v q4"; do
    echo "vela bench $kv: $("$vela" bench -m "$model" -t 1 -p 0 -n 16 -d 4096 -r 2 $kv | tail -1)"
done
