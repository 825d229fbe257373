#!/usr/bin/env bash
# Build llama.cpp with CUDA for the H200 (sm_90): llama-bench, llama-perplexity, llama-quantize,
# llama-server, llama-cli, as shared libraries, the peer of Vela's CUDA benchmarks.
#
#   bench/gpu/build_llama_cpp.sh SRC BUILD_DIR
#
# SRC is llama.cpp's source (the tree vendored in llama-cpp-python 0.3.36, trimmed: .peer/llama.cpp,
# never committed). Binaries and libraries land in BUILD_DIR/bin; the binaries carry an
# RPATH of $ORIGIN, so they find their libraries beside them wherever bin/ is copied (no
# LD_LIBRARY_PATH needed; setting LD_LIBRARY_PATH=BUILD_DIR/bin does no harm).
#
# Re-running continues an interrupted build (the configure step is skipped when BUILD_DIR is
# already configured). Environment:
#   JOBS=N              ninja's parallelism (default: nproc)
#   BUILD_TIMEOUT_S=S   stop ninja after S seconds (exit 3: run again to continue), so a build can
#                       be split over calls with a wall-clock limit; 0 (default) = no limit
#   LLAMA_CPP_COMMIT    build id llama.cpp prints (default 0c1e570, the commit vendored in
#                       llama-cpp-python 0.3.36, as docs/benchmarks.md names it)
# No network is needed: no curl, no OpenSSL, no prebuilt web UI download, no NCCL.
set -euo pipefail

src="${1:?usage: $0 SRC BUILD_DIR}"
build="${2:?usage: $0 SRC BUILD_DIR}"
jobs="${JOBS:-$(nproc)}"
budget="${BUILD_TIMEOUT_S:-0}"
targets=(llama-bench llama-perplexity llama-quantize llama-server llama-cli)

[[ -f "$src/CMakeLists.txt" && -d "$src/ggml/src/ggml-cuda" ]] ||
    { echo "build_llama_cpp.sh: $src is not a llama.cpp source tree with ggml-cuda" >&2; exit 2; }
src="$(cd "$src" && pwd)"
mkdir -p "$build"
build="$(cd "$build" && pwd)"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

t0=$(date +%s)
if [[ ! -f "$build/build.ninja" ]]; then
    # GIT_CEILING_DIRECTORIES: SRC has no .git of its own; without this, llama.cpp's and ggml's
    # build info would report the commit of whatever repository SRC sits in (Vela's).
    # shellcheck disable=SC2016  # $ORIGIN is for the linker, not the shell
    GIT_CEILING_DIRECTORIES="$(dirname "$src")" cmake -S "$src" -B "$build" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA_ALL_QUANTS=OFF \
        -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
        -DBUILD_SHARED_LIBS=ON \
        -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON '-DCMAKE_BUILD_RPATH=$ORIGIN' \
        -DLLAMA_BUILD_COMMIT="${LLAMA_CPP_COMMIT:-0c1e570}"
    echo "configured in $(( $(date +%s) - t0 )) s"
else
    echo "$build already configured: continuing the build"
fi

rc=0
if [[ "$budget" -gt 0 ]]; then
    timeout --signal=INT --kill-after=30 "$budget" ninja -C "$build" -j"$jobs" "${targets[@]}" || rc=$?
else
    ninja -C "$build" -j"$jobs" "${targets[@]}" || rc=$?
fi
elapsed=$(( $(date +%s) - t0 ))
if [[ $rc -eq 124 || $rc -eq 130 ]]; then
    echo "build_llama_cpp.sh: stopped after ${elapsed} s (BUILD_TIMEOUT_S=$budget); run again to continue" >&2
    exit 3
elif [[ $rc -ne 0 ]]; then
    echo "build_llama_cpp.sh: ninja failed (rc $rc) after ${elapsed} s" >&2
    exit 1
fi
echo "built ${targets[*]} in ${elapsed} s (-j$jobs)"

# Sanity: every binary resolves its libraries; print the build id.
for t in "${targets[@]}"; do
    if ldd "$build/bin/$t" | grep -q "not found"; then
        ldd "$build/bin/$t" >&2
        echo "build_llama_cpp.sh: $t has unresolved libraries" >&2
        exit 1
    fi
done
"$build/bin/llama-cli" --version 2>&1 | tail -n 3 || true
ls -la "$build/bin"
