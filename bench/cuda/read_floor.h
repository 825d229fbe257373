#pragma once
// A kernel that only reads: the floor under any decode kernel for the same bytes. It streams two
// buffers (the K and V cache of a decode call) with no block table, no math and no combine,
// launched the way the decode kernel is (programmatic dependent launch on sm_90+). Its time in a
// stream of back-to-back calls is launch overhead plus bytes over bandwidth: a decode call of the
// same traffic that reads only after the launch wait cannot be faster. (One that prefetches its
// first tiles into L2 during the wait, DecodeParams::metadata_ready, can.)
#include <cuda_runtime_api.h>

#include <cstddef>

namespace vela::bench {

// Reads `bytes` (a multiple of 16) from each of k and v.
cudaError_t launch_read_floor(const void* k, const void* v, size_t bytes, int device_sm_count,
                              cudaStream_t stream);

}  // namespace vela::bench
