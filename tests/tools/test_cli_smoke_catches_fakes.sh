#!/usr/bin/env bash
# Tests the gate: test_cli_smoke.sh must pass on the real `vela` and fail on each fake below,
# with a FAIL line that names the broken behaviour. A smoke test that ignores exit codes or
# accepts any output would pass a binary that does not work (it once did).
#   usage: test_cli_smoke_catches_fakes.sh SMOKE_SCRIPT VELA MODEL
set -u
smoke="$1"
real="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
model="$3"
fails=0
passes=0

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# fake NAME BODY: an executable bash script $tmp/NAME with BODY ($real is the real binary).
fake() {
    printf '#!/usr/bin/env bash\nreal=%q\n%s\n' "$real" "$2" >"$tmp/$1"
    chmod +x "$tmp/$1"
}

# Stand-alone fakes: no model is run at all.
fake segfault 'kill -SEGV $$'
fake silent 'exit 0'
fake noise 'head -c 1500 /dev/urandom | base64 -w 76'
# Wrappers around the real binary that break one behaviour each, so that each check is shown
# to be needed rather than only the first one reached.
fake crash_after_output '"$real" "$@"; kill -SEGV $$'
fake exit_status_1 '"$real" "$@"; exit 1'
fake ignores_seed 'args=(); skip=0
for a in "$@"; do
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    if [ "$a" = --seed ]; then skip=1; continue; fi
    args+=("$a")
done
exec "$real" "${args[@]}"'
fake ppl_too_high '[ "$1" = perplexity ] || exec "$real" "$@"
"$real" "$@" | sed -E "s/PPL = [0-9.]+/PPL = 312.5000/"; exit "${PIPESTATUS[0]}"'
fake ppl_nan '[ "$1" = perplexity ] || exec "$real" "$@"
"$real" "$@" | sed -E "s/PPL = [0-9.]+/PPL = nan/"; exit "${PIPESTATUS[0]}"'
fake bench_zero '[ "$1" = bench ] || exec "$real" "$@"
"$real" "$@" | sed -E "s/\| [0-9.]+ ± /| 0.00 ± /"; exit "${PIPESTATUS[0]}"'
fake wrong_arch '[ "$1" = info ] || exec "$real" "$@"
"$real" "$@" | sed -E "s/^architecture: +llama/architecture:  gpt2/"; exit "${PIPESTATUS[0]}"'

# expect_fail NAME PATTERN: the smoke test fails on fake NAME, and its report matches PATTERN.
expect_fail() {
    local out status
    out="$(timeout 300 "$smoke" "$tmp/$1" "$model" 2>&1)"; status=$?
    if [ "$status" -eq 0 ]; then
        echo "FAIL: the smoke test passed the fake '$1':"; echo "$out" | tail -5
        fails=$((fails + 1))
    elif ! grep -qE -- "$2" <<<"$out"; then
        echo "FAIL: fake '$1' failed the smoke test, but not with /$2/:"; echo "$out" | head -10
        fails=$((fails + 1))
    else
        echo "ok: fake '$1' caught: $(grep -m1 -E -- "$2" <<<"$out")"
        passes=$((passes + 1))
    fi
}

out="$("$smoke" "$real" "$model" 2>&1)"
if [ $? -eq 0 ]; then passes=$((passes + 1)); else
    echo "FAIL: the smoke test fails on the real vela:"; echo "$out"; fails=$((fails + 1)); fi

expect_fail segfault "status 139 \(signal 11\)"
expect_fail silent "empty output|expected /Paris/"
expect_fail noise "expected /Paris/|outputs differ"
expect_fail crash_after_output "signal 11"
expect_fail exit_status_1 "exited with status 1$"
expect_fail ignores_seed "the same --seed gives the same text: outputs differ"
expect_fail ppl_too_high "perplexity of English text: '312.5000' is not a number"
expect_fail ppl_nan "perplexity of English text: 'nan' is not a number"
expect_fail bench_zero "bench pp32 tokens/s .*'0.00' is not a number"
expect_fail wrong_arch "info architecture"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
