#pragma once
// The tensor-parallel reference of the tests: `size` ranks as threads of this process
// (ThreadGroup), each with its own one-thread CPU backend and KV.
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "engine/forward_driver.h"
#include "model/model.h"
#include "model/tensor_parallel.h"

namespace vela::test {

// Every logits row of `tokens`, evaluated in chunks of `chunk`, on each rank.
inline std::vector<std::vector<float>> thread_ranks(const std::string& path, int size,
                                                    const std::vector<int32_t>& tokens,
                                                    int64_t chunk) {
    ThreadGroup group(size);
    std::vector<std::vector<float>> out(static_cast<size_t>(size));
    std::vector<std::thread> threads;
    for (int r = 0; r < size; ++r) {
        threads.emplace_back([&, r] {
            Model model(path, &group.rank(r));
            ThreadPool pool(1);
            CpuBackend backend(pool);
            ForwardDriver driver(model, backend, static_cast<int64_t>(tokens.size()), chunk);
            out[static_cast<size_t>(r)] = driver.evaluate(tokens, /*all_logits=*/true);
        });
    }
    for (std::thread& t : threads) t.join();
    return out;
}

}  // namespace vela::test
