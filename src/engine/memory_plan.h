#pragma once
// How a model is laid out in a GPU's memory, decided before anything is allocated (as vLLM's
// --gpu-memory-utilization): of the device's total memory, `utilization` may be used by this
// process, less what others already hold; the weights and the forward's workspace come first,
// the KV pool gets the rest. A model that does not fit is a clear error naming every figure.
#include <cstddef>
#include <cstdint>

#include "model/hparams.h"

namespace vela {

struct MemoryPlanInput {
    size_t total = 0;          // device memory
    size_t free = 0;           // free now (others, and this process's context, hold the rest)
    double utilization = 0.9;  // share of `total` this process may use, in (0, 1]
    size_t weights = 0;        // bytes the weights take on the device
    size_t workspace = 0;      // activations and scratch of the largest step
    size_t kv_bytes_per_block = 0;
    int64_t min_kv_blocks = 1;  // the KV the caller needs at least (one full context)
};

struct MemoryPlan {
    size_t budget = 0;      // bytes this process may take: weights + workspace + KV
    int64_t kv_blocks = 0;  // the largest KV pool that fits the budget
};

// ResourceExhausted (naming weights, workspace, KV, budget, free and total in MiB) when the
// weights, the workspace and min_kv_blocks do not fit; InvalidArgument for a utilization outside
// (0, 1].
MemoryPlan plan_gpu_memory(const MemoryPlanInput& in);

// Device bytes of one forward over `rows` tokens of this model beyond its weights and KV:
// activations, every row's logits, and the largest weight dequantised to bf16 for the prefill
// GEMM (with its activations), plus a fixed reserve for the BLAS library and kernel workspaces.
size_t forward_workspace_bytes(const HParams& hp, int64_t rows, size_t largest_weight_elements);

}  // namespace vela
