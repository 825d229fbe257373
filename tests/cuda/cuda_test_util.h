#pragma once
// Test helpers for the CUDA attention kernels: device buffers, random 16-bit data with a
// float64 copy of the exact stored values, and a float64 reference attention for one row.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "cuda/attention_params.h"

namespace vela::cuda::test {

// Whether the run was asked to use a GPU (VELA_REQUIRE_GPU=1, as on the GPU machine): then a
// missing device is a failure, not a skip, so "all skipped" can never pass for "all passed".
inline bool gpu_required() {
    const char* v = std::getenv("VELA_REQUIRE_GPU");
    return v != nullptr && std::string(v) != "" && std::string(v) != "0";
}

#define VELA_SKIP_WITHOUT_DEVICE()                                                      \
    if (!::vela::cuda::device_available()) {                                            \
        if (::vela::cuda::test::gpu_required()) FAIL() << "VELA_REQUIRE_GPU=1, no GPU"; \
        GTEST_SKIP() << "no CUDA device";                                               \
    }

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << cudaGetErrorString(expr)

// The message of the vela::InvalidArgument that call() throws; empty when it throws none.
template <class Call>
std::string invalid_argument_of(Call&& call) {
    try {
        call();
    } catch (const InvalidArgument& e) {
        return e.what();
    }
    return {};
}

template <class T>
class DeviceBuffer {
  public:
    explicit DeviceBuffer(size_t n) : n_(n) {
        if (cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(T)) != cudaSuccess) ptr_ = nullptr;
    }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
        if (ptr_ != nullptr)
            cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { cudaFree(ptr_); }

    T* get() const { return static_cast<T*>(ptr_); }
    void poison() { cudaMemset(ptr_, 0xff, n_ * sizeof(T)); }  // NaN for fp16/bf16/fp32
    std::vector<T> download() const {
        std::vector<T> h(n_);
        cudaMemcpy(h.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
        return h;
    }

  private:
    void* ptr_ = nullptr;
    size_t n_;
};

inline double to_double(Dtype t, uint16_t v) {
    return t == Dtype::kF16 ? fp16_to_fp32(v) : bf16_to_fp32(v);
}

// OCP FP8 E4M3 (bias 7, no infinities, 0x7f/0xff are NaN) decoded independently of CUDA.
inline double fp8_e4m3_to_double(uint8_t v) {
    const int sign = v >> 7, exp = (v >> 3) & 0xf, mant = v & 7;
    const double mag =
        exp == 0 ? std::ldexp(mant / 8.0, -6) : std::ldexp(1.0 + mant / 8.0, exp - 7);
    return sign ? -mag : mag;
}

// n random normal values rounded to dtype t; `exact` receives the stored values as double.
inline std::vector<uint16_t> random_16bit(Dtype t, size_t n, std::mt19937& rng,
                                          std::vector<double>& exact) {
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<uint16_t> out(n);
    exact.resize(n);
    for (size_t i = 0; i < n; ++i) {
        const float x = dist(rng);
        out[i] = t == Dtype::kF16 ? fp32_to_fp16(x) : fp32_to_bf16(x);
        exact[i] = to_double(t, out[i]);
    }
    return out;
}

// Float64 attention of one query row over keys [0, n) with a mask predicate. Returns false
// (and out = 0, lse = -inf) when every key is masked.
template <class KeyAt, class ValAt, class Visible>
void reference_row(const double* q, int n, int head_dim, double scale, KeyAt key, ValAt val,
                   Visible visible, std::vector<double>& out, double& lse) {
    std::vector<double> s(n, -INFINITY);
    double mx = -INFINITY;
    for (int j = 0; j < n; ++j) {
        if (!visible(j)) continue;
        double d = 0;
        for (int c = 0; c < head_dim; ++c) d += q[c] * key(j, c);
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
    }
    out.assign(head_dim, 0.0);
    if (mx == -INFINITY) {
        lse = -INFINITY;
        return;
    }
    double sum = 0;
    for (int j = 0; j < n; ++j) {
        if (s[j] == -INFINITY) continue;
        const double p = std::exp(s[j] - mx);
        sum += p;
        for (int c = 0; c < head_dim; ++c) out[c] += p * val(j, c);
    }
    for (double& x : out) x /= sum;
    lse = mx + std::log(sum);
}

// Accumulates |a - b| statistics over a comparison, reported on failure.
struct ErrorStats {
    double max_abs = 0, max_ref = 0, sq_err = 0, sq_ref = 0;
    size_t nonfinite = 0, count = 0;
    void add(double got, double ref) {
        ++count;
        if (!std::isfinite(got)) {
            ++nonfinite;
            return;
        }
        max_abs = std::max(max_abs, std::abs(got - ref));
        max_ref = std::max(max_ref, std::abs(ref));
        sq_err += (got - ref) * (got - ref);
        sq_ref += ref * ref;
    }
    double rel() const { return sq_ref > 0 ? std::sqrt(sq_err / sq_ref) : std::sqrt(sq_err); }
};

}  // namespace vela::cuda::test
