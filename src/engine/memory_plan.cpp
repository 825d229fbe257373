#include "engine/memory_plan.h"

#include <algorithm>

#include "core/error.h"

namespace vela {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

double mib(size_t bytes) {
    return static_cast<double>(bytes) / kMiB;
}

}  // namespace

MemoryPlan plan_gpu_memory(const MemoryPlanInput& in) {
    if (!(in.utilization > 0.0 && in.utilization <= 1.0)) {
        fail<InvalidArgument>("--gpu-memory-utilization must be in (0, 1], got {}", in.utilization);
    }
    VELA_ASSERT(in.free <= in.total && in.kv_bytes_per_block > 0);
    // Of our share of the card, what others hold already is not ours to take.
    const double share = in.utilization * static_cast<double>(in.total);
    const double held = static_cast<double>(in.total - in.free);
    const size_t budget = share > held ? static_cast<size_t>(share - held) : 0;
    const size_t fixed = in.weights + in.workspace;
    const size_t kv_min =
        in.kv_bytes_per_block * static_cast<size_t>(std::max<int64_t>(1, in.min_kv_blocks));
    if (fixed + kv_min > budget) {
        fail<ResourceExhausted>(
            "the model does not fit the GPU: weights {:.0f} MiB + workspace {:.0f} MiB + KV for "
            "one context {:.0f} MiB > {:.0f} MiB allowed ({:.2f} of {:.0f} MiB, {:.0f} MiB free); "
            "use a smaller -c/--ctx-size or -b/--batch-size, a smaller KV format (--kv-type), "
            "or a higher --gpu-memory-utilization",
            mib(in.weights), mib(in.workspace), mib(kv_min), mib(budget), in.utilization,
            mib(in.total), mib(in.free));
    }
    return {budget, static_cast<int64_t>((budget - fixed) / in.kv_bytes_per_block)};
}

size_t forward_workspace_bytes(const HParams& hp, int64_t rows, size_t largest_weight_elements) {
    const auto r = static_cast<size_t>(rows);
    // Model::Scratch: x, h, q, k, v, attention out, gate, up; rotary angles; logits of every row.
    const auto per_row = static_cast<size_t>(3 * hp.n_embd + 2 * hp.q_dim() + 2 * hp.kv_dim() +
                                             2 * hp.n_ff + hp.head_dim + hp.n_vocab);
    const size_t activations = sizeof(float) * r * per_row;
    // The widest GEMM: the weight in bf16 and its activations in bf16; q and o in 16 bits.
    const auto widest_k = static_cast<size_t>(std::max({hp.n_embd, hp.n_ff, hp.q_dim()}));
    const size_t gemm = 2 * largest_weight_elements + 2 * r * widest_k;
    const size_t attention = 2 * 2 * r * static_cast<size_t>(hp.q_dim());
    constexpr size_t kReserve = size_t{512} << 20;  // cuBLAS, decode split workspace, slack
    return activations + gemm + attention + kReserve;
}

}  // namespace vela
