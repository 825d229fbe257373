#!/usr/bin/env bash
# Reverse of bench/gpu/pack_llama_cpp.sh: join the parts, check the sha256, unpack to DEST/bin.
#
#   bench/gpu/unpack_llama_cpp.sh PARTS_DIR DEST
#
# Then DEST/bin/llama-bench etc. run as they are (RPATH $ORIGIN finds the libraries beside them).
set -euo pipefail

parts="${1:?usage: $0 PARTS_DIR DEST}"
dest="${2:?usage: $0 PARTS_DIR DEST}"
name=llama-cpp-cuda.tar.xz

shopt -s nullglob
parts="$(cd "$parts" && pwd)"
files=("$parts/$name".part-*)
[[ ${#files[@]} -gt 0 ]] || { echo "unpack_llama_cpp.sh: no $name.part-* in $parts" >&2; exit 1; }
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat "${files[@]}" > "$tmp/$name"  # the glob sorts part-aa, part-ab, ...
if [[ -f "$parts/$name.sha256" ]]; then
    (cd "$tmp" && sha256sum -c --quiet "$parts/$name.sha256") ||
        { echo "unpack_llama_cpp.sh: sha256 of the joined parts does not match" >&2; exit 1; }
else
    echo "unpack_llama_cpp.sh: no $name.sha256 in $parts; not checked" >&2
fi
xz -dc "$tmp/$name" | tar -C "$dest" -xf -
for p in "$dest"/bin/llama-*; do
    p="$(basename "$p")"
    if ldd "$dest/bin/$p" | grep -q "not found"; then
        ldd "$dest/bin/$p" >&2
        echo "unpack_llama_cpp.sh: $p has unresolved libraries" >&2
        exit 1
    fi
done
echo "unpacked to $dest/bin"
