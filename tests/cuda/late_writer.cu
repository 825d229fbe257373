#include <cuda_runtime.h>

#include "late_writer.h"

namespace vela::cuda::test {
namespace {

struct CopyList {
    ByteCopy at[kMaxLateCopies];
    int n;
};

__global__ void late_writer_kernel(const CopyList copies, int delay_us) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
    uint64_t t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < static_cast<uint64_t>(delay_us) * 1000);
    for (int i = 0; i < copies.n; ++i) {
        auto* dst = static_cast<unsigned char*>(copies.at[i].dst);
        const auto* src = static_cast<const unsigned char*>(copies.at[i].src);
        for (int64_t j = threadIdx.x; j < copies.at[i].bytes; j += blockDim.x) dst[j] = src[j];
    }
}

}  // namespace

int launch_late_writer(const std::vector<ByteCopy>& copies, int delay_us) {
    if (copies.size() > kMaxLateCopies) return cudaErrorInvalidValue;
    CopyList list{};
    for (size_t i = 0; i < copies.size(); ++i) list.at[i] = copies[i];
    list.n = static_cast<int>(copies.size());
    late_writer_kernel<<<1, 256>>>(list, delay_us);
    return cudaGetLastError();
}

}  // namespace vela::cuda::test
