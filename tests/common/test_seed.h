#pragma once
// A fresh seed for a randomised test, printed with the test's name before any data is drawn,
// so that a failure (or a crash, which skips gtest's failure messages) can be replayed:
// VELA_TEST_SEED=<n> fixes the seed of every test in the run.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace vela::test {

inline uint32_t fresh_seed() {
    const char* env = std::getenv("VELA_TEST_SEED");
    const uint32_t seed = env != nullptr && *env != '\0'
                              ? static_cast<uint32_t>(std::strtoul(env, nullptr, 10))
                              : std::random_device{}();
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::printf("%s.%s: seed %u (VELA_TEST_SEED=%u replays it)\n",
                info != nullptr ? info->test_suite_name() : "?",
                info != nullptr ? info->name() : "?", seed, seed);
    std::fflush(stdout);
    return seed;
}

}  // namespace vela::test
