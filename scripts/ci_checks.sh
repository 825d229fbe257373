#!/usr/bin/env bash
# CI-only checks, run by .ci/run after the README's test command (scripts/test.sh, which set up
# the machine, built build/release and ran ctest). Kept out of scripts/test.sh because they cost
# two more builds and root rights that a user running the suite should not need:
#   fuzz     libFuzzer on the GGUF reader and the HTTP request parser (VELA_FUZZ_SECONDS each,
#            default 60, both at once: one per core); a crash, a hang over 10 s or a sanitizer
#            report fails CI and leaves the input under <build>/ci-fuzz/artifacts_*.
#   asan     the unit tests and the CLI tests under ASan + UBSan, a CPU-only build (the slow
#            model-parity, serving and server suites are left out: see step_asan).
#   noperm   the no-permission case of tests/tools/test_cli_errors.sh, which root cannot test
#            (root reads mode-000 files), as a non-root user.
# Usage: scripts/ci_checks.sh [step...] (default: noperm fuzz asan). VELA_CI_BUILD_DIR puts the
# build trees elsewhere (default: build/, as ci-fuzz and ci-asan); VELA_CI_VELA names the `vela`
# that noperm runs (default: build/release/bin/vela, from scripts/test.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build_dir="${VELA_CI_BUILD_DIR:-$root/build}"
fuzz_seconds="${VELA_FUZZ_SECONDS:-60}"
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
vela_bin="${VELA_CI_VELA:-$root/build/release/bin/vela}"

# --- fuzz ---

# fuzz_target NAME SEEDS: runs build/ci-fuzz/bin/NAME for $fuzz_seconds on a corpus started from
# SEEDS; output in the log (libFuzzer prints its own random seed: "INFO: Seed: N").
fuzz_target() {
    local name="$1" seeds="$2" dir="$build_dir/ci-fuzz"
    mkdir -p "$dir/corpus_$name" "$dir/artifacts_$name"
    "$dir/bin/$name" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts_$name/" \
        "$dir/corpus_$name" "$seeds" >"$dir/$name.log" 2>&1
}

step_fuzz() {
    local dir="$build_dir/ci-fuzz"
    # No VELA_WERROR here: these trees exist to find runtime faults; the release build is the
    # warnings gate, and clang warns about things gcc does not.
    cmake --preset fuzz -B "$dir" >/dev/null
    cmake --build "$dir" -j2 --target fuzz_gguf fuzz_http_request
    fuzz_target fuzz_gguf "$root/fuzz/seeds/gguf" & local gguf=$!
    fuzz_target fuzz_http_request "$root/fuzz/seeds/http" & local http=$!
    local failed=0 status
    for job in "fuzz_gguf:$gguf" "fuzz_http_request:$http"; do
        status=0; wait "${job#*:}" || status=$?
        local name="${job%%:*}"
        grep -E "^INFO: Seed:|^Done [0-9]+ runs|^stat::(number_of_executed_units|new_units_added)" \
            "$dir/$name.log" | sed "s/^/$name: /"
        if [ "$status" -ne 0 ]; then
            echo "FAIL: $name exited with status $status; the end of its log:"
            tail -60 "$dir/$name.log"
            ls -l "$dir/artifacts_$name"
            failed=1
        fi
    done
    return "$failed"
}

# --- asan ---

# Everything ctest runs, under ASan + UBSan, except the suites that push the 135M model through
# thousands of forward steps: under ASan at -O1 a model test runs about 10x slower than in
# Release, and the tests that keep two threads busy run one at a time (PROCESSORS 2, see
# cmake/vela.cmake), so these suites alone would take over an hour on 2 cores. Left out:
# - LlamaCppParity.* and float64_parity_* (model parity), Gemma3Parity's logits and greedy runs;
# - EngineServing.* and EngineSpec.* (serving with the model, on every backend; one EngineSpec
#   run took 113 s);
# - the speculative engine suites but two (RejectedDraftsNeverReachThePrefixCache, 136 s, and
#   PerRequestDraftLimit, 66 s, stay; GreedyIdenticalAlone took 313 s), the tree engine's greedy
#   comparison (its sampled run stays), the verifier's sampling statistics (102 s of arithmetic);
# - eviction's every-policy and no-op-budget runs (the swap/fork and speculation ones stay);
# - Gemma 3's local-group output runs (75 s in release; test_local_group's bookkeeping stays);
# - the scalar ISA's long verification-rows run (91 s; AVX2's stays);
# - server_openai (a sanitized server under the suite's 60 s request timeouts) and
#   cli_smoke_catches_fakes (cli_smoke run 11 times).
# The real model still runs under the sanitizers in cli_smoke and cli_errors, through `vela`.
asan_skip='^(LlamaCppParity\..*|float64_parity_.*|.*Engine(Serving|Spec)\..*|server_openai'
asan_skip+='|Gemma3Parity\.(TeacherForcedLogits|GreedyContinuationsMatch)'
asan_skip+='|SpecEngine\.(GreedyIdentical.*|StopsWhere.*|SampledRequests.*'
asan_skip+='|SelfSpeculationKeepsGreedyOutput|TokenTreeBranchesKeepGreedyOutput)'
asan_skip+='|VerifierDistribution\.EmittedTokensFollowTheTarget'
asan_skip+='|Built/BackendKvOps\.VerificationRowsAndDecodeBatchesInTurn/cpu_scalar.*'
asan_skip+='|DraftTreeEngine\.GreedyIdenticalAloneAndBatched'
asan_skip+='|EngineEviction\.(BudgetNeverReachedChangesNothing|BatchedEqualsAloneForEveryPolicy)'
asan_skip+='|Backends/EngineLocalKv\.(GreedyOutputIsTheSame.*|SpeculationRolls.*)/cpu.*'
asan_skip+='|cli_smoke_catches_fakes)$'

step_asan() {
    local dir="$build_dir/ci-asan" werror=OFF
    [ "${VELA_WERROR:-0}" != 1 ] || werror=ON
    # The debug preset (VELA_SANITIZE) without CUDA, whose kernels ASan does not see anyway;
    # -O1 instead of -O0 makes the tests 5x faster and keeps assertions (no NDEBUG); -g1 (line
    # tables: a report's stack still names file and line) builds faster than full -g.
    # No benchmarks (nothing runs them here).
    cmake --preset debug -B "$dir" -DVELA_CUDA=OFF -DVELA_WERROR="$werror" \
          "-DCMAKE_CXX_FLAGS_DEBUG=-g1 -O1" -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON >/dev/null
    # All targets, so that a test binary added later is sanitized without editing this list.
    cmake --build "$dir" -j2
    # UBSan only reports and carries on by default: halt so that a report fails the test.
    ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
        ctest --test-dir "$dir" -j2 --output-on-failure --no-tests=error --timeout 900 \
              -E "$asan_skip"
}

# --- noperm ---

step_noperm() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "##########################################################################"
        echo "# SKIPPED noperm: not root, so no user can be created here. ctest's cli_errors"
        echo "# already ran the no-permission case as uid $(id -u)."
        echo "##########################################################################"
        return 0
    fi
    local user=vela-ci
    id -u "$user" >/dev/null 2>&1 ||
        useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    # The user may not reach the checkout (e.g. under /root): give it copies in a directory of
    # its own.
    local dir; dir="$(mktemp -d)"
    cp "$vela_bin" "$dir/vela"
    cp tests/tools/test_cli_errors.sh "$dir/"
    cp "$model" "$dir/model.gguf"
    chown -R "$user" "$dir"
    local status=0
    # VELA_REQUIRE_NOPERM_CASE=1: the script fails instead of skipping if it still runs as root.
    runuser -u "$user" -- env HOME="$dir" TMPDIR="$dir" VELA_REQUIRE_NOPERM_CASE=1 \
        bash "$dir/test_cli_errors.sh" "$dir/vela" "$dir/model.gguf" || status=$?
    rm -rf "$dir"
    return "$status"
}

# --- driver: each step timed; all steps run, and any failure fails the script ---

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(noperm fuzz asan)
failed=()
for s in "${steps[@]}"; do
    echo "=== ci_checks: $s"
    start=$SECONDS
    # A subshell with errexit of its own: called as `step || status=$?`, bash would ignore
    # `set -e` inside the step and carry on past a failed build.
    set +e
    (set -e; "step_$s")
    status=$?
    set -e
    verdict=passed; [ "$status" -eq 0 ] || verdict=FAILED
    echo "=== ci_checks: $s $verdict in $((SECONDS - start)) s"
    [ "$status" -eq 0 ] || failed+=("$s")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "ci_checks FAILED: ${failed[*]}"
    exit 1
fi
echo "ci_checks passed: ${steps[*]}"
