#!/usr/bin/env bash
# Times the decode of several builds in one call on one card, in the order given and then the
# first again (its two runs show the call's drift), and prints them side by side
# (compare_decode.py). Usage (repo root, GPU machine; the binaries' shared libraries on
# LD_LIBRARY_PATH; VELA_DECODE_KV / _MAX_BATCH / _BATCH / _CTX restrict every run alike):
#   bench/cuda/ab_decode.sh OUTDIR NAME=BENCH_BINARY [NAME=BENCH_BINARY ...]
set -uo pipefail
out=$1
shift
mkdir -p "$out"
args=()
for spec in "$@" "${1%%=*}-again=${1#*=}"; do
  name=${spec%%=*}
  timeout 300 "${spec#*=}" decode >"$out/decode-$name.md" 2>&1
  echo "$name exit $?"
  args+=("$name=$out/decode-$name.md")
done
python3 "$(dirname "$0")/compare_decode.py" "${args[@]}" | tee "$out/compare-decode.md"
