#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine: build dependencies, the default model, a Release build.
# Idempotent: each step is skipped when already done. Set VELA_WERROR=1 for warnings-as-errors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

packages=(build-essential cmake ninja-build ccache pkg-config git python3 python3-pip
          libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
          libcli11-dev libfmt-dev libre2-dev libxxhash-dev libopenblas-dev
          # clang and its compiler-rt (libFuzzer, ASan, UBSan) for the `fuzz` preset, which
          # scripts/ci_checks.sh runs in CI.
          clang libclang-rt-14-dev
          # mpirun, which the tensor-parallel tests launch ranks with (tests/server).
          openmpi-bin)
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

# PyPI packages for the server tests (official openai client) and scripts/load_test.py, pinned
# so that a new release of one cannot change what the suite checks between two CI runs. These
# are the versions the suite was last run with; bump them deliberately.
py_pins=(openai==3.63.0 pytest==9.2.0 requests==2.34.2)
if ! python3 - "${py_pins[@]}" 2>/dev/null <<'PY'
import importlib.metadata as md, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    if md.version(name) != version:
        sys.exit(1)
PY
then
    python3 -m pip install --quiet "${py_pins[@]}" ||
        python3 -m pip install --quiet --break-system-packages "${py_pins[@]}"
fi

cmake_args=()
if [ "${VELA_WERROR:-0}" = "1" ]; then cmake_args+=(-DVELA_WERROR=ON); fi
cmake --preset release "${cmake_args[@]}" >/dev/null
cmake --build --preset release
