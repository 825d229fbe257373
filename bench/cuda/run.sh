#!/usr/bin/env bash
# Runs the CUDA attention tests, a compute-sanitizer pass, the Vela timing driver and the torch
# SDPA peer back to back on the same card, then the forward ratios (compare.py) and the decode
# peer beside Vela's bf16 decode (compare_decode.py). Usage (repo root, GPU machine):
#   [BENCH_SECTIONS="prefill backward sparse decode"] bench/cuda/run.sh OUTDIR [BINDIR]
# BINDIR holds prebuilt test_cuda_attention and bench_attention_cuda (plus any shared libraries
# the machine lacks, found through LD_LIBRARY_PATH=BINDIR); without it, builds with CMake.
set -uo pipefail
out=${1:-/tmp/vela-cuda-bench}
bin=${2:-}
mkdir -p "$out"
if [[ -z "$bin" ]]; then
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DVELA_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90a >"$out/cmake.log" || exit 1
  ninja -C build-cuda -j16 test_cuda_attention bench_attention_cuda >"$out/build.log" || exit 1
  bin=build-cuda/bin
fi
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export VELA_SOURCE_DIR=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
# Every step has a time limit: a kernel that hangs must not eat the machine's lease.
timeout 300 "$bin/test_cuda_attention" >"$out/tests.log" 2>&1
echo "tests exit $?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED|Failure|Expected|Which is|rel " "$out/tests.log" | head -60
timeout 240 compute-sanitizer --tool memcheck "$bin/test_cuda_attention" \
  --gtest_filter='All/PrefillSmall.*/1:All/Decode.*/19:All/Decode.*/20:All/Decode.*/21:Prefill.PagedBlockSize1Gqa8:All/BackwardSmall.*/7:Backward.SlidingWindowCausal' >"$out/memcheck.log" 2>&1
echo "memcheck exit $?"; tail -3 "$out/memcheck.log"
timeout 240 compute-sanitizer --tool racecheck "$bin/test_cuda_attention" \
  --gtest_filter='All/PrefillSmall.OddLengthsGqa4/1:All/PrefillSmall.BlockSparseHalfDensity/3:All/Decode.*/3:All/Decode.*/5:All/BackwardSmall.*/3' >"$out/racecheck.log" 2>&1
echo "racecheck exit $?"; tail -3 "$out/racecheck.log"
timeout 120 compute-sanitizer --tool synccheck "$bin/test_cuda_attention" \
  --gtest_filter='All/PrefillSmall.OddLengthsGqa4/5:All/PrefillSmall.PrefixCachedBatch17Paged/9' >"$out/synccheck.log" 2>&1
echo "synccheck exit $?"; tail -1 "$out/synccheck.log"
timeout 400 "$bin/bench_attention_cuda" ${BENCH_SECTIONS:-} | tee "$out/vela.md"
sections=${BENCH_SECTIONS:-prefill backward}
if [[ $sections == *prefill* || $sections == *backward* ]]; then
  timeout 400 python3 bench/cuda/sdpa_peer.py | tee "$out/sdpa.md"
  python3 bench/cuda/compare.py "$out/vela.md" "$out/sdpa.md" | tee "$out/compare.md"
fi
timeout 300 python3 bench/cuda/sdpa_peer.py --decode | tee "$out/sdpa-decode.md"
python3 bench/cuda/compare_decode.py sdpa="$out/sdpa-decode.md" vela="$out/vela.md" \
  | tee "$out/compare-decode.md"
