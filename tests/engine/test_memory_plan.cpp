// GPU memory planning (engine/memory_plan.h): the KV pool gets what the utilisation leaves after
// weights and workspace, memory other processes hold is not counted as ours, and a model that
// does not fit is refused with every figure named. Pure arithmetic: no GPU needed.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "engine/memory_plan.h"

namespace vela {
namespace {

constexpr size_t kGiB = size_t{1} << 30, kMiB = size_t{1} << 20;

MemoryPlanInput h200_8b() {
    MemoryPlanInput in;
    in.total = 140 * kGiB;
    in.free = 139 * kGiB;  // 1 GiB: this process's context and others
    in.utilization = 0.9;
    in.weights = 16 * kGiB;
    in.workspace = 2 * kGiB;
    in.kv_bytes_per_block = 2 * kMiB;  // Llama-3-8B f16: 128 KiB per token x 16
    in.min_kv_blocks = 512;            // an 8k context
    return in;
}

TEST(MemoryPlan, KvTakesWhatWeightsAndWorkspaceLeave) {
    const MemoryPlanInput in = h200_8b();
    const MemoryPlan plan = plan_gpu_memory(in);
    // 0.9 x 140 GiB = 126 GiB, less the 1 GiB held: 125 GiB; less 18 GiB: 107 GiB of 2 MiB blocks.
    EXPECT_EQ(plan.budget, static_cast<size_t>(0.9 * 140.0 * kGiB) - kGiB);
    EXPECT_EQ(plan.kv_blocks, static_cast<int64_t>((plan.budget - 18 * kGiB) / (2 * kMiB)));
    EXPECT_GT(plan.kv_blocks, 54000);
}

TEST(MemoryPlan, MemoryOthersHoldIsNotOurs) {
    MemoryPlanInput in = h200_8b();
    in.free = 70 * kGiB;  // another process holds 70 GiB
    const MemoryPlan plan = plan_gpu_memory(in);
    EXPECT_EQ(plan.budget, static_cast<size_t>(0.9 * 140.0 * kGiB) - 70 * kGiB);
    in.free = 20 * kGiB;  // now less than our share's remainder can hold the weights
    EXPECT_THROW(plan_gpu_memory(in), ResourceExhausted);
}

TEST(MemoryPlan, ModelTooLargeIsAClearError) {
    MemoryPlanInput in = h200_8b();
    in.weights = 130 * kGiB;
    try {
        plan_gpu_memory(in);
        FAIL() << "a 130 GiB model was planned into a 126 GiB budget";
    } catch (const ResourceExhausted& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("does not fit the GPU"), std::string::npos) << msg;
        EXPECT_NE(msg.find("weights 133120 MiB"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--gpu-memory-utilization"), std::string::npos) << msg;
    }
}

TEST(MemoryPlan, OneContextOfKvMustFitToo) {
    MemoryPlanInput in = h200_8b();
    // 122.5 GiB of weights + 2 GiB of workspace fit the 125 GiB budget; with the 1 GiB of KV
    // that one 8k context needs, they do not.
    in.weights = 122 * kGiB + kGiB / 2;
    EXPECT_THROW(plan_gpu_memory(in), ResourceExhausted);
    in.min_kv_blocks = 1;
    EXPECT_EQ(plan_gpu_memory(in).kv_blocks, static_cast<int64_t>((kGiB / 2) / (2 * kMiB)));
}

TEST(MemoryPlan, UtilizationOutsideZeroOneIsRefused) {
    MemoryPlanInput in = h200_8b();
    for (double u : {0.0, -0.5, 1.01}) {
        in.utilization = u;
        EXPECT_THROW(plan_gpu_memory(in), InvalidArgument) << u;
    }
}

TEST(MemoryPlan, WorkspaceCoversEveryRowsLogitsAndTheWidestDequantisedWeight) {
    HParams hp;
    hp.n_embd = 4096;
    hp.n_heads = 32;
    hp.n_kv_heads = 8;
    hp.head_dim = 128;
    hp.n_ff = 14336;
    hp.n_vocab = 128256;
    const size_t lm_head = static_cast<size_t>(hp.n_vocab * hp.n_embd);
    const size_t ws = forward_workspace_bytes(hp, 512, lm_head);
    EXPECT_GE(ws, 4 * size_t{512} * 128256 + 2 * lm_head);
    EXPECT_LT(ws, 4 * kGiB);
    EXPECT_GT(forward_workspace_bytes(hp, 2048, lm_head), ws);
}

}  // namespace
}  // namespace vela
