#!/usr/bin/env bash
# Every `vela` subcommand runs on the default model and prints what a user expects.
set -u
vela="$1"
model="$2"
fails=0
passes=0
check() {  # check "description" "pattern" output
    if grep -qE -- "$2" <<<"$3"; then passes=$((passes + 1)); else
        echo "FAIL: $1: expected /$2/ in:"; echo "$3" | head -20; fails=$((fails + 1)); fi
}

out="$("$vela" generate -m "$model" -t 2 -p "The capital of France is" -n 8 --temperature 0 2>&1)"
check "generate greedy" "Paris" "$out"
check "generate speeds" "prompt: [0-9]+ tokens .* decode [0-9.]+ tok/s" "$out"

a="$("$vela" generate -m "$model" -t 2 -p "Once upon a time" -n 24 --seed 7 --temperature 0.9 2>/dev/null)"
b="$("$vela" generate -m "$model" -t 2 -p "Once upon a time" -n 24 --seed 7 --temperature 0.9 2>/dev/null)"
check "seeded sampling is reproducible" "^$(printf '%s' "$a" | head -c 40 | sed 's/[][\.*^$?+(){}|/]/\\&/g')" "$b"

out="$("$vela" generate -m "$model" -t 2 -p "Count: one, two, three," -n 64 --temperature 0 --stop "six" 2>&1)"
check "stop string ends generation" "finish: stop" "$out"

out="$(printf 'What is 2+2?\nAnd times 3?\n/exit\n' | "$vela" chat -m "$model" -t 2 -n 32 --temperature 0 2>&1)"
check "chat answers two turns" "." "$out"

out="$("$vela" info -m "$model" 2>&1)"
check "info architecture" "architecture: +llama" "$out"
check "info heads" "9 query, 3 key/value" "$out"
check "info tokenizer" "gpt2 / pre-tokenizer smollm, 49152 tokens" "$out"

out="$("$vela" bench -m "$model" -t 2 -p 32 -n 8 -r 1 2>&1)"
check "bench table" "\| pp32 \| [0-9.]+" "$out"
check "bench table" "\| tg8 \| [0-9.]+" "$out"

out="$("$vela" perplexity -m "$model" -t 2 -c 128 --chunks 2 /usr/share/common-licenses/GPL-3 2>&1)"
check "perplexity" "Final estimate: PPL = [0-9.]+" "$out"

out="$("$vela" --help 2>&1)"
check "help lists subcommands" "generate.*" "$out"
out="$("$vela" generate --help 2>&1)"
check "generate help" "--top-p" "$out"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
