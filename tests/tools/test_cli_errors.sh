#!/usr/bin/env bash
# Bad input to the `vela` command line: each case must exit non-zero with a one-line error that
# names the problem, never crash (exit status >= 128 means a signal).
set -u
vela="$1"
model="$2"
fails=0
passes=0

expect_error() {  # expect_error "pattern" args...
    local pattern="$1"; shift
    local out status
    out="$("$vela" "$@" 2>&1 >/dev/null)"; status=$?
    if [ "$status" -eq 0 ] || [ "$status" -ge 128 ] || ! grep -qiE -- "$pattern" <<<"$out"; then
        echo "FAIL: vela $* -> status $status, stderr: $out"
        fails=$((fails + 1))
    else
        passes=$((passes + 1))
    fi
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
head -c 100000 /dev/urandom > "$tmp/random.gguf"
printf 'GGUF\x03\x00\x00\x00' > "$tmp/truncated.gguf"
head -c 4000000 "$model" > "$tmp/cut.gguf"
: > "$tmp/empty.txt"
chmod 000 "$tmp/random.gguf" 2>/dev/null; cp "$model" "$tmp/noperm.gguf" 2>/dev/null; chmod 000 "$tmp/noperm.gguf"
chmod 644 "$tmp/random.gguf"

expect_error "not found" generate -m /nonexistent/model.gguf -p hi
expect_error "not a GGUF file" generate -m "$tmp/random.gguf" -p hi
expect_error "truncated" generate -m "$tmp/truncated.gguf" -p hi
expect_error "outside the file|truncated" generate -m "$tmp/cut.gguf" -p hi
expect_error "not a GGUF|truncated|not a regular" info -m "$tmp"
expect_error "prompt is empty" generate -m "$model" -p ""
expect_error "prompt is empty" generate -m "$model" -f "$tmp/empty.txt"
expect_error "cannot read" generate -m "$model" -f /nonexistent/prompt.txt
expect_error "context" generate -m "$model" -c 16 -p "$(printf 'word %.0s' {1..64})"
expect_error "temperature" generate -m "$model" -p hi --temperature -1
expect_error "no CUDA backend" generate -m "$model" -p hi --device cuda
expect_error "device" generate -m "$model" -p hi --device tpu
expect_error "kv-type" generate -m "$model" -p hi --kv-type q3
expect_error "top_p|top-p" generate -m "$model" -p hi --top-p 1.5
expect_error "top_p|top-p" generate -m "$model" -p hi --top-p nan
expect_error "min_p|min-p" generate -m "$model" -p hi --min-p -0.5
expect_error "max_tokens|max-tokens" generate -m "$model" -p hi -n 0
expect_error "ctx-size|ctx_size|range" generate -m "$model" -p hi -c -5
expect_error "threads|range" generate -m "$model" -p hi -t -2
expect_error "fewer than one context" perplexity -m "$model" -c 4096 /etc/hostname
if [ "$(id -u)" -ne 0 ]; then expect_error "cannot open" generate -m "$tmp/noperm.gguf" -p hi; fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
