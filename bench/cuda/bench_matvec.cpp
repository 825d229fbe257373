// Decode matvec bandwidth of the CUDA backend (backend/cuda/quant_kernels.h) on the matrices of
// a Llama-3-8B layer and its LM head, per weight type, beside the card's device-to-device copy
// bandwidth measured in the same run. Weight bytes are random with every 16-bit scale finite.
//   bench_matvec [m]     (activation rows, default 1)
// VELA_MATVEC picks the kernel (quant_kernels.cu: staged, rows1, rows2; unset: the default).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/quant_kernels.h"
#include "core/dtype.h"

namespace {

void check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
}

// Mean milliseconds of `reps` runs of f after two warm-ups, by cudaEvents.
template <class F>
float time_ms(F f, int reps) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    f();
    f();
    cudaEventRecord(a);
    for (int i = 0; i < reps; ++i) f();
    cudaEventRecord(b);
    check(cudaEventSynchronize(b), "bench");
    float ms = 0.f;
    cudaEventElapsedTime(&ms, a, b);
    return ms / static_cast<float>(reps);
}

}  // namespace

int main(int argc, char** argv) {
    using vela::DType;
    const int64_t m = argc > 1 ? std::atoll(argv[1]) : 1;
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "device");
    const size_t copy_bytes = size_t{2} << 30;
    void *src = nullptr, *dst = nullptr;
    check(cudaMalloc(&src, copy_bytes), "malloc");
    check(cudaMalloc(&dst, copy_bytes), "malloc");
    const float copy_ms =
        time_ms([&] { cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice); }, 10);
    const double copy_gbs = 2.0 * static_cast<double>(copy_bytes) / copy_ms / 1e6;
    std::printf("# %s, m = %lld; copy bandwidth (read + write) %.0f GB/s\n", prop.name,
                static_cast<long long>(m), copy_gbs);
    std::printf("| type | n x k | us | GB/s | %% of copy |\n|---|---|---|---|---|\n");

    struct Shape {
        int64_t n, k;
    };
    const Shape shapes[] = {
        {4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
    const DType types[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0,
                           DType::Q4_0, DType::Q4_1, DType::F16,  DType::BF16};
    std::mt19937 rng(1);
    float *x = nullptr, *y = nullptr;
    check(cudaMalloc(&x, sizeof(float) * 8 * 14336), "malloc");
    check(cudaMalloc(&y, sizeof(float) * 8 * 128256), "malloc");
    std::vector<float> hx(8 * 14336);
    for (float& v : hx) v = std::uniform_real_distribution<float>(-1.f, 1.f)(rng);
    check(cudaMemcpy(x, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice), "upload");
    // Enough copies of each matrix that one pass over them all exceeds the L2 cache several
    // times: each timed call reads its weights from device memory, as in a model's decode step.
    const size_t l2 = static_cast<size_t>(prop.l2CacheSize);
    for (DType t : types) {
        for (const Shape& s : shapes) {
            const size_t bytes = vela::row_bytes(t, s.k) * static_cast<size_t>(s.n);
            const size_t copies = std::max<size_t>(2, (8 * l2 + bytes - 1) / bytes);
            std::vector<void*> w(copies);
            for (void*& p : w) {
                check(cudaMalloc(&p, bytes), "malloc");
                // Bytes 0x3b: every fp16/bf16 field a finite value below 1 (the kernels' speed
                // does not depend on the values).
                check(cudaMemset(p, 0x3b, bytes), "memset");
            }
            size_t i = 0;
            const float ms = time_ms(
                [&] {
                    vela::cuda_backend::matvec(t, w[i++ % copies], s.n, s.k, x, s.k, m, y, s.n,
                                               nullptr);
                },
                static_cast<int>(4 * copies));
            const double gbs = static_cast<double>(bytes) / ms / 1e6;
            std::printf("| %s | %lld x %lld | %.1f | %.0f | %.0f%% |\n",
                        std::string(vela::dtype_name(t)).c_str(), static_cast<long long>(s.n),
                        static_cast<long long>(s.k), ms * 1e3, gbs, 100.0 * gbs / copy_gbs);
            for (void* p : w) cudaFree(p);
        }
    }
    return 0;
}
