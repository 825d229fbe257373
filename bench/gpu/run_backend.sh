#!/usr/bin/env bash
# The CUDA backend on the GPU machine, in one call: every CUDA test with a GPU required (op
# conformance, whole models against the CPU backend, the attention kernels), compute-sanitizer
# memcheck on a short generation, then `vela bench` and `vela perplexity` on the GPU and on the
# machine's CPU cores. Logs land in OUT.
#   bash bench/gpu/run_backend.sh BIN_DIR OUT [MODEL...]
# BIN_DIR holds vela, test_backend_ops, test_cuda_model, test_cuda_attention and the shared
# libraries they need (built on a host: the GPU machine lacks the Debian dev packages). The logs
# are also packed into OUT/logs.tgz at the end: a device call brings back at most 8 files.
set -uo pipefail
bin=$1 out=$2
shift 2
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(models/SmolLM2-135M-Instruct.Q4_1.gguf)
mkdir -p "$out"
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export VELA_SOURCE_DIR=$PWD VELA_REQUIRE_GPU=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$out/gpu.txt"

step() {  # step NAME TIMEOUT CMD...: runs CMD into OUT/NAME.log, prints its status and tail
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "== $name: exit $? in $((SECONDS - t0)) s"
}

step ops 400 "$bin/test_backend_ops" --gtest_filter='*/cuda'
grep -E "^\[backend_ops\] cuda|FAILED|Failure" "$out/ops.log" | head -60
step model 300 "$bin/test_cuda_model"
grep -E "^\[cuda_model\]|FAILED|Failure|Expected|Which is" "$out/model.log" | head -40
step attention 300 "$bin/test_cuda_attention"
grep -E "^\[  PASSED|^\[  FAILED|^\[  SKIPPED" "$out/attention.log" | head -20
step memcheck 300 compute-sanitizer --tool memcheck "$bin/vela" generate -m "${models[0]}" \
    --device cuda -p "The capital of France is" -n 16 --temp 0
tail -3 "$out/memcheck.log"

# The English text of the CPU benchmarks (docs/benchmarks.md), when this machine has it.
text=/usr/share/common-licenses/GPL-3
[[ -f $text ]] || text=docs/architecture.md
for m in "${models[@]}"; do
    name=$(basename "$m" .gguf)
    for dev in cuda cpu; do
        step "gen-$name-$dev" 120 "$bin/vela" generate -m "$m" --device "$dev" \
            -p "Write a haiku about the sea." --chat -n 48 --temp 0
        tail -n +1 "$out/gen-$name-$dev.log" | tail -8
        step "bench-$name-$dev" 300 "$bin/vela" bench -m "$m" --device "$dev" -p 512 -n 128 -r 3
        cat "$out/bench-$name-$dev.log"
        step "ppl-$name-$dev" 300 "$bin/vela" perplexity -m "$m" --device "$dev" -c 512 --chunks 8 "$text"
        tail -2 "$out/ppl-$name-$dev.log"
    done
done
tar -C "$out" -czf /tmp/run_backend_logs.tgz --exclude=logs.tgz . && mv /tmp/run_backend_logs.tgz "$out/logs.tgz"
find "$out" -maxdepth 1 -type f ! -name logs.tgz ! -name gpu.txt -delete
