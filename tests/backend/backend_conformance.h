#pragma once
// The harness of the Backend conformance suite (test_backend_ops*.cpp): which backends are built
// (one factory each), device buffers that start poisoned and carry a guard row, weights handed to
// the backend through load_weights(), the run's seed, and the per-row error check that records
// the largest error of every op and dtype for the log.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/isa.h"
#ifdef VELA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "core/error.h"
#include "core/thread_pool.h"
#include "kv/host_kv_storage.h"
#include "model/weights.h"

namespace vela::test {

// --- the backends under test ---

// Reads one token's K (value = false) or V row of one KV head back as float. KvStorage keeps its
// bytes private to its backend, so each backend says how a test can look at them.
using KvReader = std::function<void(const KvStorage& kv, int64_t layer, int64_t slot,
                                    int64_t kv_head, bool value, float* out)>;

// What a backend computes in less than fp32, stated with its factory so that each op's test
// judges it by the precision it claims and no looser.
struct Precision {
    // Matmuls of more rows than this may round both operands to bf16 (tensor cores); up to it,
    // the fp32 tolerances hold.
    int64_t exact_matmul_rows = std::numeric_limits<int64_t>::max();
    // Their tolerance, relative to the products' 2-norm as the matmul test measures it.
    double rounded_matmul_tol = 0.0;
    // Attention tolerance per KV format relative to max|V| (the CPU computes in fp32: 1e-5).
    std::function<double(KvFormats)> attention_tol = [](KvFormats) { return 1e-5; };
};

struct BackendFactory {
    std::string name;  // the gtest parameter name: letters, digits and '_' only
    std::function<std::unique_ptr<Backend>(ThreadPool&)> make;
    KvReader read_kv;
    Precision precision = {};
    // Which KV formats it stores, and for head_dim > 0 attends over at that head size; the KV
    // tests skip (and print) the others. Empty: all.
    std::function<bool(KvFormats, int64_t head_dim)> supports_kv = {};
};

inline void read_host_kv(const KvStorage& kv, int64_t layer, int64_t slot, int64_t kv_head,
                         bool value, float* out) {
    VELA_ASSERT(kv.device() == Device::Cpu);
    static_cast<const HostKvStorage&>(kv).read(layer, slot, kv_head, value, out);
}

inline std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, cpu::Isa isa) {
    return std::make_unique<CpuBackend>(pool, isa);
}

#ifdef VELA_HAS_CUDA
inline void read_cuda_kv(const KvStorage& kv, int64_t layer, int64_t slot, int64_t kv_head,
                         bool value, float* out) {
    VELA_ASSERT(kv.device() == Device::Cuda);
    static_cast<const DeviceKvStorage&>(kv).read(layer, slot, kv_head, value, out);
}

// The CUDA backend's precision (cuda_backend.h): matvecs (<= 8 rows) in fp32; larger matmuls
// on tensor cores with bf16 operands (f16 for F16 weights, finer): each product carries two
// roundings of <= 2^-9 relative, random in sign, so the error of a k-term sum relative to the
// products' 2-norm is about 2^-9 * sqrt(2/3) ~ 1.6e-3 on average. The largest over a run's
// ~10^4 outputs reached 1.07e-2 (F32 weights, both operands rounded; H100 and H200 runs):
// tolerance 2e-2. Attention rounds q and the
// probabilities to the KV's 16 bits (fp32 sums): f16 (2^-11) and bf16 (2^-8) steps.
inline Precision cuda_precision() {
    Precision p;
    p.exact_matmul_rows = 8;
    p.rounded_matmul_tol = 2e-2;
    p.attention_tol = [](KvFormats f) { return f.k == KvFormat::BF16 ? 2e-2 : 4e-3; };
    return p;
}
#endif

// Every backend this binary has: one entry per CPU instruction-set level the machine runs, and
// the CUDA backend when built in and a device is present. Every op test runs on each.
inline std::vector<BackendFactory> built_backends() {
    std::vector<BackendFactory> out;
    for (cpu::Isa isa : {cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::Avx512}) {
        if (static_cast<int>(isa) > static_cast<int>(cpu::detect_isa())) continue;
        out.push_back({"cpu_" + std::string(cpu::isa_name(isa)),
                       [isa](ThreadPool& pool) { return make_cpu_backend(pool, isa); },
                       read_host_kv,
                       {},
                       [](KvFormats f, int64_t) {  // FP8 is the GPU's only
                           return f.k != KvFormat::FP8 && f.v != KvFormat::FP8;
                       }});
    }
#ifdef VELA_HAS_CUDA
    // Without a device the CUDA entry is left out (printed); with VELA_REQUIRE_GPU=1 that fails.
    if (cuda_device_available()) {
        out.push_back({"cuda", [](ThreadPool&) { return std::make_unique<CudaBackend>(); },
                       read_cuda_kv, cuda_precision(),
                       [](KvFormats f, int64_t hd) { return CudaBackend::supports_kv(f, hd); }});
    } else {
        std::printf("[backend_ops] no CUDA device: the cuda backend is not tested\n");
        const char* req = std::getenv("VELA_REQUIRE_GPU");
        if (req != nullptr && std::string(req) == "1") {
            std::fprintf(stderr, "VELA_REQUIRE_GPU=1 but no CUDA device is usable\n");
            std::abort();
        }
    }
#endif
    return out;
}

// gtest prints the parameter of a failing test with this.
inline void PrintTo(const BackendFactory& f, std::ostream* os) {
    *os << f.name;
}

// --- seed ---

// One seed per run, printed; VELA_TEST_SEED=<n> replays a run. Each op draws from its own
// stream (seed, op name), so adding cases to one op does not change another op's data.
inline uint64_t run_seed() {
    static const uint64_t seed = [] {
        const char* env = std::getenv("VELA_TEST_SEED");
        const uint64_t s = env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10)
                                                          : std::random_device{}();
        std::printf("[backend_ops] seed %llu (set VELA_TEST_SEED to replay)\n",
                    static_cast<unsigned long long>(s));
        return s;
    }();
    return seed;
}

inline std::mt19937_64 op_rng(const std::string& op) {
    return std::mt19937_64(run_seed() ^ std::hash<std::string>{}(op));
}

inline std::vector<float> normal_floats(size_t n, std::mt19937_64& rng, double sigma = 1.0) {
    std::normal_distribution<double> normal(0.0, sigma);
    std::vector<float> v(n);
    for (float& f : v) f = static_cast<float>(normal(rng));
    return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
    return {v.begin(), v.end()};
}

// --- device memory ---

inline constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

// rows x cols floats in the backend's memory followed by one guard row. Everything starts NaN,
// so an op that skips an output row leaves NaN behind, and one that writes past its output
// overwrites the guard.
class DeviceTensor {
  public:
    DeviceTensor(Backend& backend, int64_t rows, int64_t cols)
        : backend_(&backend),
          rows_(rows),
          cols_(cols),
          buf_(backend.allocate(sizeof(float) * static_cast<size_t>((rows + 1) * cols))) {
        poison();
    }

    Tensor view() const { return {buf_->data(), DType::F32, rows_, cols_, backend_->device()}; }
    void upload(const std::vector<float>& host) {
        VELA_ASSERT(static_cast<int64_t>(host.size()) == rows_ * cols_);
        backend_->to_device(host.data(), view());
    }
    std::vector<float> download() const {
        std::vector<float> host(static_cast<size_t>(rows_ * cols_));
        backend_->to_host(view(), host.data());
        return host;
    }
    void poison() {
        const std::vector<float> nan(static_cast<size_t>((rows_ + 1) * cols_), kPoison);
        backend_->to_device(nan.data(), with_guard());
    }
    bool guard_intact() const {
        std::vector<float> all(static_cast<size_t>((rows_ + 1) * cols_));
        backend_->to_host(with_guard(), all.data());
        for (int64_t i = rows_ * cols_; i < (rows_ + 1) * cols_; ++i) {
            if (!std::isnan(all[i])) return false;
        }
        return true;
    }

  private:
    Tensor with_guard() const {
        return {buf_->data(), DType::F32, rows_ + 1, cols_, backend_->device()};
    }

    Backend* backend_;
    int64_t rows_, cols_;
    std::unique_ptr<DeviceBuffer> buf_;
};

// A weight in the file's bytes, given to the backend the way the model's are: inside a
// ModelWeights passed to load_weights(), which may upload it and repoint the view.
class DeviceWeight {
  public:
    DeviceWeight(Backend& backend, DType type, int64_t rows, int64_t cols,
                 std::vector<uint8_t> bytes)
        : host_(std::move(bytes)) {
        VELA_ASSERT(host_.size() == row_bytes(type, cols) * static_cast<size_t>(rows));
        weights_.token_embd = Weight{host_.data(), type, rows, cols, Device::Cpu};
        backend.load_weights(weights_);
    }
    static DeviceWeight f32(Backend& backend, const std::vector<float>& v) {
        std::vector<uint8_t> bytes(v.size() * sizeof(float));
        std::memcpy(bytes.data(), v.data(), bytes.size());
        return DeviceWeight(backend, DType::F32, 1, static_cast<int64_t>(v.size()), bytes);
    }
    const Weight& view() const { return weights_.token_embd; }
    const std::vector<uint8_t>& bytes() const { return host_; }

  private:
    std::vector<uint8_t> host_;
    ModelWeights weights_;
};

// --- errors ---

// The largest error of each op and dtype over all its cases on one backend, one line each in
// the log when the test ends, so the margin to the tolerance is visible.
class ErrorReport {
  public:
    explicit ErrorReport(std::string backend) : backend_(std::move(backend)) {}
    ErrorReport(const ErrorReport&) = delete;
    ErrorReport& operator=(const ErrorReport&) = delete;
    ~ErrorReport() {
        for (const auto& [key, e] : worst_) {
            std::printf("[backend_ops] %-10s %-12s %-5s max err %.3e  tol %.3g  (%d cases)\n",
                        backend_.c_str(), key.first.c_str(), key.second.c_str(), e.err, e.tol,
                        e.cases);
        }
    }
    void add(const std::string& op, const std::string& dtype, double err, double tol) {
        Entry& e = worst_[{op, dtype}];
        e.err = std::isnan(err) ? INFINITY : std::max(e.err, err);
        e.tol = tol;
        ++e.cases;
    }

  private:
    struct Entry {
        double err = 0.0, tol = 0.0;
        int cases = 0;
    };
    std::string backend_;
    std::map<std::pair<std::string, std::string>, Entry> worst_;
};

// Per row r: max_j |got - ref| / scale[r]. A NaN (poison left behind) is an infinite error.
struct WorstError {
    double err = 0.0;
    int64_t row = -1, col = -1;
    double got = 0.0, want = 0.0;
};

inline WorstError worst_row_error(const std::vector<float>& got, const std::vector<double>& ref,
                                  int64_t rows, int64_t cols, const std::vector<double>& scale) {
    WorstError w;
    for (int64_t r = 0; r < rows; ++r) {
        const double s = scale[r] > 0.0 ? scale[r] : 1.0;
        for (int64_t c = 0; c < cols; ++c) {
            const double g = got[r * cols + c], want = ref[r * cols + c];
            const double e = std::isfinite(g) ? std::fabs(g - want) / s : INFINITY;
            if (e > w.err || w.row < 0) w = {e, r, c, g, want};
        }
    }
    return w;
}

// The default scale of a row: its largest |reference| value.
inline std::vector<double> row_max_abs(const std::vector<double>& ref, int64_t rows, int64_t cols) {
    std::vector<double> s(static_cast<size_t>(rows), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) s[r] = std::max(s[r], std::fabs(ref[r * cols + c]));
    }
    return s;
}

// Checks one case: every row within `tol` of the reference, relative to that row's scale, and
// the output's guard row untouched. `what` names the case in a failure. Returns the output.
inline std::vector<float> expect_close(ErrorReport& report, const std::string& op,
                                       const std::string& dtype, const DeviceTensor& out,
                                       const std::vector<double>& ref,
                                       const std::vector<double>& scale, double tol,
                                       const std::string& what) {
    const Tensor v = out.view();
    std::vector<float> got = out.download();
    const WorstError w = worst_row_error(got, ref, v.rows, v.cols, scale);
    report.add(op, dtype, w.err, tol);
    EXPECT_LE(w.err, tol) << op << " " << dtype << " " << what << ": row " << w.row << " col "
                          << w.col << " got " << w.got << " want " << w.want << " (row scale "
                          << scale[w.row] << "), seed " << run_seed();
    EXPECT_TRUE(out.guard_intact()) << op << " " << dtype << " " << what << " wrote past its "
                                    << v.rows << " x " << v.cols << " output";
    return got;
}

// --- the fixture ---

// Every op test gets a fresh backend from its factory, on two threads (so work is split), and
// an error log printed when the test ends.
class BackendTest : public ::testing::TestWithParam<BackendFactory> {
  protected:
    BackendTest() : pool_(2), backend_(GetParam().make(pool_)), report_(GetParam().name) {}
    Backend& backend() { return *backend_; }

    // Plans a step of one sequence whose `tokens` sit at positions first_pos, first_pos + 1,
    // ... (slot = position, blocks 0, 1, ... of 16 tokens); the batch stays alive until the next
    // plan, as the interface requires.
    void plan_one_sequence(const std::vector<int32_t>& tokens, int64_t first_pos) {
        constexpr int64_t kBlock = 16;
        const auto n = static_cast<int64_t>(tokens.size());
        std::vector<int64_t> slots(tokens.size());
        for (int64_t i = 0; i < n; ++i) slots[i] = first_pos + i;
        std::vector<int32_t> blocks(static_cast<size_t>((first_pos + n + kBlock - 1) / kBlock));
        for (size_t b = 0; b < blocks.size(); ++b) blocks[b] = static_cast<int32_t>(b);
        batch_.clear();
        batch_.add_sequence(tokens, first_pos, slots, blocks, first_pos + n, true);
        batch_.finish();
        batch_.validate(kBlock);
        backend().plan(batch_);
    }
    void plan_rows(int64_t rows) { plan_one_sequence(std::vector<int32_t>(rows, 0), 0); }

    ThreadPool pool_;
    std::unique_ptr<Backend> backend_;
    ErrorReport report_;
    ForwardBatch batch_;
};

inline std::string factory_name(const ::testing::TestParamInfo<BackendFactory>& info) {
    return info.param.name;
}

}  // namespace vela::test
