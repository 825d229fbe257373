#pragma once
// A stand-in for the kernel an engine runs just before decode (the fused append-and-rope step):
// it lets the next kernel in the stream launch at once (programmatic dependent launch, sm_90+),
// then waits about `delay_us` and only then copies its byte ranges. A decode call that reads any
// of those bytes before its launch wait reads them stale.
#include <cstdint>
#include <vector>

namespace vela::cuda::test {

struct ByteCopy {
    void* dst;
    const void* src;
    int64_t bytes;
};

constexpr size_t kMaxLateCopies = 64;

// Launches the writer on the default stream; the copies land about delay_us after it starts.
// Returns cudaSuccess, the launch error, or cudaErrorInvalidValue past kMaxLateCopies ranges.
int launch_late_writer(const std::vector<ByteCopy>& copies, int delay_us);

}  // namespace vela::cuda::test
