#!/usr/bin/env bash
# On the GPU machine: a GGUF with Llama-3-8B's exact shapes and random weights (F16, from
# scripts/make_shape_gguf.py), quantised by llama.cpp's llama-quantize to Q8_0 and Q4_K_M, with
# sizes and times. The benchmark runs on these files come after (the caller's).
#
#   bench/gpu/shapes.sh LLAMA_BIN_DIR OUT
#
# LLAMA_BIN_DIR holds llama-quantize (bench/gpu/build_llama_cpp.sh's BUILD_DIR/bin, or
# unpack_llama_cpp.sh's DEST/bin). Everything is logged to OUT/shapes.log. Environment:
#   SHAPE=llama3-8b      make_shape_gguf.py --shape (qwen25-7b, tiny, ...)
#   SHAPE_DIR=/tmp/shapes  where the GGUFs go (~30 GB for llama3-8b); files already there are kept
#   QUANTS="Q8_0 Q4_K_M" llama-quantize types
#   LAYERS=N             override the layer count (a quick run)
# The `gguf` Python package comes from the environment, else from .whl/gguf-*.whl (pure Python,
# imported from the wheel itself; needs numpy, pyyaml: both present where transformers is).
set -euo pipefail

bin="${1:?usage: $0 LLAMA_BIN_DIR OUT}"
out="${2:?usage: $0 LLAMA_BIN_DIR OUT}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
bin="$(cd "$bin" && pwd)"

now_ms() { date +%s%3N; }
# secs A B: A / B with 2 decimals (no bc on every machine)
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

main() {
    local shape="${SHAPE:-llama3-8b}" dir="${SHAPE_DIR:-/tmp/shapes}" quants="${QUANTS:-Q8_0 Q4_K_M}"
    local layers_arg=() tag="$shape"
    if [[ -n "${LAYERS:-}" ]]; then layers_arg=(--layers "$LAYERS"); tag="$shape-${LAYERS}l"; fi
    mkdir -p "$dir"
    echo "== shapes.sh $(date -u +%FT%TZ) on $(hostname): shape $tag, $(nproc) cores, into $dir"
    df -h "$dir" | tail -n 1
    [[ -x "$bin/llama-quantize" ]] || { echo "shapes.sh: no llama-quantize in $bin" >&2; return 1; }

    if ! python3 -c 'import gguf' 2>/dev/null; then
        local whls=("$repo"/.whl/gguf-*.whl) whl
        whl="${whls[0]}"
        [[ -f "$whl" ]] || { echo "shapes.sh: no gguf package and no $repo/.whl/gguf-*.whl" >&2; return 1; }
        export PYTHONPATH="$whl${PYTHONPATH:+:$PYTHONPATH}"
    fi
    python3 -c 'import gguf, numpy; print("gguf from", gguf.__file__, "| numpy", numpy.__version__)'

    local f16="$dir/$tag.f16.gguf" t0 t1
    if [[ -s "$f16" ]]; then
        echo "-- $f16 exists: kept"
    else
        echo "-- make_shape_gguf.py --shape $shape --type f16 ${layers_arg[*]}"
        t0=$(now_ms)
        python3 "$repo/scripts/make_shape_gguf.py" --shape "$shape" --type f16 "${layers_arg[@]}" \
            "$f16.tmp"
        mv "$f16.tmp" "$f16"
        t1=$(now_ms)
        echo "TIME generate f16: $(secs $((t1 - t0)) 1000) s"
    fi

    local q lower dst
    for q in $quants; do
        lower="$(echo "$q" | tr '[:upper:]' '[:lower:]')"
        dst="$dir/$tag.$lower.gguf"
        if [[ -s "$dst" ]]; then echo "-- $dst exists: kept"; continue; fi
        echo "-- llama-quantize $q"
        t0=$(now_ms)
        "$bin/llama-quantize" "$f16" "$dst.tmp" "$q" "$(nproc)" > "$out/quantize-$lower.log" 2>&1 ||
            { tail -n 30 "$out/quantize-$lower.log"; echo "shapes.sh: llama-quantize $q failed" >&2; return 1; }
        mv "$dst.tmp" "$dst"
        t1=$(now_ms)
        tail -n 4 "$out/quantize-$lower.log"
        echo "TIME quantize $q: $(secs $((t1 - t0)) 1000) s"
    done

    echo "-- files"
    local f size
    for f in "$dir/$tag".*.gguf; do
        size=$(stat -c %s "$f")
        printf 'SIZE %-50s %12d bytes  %6.2f GiB\n' "$(basename "$f")" "$size" "$(secs "$size" 1073741824)"
    done
    df -h "$dir" | tail -n 1
}

# Not in an || list: that would switch set -e off inside main. With pipefail, main's status is
# the script's.
main 2>&1 | tee "$out/shapes.log"
