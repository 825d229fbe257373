// Tensor parallelism over NCCL at world size 1 (the one-GPU kinds lent here): the collectives
// leave a rank's data as it is, and a model run through the tensor-parallel path (LM head
// gathered, all-reduces after wo and down, inside recorded CUDA graphs for decode steps) gives
// the same logits, bit for bit, as without a communicator. Several ranks need several GPUs (NCCL
// refuses two ranks on one device).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/nccl_communicator.h"
#include "core/error.h"
#include "engine/forward_driver.h"
#include "model/model.h"

namespace vela {
namespace {

#define SKIP_WITHOUT_GPU()                                                 \
    do {                                                                   \
        if (!cuda_device_available()) {                                    \
            const char* v = std::getenv("VELA_REQUIRE_GPU");               \
            if (v != nullptr && std::string(v) == "1") FAIL() << "no GPU"; \
            GTEST_SKIP() << "no CUDA device";                              \
        }                                                                  \
    } while (0)

TEST(NcclWorldSize1, CollectivesKeepTheRanksData) {
    SKIP_WITHOUT_GPU();
    CudaBackend backend;
    NcclCommunicator comm(NcclCommunicator::new_id(), 0, 1);
    std::mt19937 rng(3);
    std::normal_distribution<float> d;
    std::vector<float> host(3 * 1000);
    for (float& x : host) x = d(rng);
    auto buf = backend.allocate(host.size() * 4), full_buf = backend.allocate(host.size() * 4);
    const Tensor x{buf->data(), DType::F32, 3, 1000, Device::Cuda};
    const Tensor full{full_buf->data(), DType::F32, 3, 1000, Device::Cuda};
    backend.to_device(host.data(), x);
    comm.all_reduce_sum(backend, x);
    comm.all_gather_cols(backend, x, full);
    std::vector<float> reduced(host.size()), gathered(host.size());
    backend.to_host(x, reduced.data());
    backend.to_host(full, gathered.data());
    EXPECT_EQ(reduced, host);
    EXPECT_EQ(gathered, host);
    const Tensor half{full_buf->data(), DType::F32, 3, 500, Device::Cuda};
    EXPECT_THROW(comm.all_gather_cols(backend, half, full), InvalidArgument);
    EXPECT_THROW(NcclCommunicator(NcclCommunicator::new_id(), 1, 1), InvalidArgument);
}

TEST(NcclWorldSize1, ModelThroughTheTensorParallelPathGivesTheSameLogits) {
    SKIP_WITHOUT_GPU();
    std::string path = std::string(VELA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (const char* env = std::getenv("VELA_CUDA_TEST_MODEL")) path = env;
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " missing";
    std::vector<int32_t> prompt;
    for (int i = 0; i < 40; ++i) prompt.push_back(1 + (i * 7919) % 40000);
    const std::vector<int32_t> next = {17, 4242, 99, 31337, 5};
    auto run = [&](Communicator* comm) {
        Model model(path, comm);
        CudaBackend backend;
        ForwardDriver driver(model, backend, 64, 16);
        std::vector<float> out = driver.evaluate(prompt, /*all_logits=*/true);
        for (int32_t t : next) {  // decode steps: recorded as CUDA graphs, then replayed
            const std::vector<float>& row = driver.extend({t});
            out.insert(out.end(), row.begin(), row.end());
        }
        return out;
    };
    const std::vector<float> plain = run(nullptr);
    NcclCommunicator comm(NcclCommunicator::new_id(), 0, 1);
    const std::vector<float> tp = run(&comm);
    ASSERT_EQ(tp.size(), plain.size());
    EXPECT_EQ(tp, plain);
    std::printf("[nccl] %s: %zu logits equal with a world-size-1 NCCL communicator\n", path.c_str(),
                tp.size());
}

}  // namespace
}  // namespace vela
