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
# Random bytes from a printed seed, so that a failure on them can be replayed (VELA_TEST_SEED).
seed="${VELA_TEST_SEED:-$(( (RANDOM << 15) | RANDOM ))}"  # < 2^31: awk clamps larger seeds
echo "random.gguf: seed $seed (VELA_TEST_SEED=$seed replays it)"
# awk, not python3: scripts/ci_checks.sh runs this as a user who may not reach root's python.
LC_ALL=C awk -v seed="$seed" \
    'BEGIN { srand(seed); for (i = 0; i < 100000; i++) printf "%c", int(rand() * 256) }' \
    > "$tmp/random.gguf"
printf 'GGUF\x03\x00\x00\x00' > "$tmp/truncated.gguf"
head -c 4000000 "$model" > "$tmp/cut.gguf"
: > "$tmp/empty.txt"
cp "$model" "$tmp/noperm.gguf"; chmod 000 "$tmp/noperm.gguf"

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
# Without a usable GPU (a build without CUDA, or no device): refused by name, never a silent
# fallback to the CPU.
if ! nvidia-smi -L >/dev/null 2>&1; then
    expect_error "--device cuda: (this build has no CUDA backend|no usable CUDA device)" \
        generate -m "$model" -p hi --device cuda
fi
expect_error "device" generate -m "$model" -p hi --device tpu
expect_error "kv-type" generate -m "$model" -p hi --kv-type q3
expect_error "kv-type-k" generate -m "$model" -p hi --kv-type-k int4
expect_error "kv-type-v" perplexity -m "$model" --kv-type-v "" /etc/hostname
expect_error "fp8 KV is stored by the CUDA backend only" generate -m "$model" -p hi --device cpu --kv-type fp8
expect_error "spec-branches is for --spec ngram" generate -m "$model" -p hi --spec-branches 3
expect_error "spec-depth is for --spec draft" generate -m "$model" -p hi --spec-depth 3
# Tensor parallelism: splits that cannot be made, policies it cannot run, launches that mismatch.
expect_error "9 query heads do not split evenly" generate -m "$model" -p hi --device cpu --tensor-parallel 2
expect_error "tensor-parallel" generate -m "$model" -p hi --device cpu --tensor-parallel 0
expect_error "attention scores .* tensor parallelism" generate -m "$model" -p hi --device cpu \
    --tensor-parallel 3 --kv-evict h2o --kv-budget 64
OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 \
    expect_error "under mpirun with 2 processes" generate -m "$model" -p hi --device cpu --tensor-parallel 3
printf 'a short text' > "$tmp/short.txt"
expect_error "fewer than 4 prompts of 64" bench -m "$model" -p 64 -n 8 --spec ngram --parallel 4 -f "$tmp/short.txt"
expect_error "parallel" bench -m "$model" -p 64 -n 8 --spec ngram --parallel 0
expect_error "kv-evict" generate -m "$model" -p hi --kv-evict lru --kv-budget 64
expect_error "needs --kv-evict" generate -m "$model" -p hi --kv-budget 64
expect_error "needs a budget" generate -m "$model" -p hi --kv-evict h2o
expect_error "kv-budget" generate -m "$model" -p hi --kv-evict sinks --kv-budget 1.5
expect_error "kv-budget" perplexity -m "$model" --kv-evict tova --kv-budget -3 /etc/hostname
expect_error "beside 4 sinks" generate -m "$model" -p hi --kv-evict sinks --kv-budget 4
expect_error "top_p|top-p" generate -m "$model" -p hi --top-p 1.5
expect_error "top_p|top-p" generate -m "$model" -p hi --top-p nan
expect_error "min_p|min-p" generate -m "$model" -p hi --min-p -0.5
expect_error "max_tokens|max-tokens" generate -m "$model" -p hi -n 0
expect_error "ctx-size|ctx_size|range" generate -m "$model" -p hi -c -5
expect_error "threads|range" generate -m "$model" -p hi -t -2
expect_error "fewer than one context" perplexity -m "$model" -c 4096 /etc/hostname
# Root reads a mode-000 file, so this case only means something for another user: as root it is
# skipped loudly, and scripts/ci_checks.sh runs this script again as a non-root user with
# VELA_REQUIRE_NOPERM_CASE=1, which turns the skip into a failure.
if [ "$(id -u)" -ne 0 ]; then
    expect_error "cannot open" generate -m "$tmp/noperm.gguf" -p hi
elif [ "${VELA_REQUIRE_NOPERM_CASE:-0}" = 1 ]; then
    echo "FAIL: VELA_REQUIRE_NOPERM_CASE=1 but running as root: the no-permission case cannot run"
    fails=$((fails + 1))
else
    echo "SKIPPED: no-permission case (running as root, which reads mode-000 files);" \
         "scripts/ci_checks.sh runs it as a non-root user"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
