#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine: build dependencies, the default model, a Release build.
# Idempotent: each step is skipped when already done. Set VELA_WERROR=1 for warnings-as-errors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

packages=(build-essential cmake ninja-build ccache pkg-config git python3 python3-pip
          libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
          libcli11-dev libfmt-dev libre2-dev libxxhash-dev libopenblas-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

"$root/scripts/fetch_model.sh"

# PyPI packages for the server tests (official openai client) and scripts/load_test.py.
if ! python3 -c "import openai, pytest, requests" 2>/dev/null; then
    python3 -m pip install --quiet openai pytest requests ||
        python3 -m pip install --quiet --break-system-packages openai pytest requests
fi

cmake_args=()
if [ "${VELA_WERROR:-0}" = "1" ]; then cmake_args+=(-DVELA_WERROR=ON); fi
cmake --preset release "${cmake_args[@]}" >/dev/null
cmake --build --preset release
