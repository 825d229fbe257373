#!/usr/bin/env bash
# Pack a built llama.cpp (bench/gpu/build_llama_cpp.sh) so it can leave the device through $OUT
# and be carried into a later call: the five programs and their shared libraries, stripped, in
# one tar.xz split into parts of at most 15 MiB, with a sha256 of the whole.
#
#   bench/gpu/pack_llama_cpp.sh BUILD_DIR OUTDIR
#
# Writes OUTDIR/llama-cpp-cuda.tar.xz.part-aa, -ab, ... and OUTDIR/llama-cpp-cuda.tar.xz.sha256.
# Unpack with bench/gpu/unpack_llama_cpp.sh OUTDIR DEST (DEST/bin/llama-bench ...).
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR OUTDIR}"
outdir="${2:?usage: $0 BUILD_DIR OUTDIR}"
# PROGRAMS overrides the list (space-separated), e.g. for a partial build.
read -r -a programs <<< "${PROGRAMS:-llama-bench llama-perplexity llama-quantize llama-server llama-cli}"
bin="$build/bin"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$outdir"
for p in "${programs[@]}"; do
    [[ -x "$bin/$p" ]] || { echo "pack_llama_cpp.sh: $bin/$p missing" >&2; exit 1; }
    cp "$bin/$p" "$stage/bin/"
done
# The shared libraries the programs load, by their file names in bin/ (symlinks kept as links).
shopt -s nullglob
libs=("$bin"/lib*.so*)
[[ ${#libs[@]} -gt 0 ]] || { echo "pack_llama_cpp.sh: no shared libraries in $bin" >&2; exit 1; }
cp -P "${libs[@]}" "$stage/bin/"
# Strip real files only (not symlinks); device code in libggml-cuda survives strip.
for f in "$stage"/bin/*; do
    [[ -L "$f" ]] && continue
    case "$f" in
        *.so*) strip --strip-unneeded "$f" ;;
        *) strip "$f" ;;
    esac
done
# Every library a program needs from bin/ must be in the pack.
for p in "${programs[@]}"; do
    if LD_LIBRARY_PATH='' ldd "$stage/bin/$p" | grep -q "not found"; then
        ldd "$stage/bin/$p" >&2
        echo "pack_llama_cpp.sh: $p needs a library that is not packed" >&2
        exit 1
    fi
done
du -sh "$stage/bin"

name=llama-cpp-cuda.tar.xz
rm -f "$outdir/$name".part-* "$outdir/$name.sha256"
tar -C "$stage" -cf - bin | xz -6 -T0 > "$stage/$name"
(cd "$stage" && sha256sum "$name") > "$outdir/$name.sha256"
split -b 15M "$stage/$name" "$outdir/$name.part-"
ls -la "$outdir"
packed=("$outdir/$name".part-*)
echo "packed $(du -h "$stage/$name" | cut -f1) in ${#packed[@]} part(s) of at most 15 MiB"
