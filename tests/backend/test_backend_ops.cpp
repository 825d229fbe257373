// Conformance of the Backend ops on weights and activations (embed, matmul for every weight
// type, rms_norm, add_inplace, add_bias, silu_mul, gelu_mul, scale, rope, gather_logit_rows)
// against float64 references written here, on every built backend (backend_conformance.h), at
// awkward sizes, with fresh random data and NaN-poisoned outputs. The KV ops are in
// test_backend_ops_kv.cpp, the sampling ops (argmax_rows, top_k_rows) in
// test_backend_ops_sampling.cpp.
//
// Errors are measured per output row, relative to a scale of that row stated beside each op
// (usually its largest |reference| value), against a tolerance per op and dtype.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend_conformance.h"
#include "random_weights.h"
#include "reference_dequant.h"

namespace vela::test {
namespace {

// Every weight type the CPU backend reads (checked below against cpu::supports_weight_type).
const std::vector<DType> kWeightTypes = {
    DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
    DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

bool is_plain(DType t) {
    return dtype_info(t).block_size == 1;
}

// Row lengths: odd ones where the type allows, else an odd number of blocks (one block, three,
// nine; one and two super-blocks).
std::vector<int64_t> cols_for(DType t) {
    switch (dtype_info(t).block_size) {
        case 1:
            return {31, 96, 257};
        case 32:
            return {32, 96, 288};
        default:
            return {256, 512};
    }
}

std::string name_of(DType t) {
    return std::string(dtype_name(t));
}

std::vector<uint8_t> random_weight_bytes(DType t, int64_t rows, int64_t cols,
                                         std::mt19937_64& rng) {
    std::mt19937 gen(static_cast<uint32_t>(rng()));
    return random_weights(t, rows, cols, gen);
}

struct NoiseStats;

class BackendOps : public BackendTest {
  protected:
    using GatedOp = void (Backend::*)(const Tensor&, const Tensor&, Tensor);
    void check_gated(const char* op, GatedOp run, double (*act)(double));
    void check_matmul(DType t, int64_t n, int64_t k, int64_t m, std::mt19937_64& rng,
                      NoiseStats& stats);
};

TEST(BackendOpsCoverage, EveryCpuWeightTypeIsTested) {
    for (uint32_t id = 0; id < 64; ++id) {
        const auto info = dtype_info(id);
        if (!info || !cpu::supports_weight_type(static_cast<DType>(id))) continue;
        const auto t = static_cast<DType>(id);
        EXPECT_NE(std::find(kWeightTypes.begin(), kWeightTypes.end(), t), kWeightTypes.end())
            << "the CPU reads " << dtype_name(t) << " weights but the suite does not test them";
    }
}

// embed: row i = table row tokens[i], dequantised. Plain types convert exactly; quantised ones
// round once in float (d * q is exact in float, adding the min rounds): 1e-6 of the row's max.
TEST_P(BackendOps, Embed) {
    auto rng = op_rng("embed");
    constexpr int64_t kVocab = 37;
    for (DType t : kWeightTypes) {
        const double tol = is_plain(t) ? 0.0 : 1e-6;
        for (int64_t cols : cols_for(t)) {
            for (int64_t n : {1, 3, 17}) {
                const DeviceWeight table(backend(), t, kVocab, cols,
                                         random_weight_bytes(t, kVocab, cols, rng));
                std::uniform_int_distribution<int32_t> id(0, kVocab - 1);
                std::vector<int32_t> tokens(static_cast<size_t>(n));
                for (int32_t& tok : tokens) tok = id(rng);
                tokens[0] = kVocab - 1;  // the last row of the table
                if (n > 2) tokens[2] = tokens[1];
                plan_one_sequence(tokens, 0);
                DeviceTensor out(backend(), n, cols);
                backend().embed(table.view(), out.view());

                std::vector<double> ref;
                const size_t stride = row_bytes(t, cols);
                for (int32_t tok : tokens) {
                    const auto row =
                        dequantize_row_f64(t, table.bytes().data() + tok * stride, cols);
                    ref.insert(ref.end(), row.begin(), row.end());
                }
                expect_close(report_, "embed", name_of(t), out, ref, row_max_abs(ref, n, cols), tol,
                             fmt::format("vocab {} cols {} rows {}", kVocab, cols, n));
            }
        }
    }
}

// matmul: y[c][r] = sum_i W[r][i] x[c][i]. Scale of token row c: max over r of the 2-norm of
// the products W[r][i] x[c][i], the typical size of a dot product of these values (|y| itself
// can cancel to ~0). Float accumulation over k <= 512 products (the scalar path sums them in
// order) reached 4.1e-6 of that over 40 seeded runs: 2e-5. Each case runs twice:
//  - "matmul_grid": activations that 8-bit rounding per block keeps exactly (grid_activations),
//    so every type must match up to float accumulation: 2e-5;
//  - "matmul": normal activations. Float paths (plain types): 2e-5. Quantised types: a backend
//    may round the activations to 8 bits per block (the CPU does: blocks of 32 for the 32-block
//    types, of 256 for the K-quants, as llama.cpp's Q8_0/Q8_K), an error of up to 1/254 of the
//    block's max per element; over 2,500 seeded runs of the 32-block types the worst row came
//    to 3.1% (1 run in 500 above 3%, falling ~10x per 0.5%): 6e-2. The K-quants (blocks of 256,
//    ~1.3x the step) use the same bound: over 240 seeded runs their worst row came to 4.4%, all
//    others below 4.1%.
double matmul_tol(DType t, bool grid) {
    return grid || is_plain(t) ? 2e-5 : 6e-2;
}

// Elements per activation block a backend may round to one 8-bit scale for weight type t.
int64_t act_block(DType t) {
    return dtype_info(t).block_size == 256 ? 256 : 32;
}

// Rows of k activations on a grid: per group of 256, one power-of-two step d, every element
// q * d with |q| <= 127 and one |q| = 127 in each block of 32, so amax / 127 == d exactly for
// blocks of 32 and of 256.
std::vector<float> grid_activations(int64_t rows, int64_t k, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> q(-127, 127), e(-4, 1), coin(0, 1);
    std::vector<float> x(static_cast<size_t>(rows * k));
    for (int64_t r = 0; r < rows; ++r) {
        float d = 0.0f;
        for (int64_t i = 0; i < k; ++i) {
            if (i % 256 == 0) d = std::ldexp(1.0f, e(rng));
            const int qi = i % 32 == 7 ? (coin(rng) != 0 ? 127 : -127) : q(rng);
            x[r * k + i] = static_cast<float>(qi) * d;
        }
    }
    return x;
}

bool rounds_activations(DType t) {
    return !is_plain(t);
}

struct MatmulReference {
    std::vector<double> y;      // m x n
    std::vector<double> scale;  // per token row, as above
    // Per output, the error that rounding each activation to the nearest step of its block
    // (act_block, d = amax / 127) leaves on average: sqrt(sum_i W[r][i]^2 d(i)^2 / 12). Empty
    // unless k is a multiple of the block.
    std::vector<double> noise;
};

// In float64, from the weight's bytes decoded independently of src/.
MatmulReference matmul_reference(DType t, const std::vector<uint8_t>& w, int64_t n, int64_t k,
                                 const std::vector<float>& x, int64_t m) {
    MatmulReference ref{std::vector<double>(static_cast<size_t>(m * n)),
                        std::vector<double>(static_cast<size_t>(m)),
                        {}};
    std::vector<double> step(static_cast<size_t>(m * k), 0.0);  // d of each activation's block
    const int64_t block = act_block(t);
    if (k % block == 0) {
        ref.noise.resize(ref.y.size());
        for (int64_t i = 0; i < m * k; i += block) {
            const double amax = std::fabs(
                *std::max_element(x.begin() + i, x.begin() + i + block,
                                  [](float a, float b) { return std::fabs(a) < std::fabs(b); }));
            std::fill_n(step.begin() + i, block, amax / 127.0);
        }
    }
    for (int64_t r = 0; r < n; ++r) {
        const auto wr = dequantize_row_f64(t, w.data() + r * row_bytes(t, k), k);
        for (int64_t c = 0; c < m; ++c) {
            double dot = 0.0, sq = 0.0, noise = 0.0;
            for (int64_t i = 0; i < k; ++i) {
                const double p = wr[i] * x[c * k + i], d = step[c * k + i];
                dot += p;
                sq += p * p;
                noise += wr[i] * wr[i] * d * d / 12.0;
            }
            ref.y[c * n + r] = dot;
            ref.scale[c] = std::max(ref.scale[c], std::sqrt(sq));
            if (!ref.noise.empty()) ref.noise[c * n + r] = std::sqrt(noise);
        }
    }
    return ref;
}

// Sum of squared errors in units of the rounding noise, over the normal-activation cases of one
// weight type.
struct NoiseStats {
    double sum_z2 = 0.0;
    int64_t count = 0;
};

void BackendOps::check_matmul(DType t, int64_t n, int64_t k, int64_t m, std::mt19937_64& rng,
                              NoiseStats& stats) {
    const DeviceWeight w(backend(), t, n, k, random_weight_bytes(t, n, k, rng));
    for (bool grid : {true, false}) {
        std::vector<float> x =
            grid ? grid_activations(m, k, rng) : normal_floats(static_cast<size_t>(m * k), rng);
        // An all-zero block of activations (a zero step for 8-bit rounding).
        if (m > 1) std::fill_n(x.begin() + k, std::min(k, act_block(t)), 0.0f);
        DeviceTensor dx(backend(), m, k), dy(backend(), m, n);
        dx.upload(x);
        plan_rows(m);
        backend().matmul(w.view(), dx.view(), dy.view());
        const MatmulReference ref = matmul_reference(t, w.bytes(), n, k, x, m);
        const std::vector<float> got = expect_close(
            report_, grid ? "matmul_grid" : "matmul", name_of(t), dy, ref.y, ref.scale,
            m > GetParam().precision.exact_matmul_rows
                ? std::max(matmul_tol(t, grid), GetParam().precision.rounded_matmul_tol)
                : matmul_tol(t, grid),
            fmt::format("n {} k {} m {}", n, k, m));
        if (grid || !rounds_activations(t)) continue;
        for (size_t i = 0; i < got.size(); ++i) {
            if (ref.noise[i] == 0.0) continue;
            const double z = (got[i] - ref.y[i]) / ref.noise[i];
            stats.sum_z2 += std::isfinite(z) ? z * z : INFINITY;
            ++stats.count;
        }
    }
}

// Besides each case's bound, the quantised types' errors on normal activations over all cases,
// as an RMS in units of the noise that rounding to the nearest 8-bit step of the type's
// activation block leaves ("matmul_noise"): ~1.0 for such rounding (0.90 to 1.09 over 300
// seeded runs; K-quants 0.88 to 1.13 over 240), 2.0 for rounding toward zero, ~0
// for a backend that does not round. Tolerance 1.25: the per-case bound (6e-2) is too wide to
// see a biased rounding, this average is not.
TEST_P(BackendOps, Matmul) {
    auto rng = op_rng("matmul");
    for (DType t : kWeightTypes) {
        NoiseStats stats;
        for (int64_t k : cols_for(t)) {
            for (int64_t n : {1, 3, 17, 67}) {
                for (int64_t m : {1, 3, 8, 17}) check_matmul(t, n, k, m, rng, stats);
            }
        }
        // Rows as long as an 8B model's down projection (k = 14336): longer than a GPU kernel
        // stages in 48 KB of shared memory.
        for (int64_t m : {1, 8}) check_matmul(t, 5, 14336, m, rng, stats);
        // More rows than a GPU kernel for few rows takes (the CUDA backend switches at 2048).
        // Checked per output but kept out of the noise statistic: its 2500 rows share one
        // rounding of the activations, so their errors are one draw, not 2500, and would make
        // the statistic as noisy as a single short case.
        NoiseStats correlated;
        for (int64_t m : {1, 8}) check_matmul(t, 2500, cols_for(t).front(), m, rng, correlated);
        if (!rounds_activations(t)) continue;
        const double rms = std::sqrt(stats.sum_z2 / static_cast<double>(stats.count));
        report_.add("matmul_noise", name_of(t), rms, 1.25);
        EXPECT_LE(rms, 1.25) << "matmul " << name_of(t) << ": errors on normal activations are "
                             << rms << " x the noise of rounding them to the nearest 8-bit step ("
                             << stats.count << " outputs), seed " << run_seed();
    }
}

// A matmul's row r depends on row r of x alone: the same rows give the same bits whether they
// come in a batch of 1, 7 or 40 (a prefill chunked differently must not change a logit). Exact
// on backends whose rounding is per row at every batch size; a backend that switches kernels
// above Precision::exact_matmul_rows is compared on each side of the switch only.
TEST_P(BackendOps, MatmulRowsIndependentOfBatch) {
    auto rng = op_rng("matmul_batch");
    constexpr int64_t kRows = 40;
    for (DType t : kWeightTypes) {
        for (const auto& [n, k] : {std::pair<int64_t, int64_t>{67, 256}, {576, 1536}, {9, 14336}}) {
            if (k % dtype_info(t).block_size != 0) continue;
            const DeviceWeight w(backend(), t, n, k, random_weight_bytes(t, n, k, rng));
            const std::vector<float> x = normal_floats(static_cast<size_t>(kRows * k), rng);
            auto run = [&](int64_t first, int64_t m) {
                DeviceTensor dx(backend(), m, k), dy(backend(), m, n);
                dx.upload(std::vector<float>(x.begin() + first * k, x.begin() + (first + m) * k));
                plan_rows(m);
                backend().matmul(w.view(), dx.view(), dy.view());
                return dy.download();
            };
            const int64_t exact = GetParam().precision.exact_matmul_rows;
            const int64_t big = exact >= kRows ? kRows : exact;  // the largest batch of one path
            const std::vector<float> all = run(0, big);
            for (int64_t m : {int64_t{1}, int64_t{7}}) {
                if (m > big) continue;
                for (int64_t first = 0; first + m <= big; first += 13) {
                    const std::vector<float> part = run(first, m);
                    for (int64_t i = 0; i < m * n; ++i) {
                        ASSERT_EQ(part[i], all[first * n + i])
                            << name_of(t) << " n " << n << " k " << k << ": row " << first + i / n
                            << " col " << i % n << " in a batch of " << m << " vs " << big;
                    }
                }
            }
        }
    }
}

// rms_norm: y = x / sqrt(mean(x^2) + eps) * w. Two float roundings per element: 2e-6 of the
// row's max. Rows of 1e-3 and 1e3 times the usual size make eps matter and not matter.
TEST_P(BackendOps, RmsNorm) {
    auto rng = op_rng("rms_norm");
    for (int64_t cols : {31, 96, 257, 2048}) {
        for (int64_t rows : {1, 3, 17}) {
            for (float eps : {1e-5f, 1e-6f}) {
                std::vector<float> x = normal_floats(static_cast<size_t>(rows * cols), rng);
                for (int64_t c = 0; c < cols; ++c) {
                    x[c] *= 1e-3f;
                    if (rows > 2) x[2 * cols + c] *= 1e3f;
                }
                const std::vector<float> wf = normal_floats(static_cast<size_t>(cols), rng);
                const auto w = DeviceWeight::f32(backend(), wf);
                DeviceTensor dx(backend(), rows, cols), dy(backend(), rows, cols);
                dx.upload(x);
                plan_rows(rows);
                backend().rms_norm(dx.view(), w.view(), dy.view(), eps);

                std::vector<double> ref(x.size());
                for (int64_t r = 0; r < rows; ++r) {
                    double ss = 0.0;
                    for (int64_t c = 0; c < cols; ++c)
                        ss += double{x[r * cols + c]} * x[r * cols + c];
                    const double inv = 1.0 / std::sqrt(ss / cols + eps);
                    for (int64_t c = 0; c < cols; ++c) {
                        ref[r * cols + c] = x[r * cols + c] * inv * wf[c];
                    }
                }
                expect_close(report_, "rms_norm", "F32", dy, ref, row_max_abs(ref, rows, cols),
                             2e-6, fmt::format("rows {} cols {} eps {}", rows, cols, eps));
            }
        }
    }
}

// add_inplace and add_bias write in place, so their output cannot start poisoned; a skipped row
// still shows (it keeps y), and the guard row catches writes past the end. One rounding: 1e-6.
TEST_P(BackendOps, AddInplace) {
    auto rng = op_rng("add_inplace");
    for (int64_t cols : {1, 31, 96, 257}) {
        for (int64_t rows : {1, 3, 17}) {
            const auto n = static_cast<size_t>(rows * cols);
            const std::vector<float> y = normal_floats(n, rng), x = normal_floats(n, rng);
            DeviceTensor dy(backend(), rows, cols), dx(backend(), rows, cols);
            dy.upload(y);
            dx.upload(x);
            plan_rows(rows);
            backend().add_inplace(dy.view(), dx.view());
            std::vector<double> ref(n);
            for (size_t i = 0; i < n; ++i) ref[i] = double{y[i]} + x[i];
            expect_close(report_, "add_inplace", "F32", dy, ref, row_max_abs(ref, rows, cols), 1e-6,
                         fmt::format("rows {} cols {}", rows, cols));
        }
    }
}

TEST_P(BackendOps, AddBias) {
    auto rng = op_rng("add_bias");
    for (int64_t cols : {1, 31, 96, 257}) {
        for (int64_t rows : {1, 3, 17}) {
            const std::vector<float> y = normal_floats(static_cast<size_t>(rows * cols), rng);
            const std::vector<float> bias = normal_floats(static_cast<size_t>(cols), rng);
            const auto b = DeviceWeight::f32(backend(), bias);
            DeviceTensor dy(backend(), rows, cols);
            dy.upload(y);
            plan_rows(rows);
            backend().add_bias(dy.view(), b.view());
            std::vector<double> ref(y.size());
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < cols; ++c) {
                    ref[r * cols + c] = double{y[r * cols + c]} + bias[c];
                }
            }
            expect_close(report_, "add_bias", "F32", dy, ref, row_max_abs(ref, rows, cols), 1e-6,
                         fmt::format("rows {} cols {}", rows, cols));
        }
    }
}

// The gated products y = act(gate) * up (SwiGLU, GeGLU). Scale of a row: its largest
// |gate * up|, a bound on |y| (|act(g)| <= |g| for both) that does not vanish where a saturated
// gate makes y ~ 0 (silu(-100) is 4e-42, below what a float computes). An exp or a tanh, a cube
// and a few products: 2e-6. Gates of +-30 and +-100 reach the saturated ends (e^100 overflows a
// float; tanh must not turn into NaN).
void BackendOps::check_gated(const char* op, GatedOp run, double (*act)(double)) {
    auto rng = op_rng(op);
    for (int64_t cols : {1, 31, 96, 257}) {
        for (int64_t rows : {1, 3, 17}) {
            const auto n = static_cast<size_t>(rows * cols);
            std::vector<float> gate = normal_floats(n, rng, 3.0);
            const std::vector<float> up = normal_floats(n, rng);
            const float extremes[] = {30.0f, -30.0f, 100.0f, -100.0f};
            for (size_t i = 0; i < std::min<size_t>(n, 4); ++i) gate[n - 1 - i] = extremes[i];
            DeviceTensor dg(backend(), rows, cols), du(backend(), rows, cols);
            DeviceTensor dy(backend(), rows, cols);
            dg.upload(gate);
            du.upload(up);
            plan_rows(rows);
            (backend().*run)(dg.view(), du.view(), dy.view());
            std::vector<double> ref(n), gate_up(n);
            for (size_t i = 0; i < n; ++i) {
                ref[i] = act(gate[i]) * up[i];
                gate_up[i] = double{gate[i]} * up[i];
            }
            expect_close(report_, op, "F32", dy, ref, row_max_abs(gate_up, rows, cols), 2e-6,
                         fmt::format("rows {} cols {}", rows, cols));
        }
    }
}

// silu(g) = g / (1 + e^-g)
TEST_P(BackendOps, SiluMul) {
    check_gated("silu_mul", &Backend::silu_mul, [](double g) { return g / (1.0 + std::exp(-g)); });
}

// gelu(g) in its tanh approximation: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))
TEST_P(BackendOps, GeluMul) {
    check_gated("gelu_mul", &Backend::gelu_mul, [](double g) {
        const double k = std::sqrt(2.0 / std::numbers::pi);
        return 0.5 * g * (1.0 + std::tanh(k * (g + 0.044715 * g * g * g)));
    });
}

// scale: y *= factor, in place (as add_inplace). One rounding: 1e-6.
TEST_P(BackendOps, Scale) {
    auto rng = op_rng("scale");
    for (int64_t cols : {1, 31, 640}) {
        for (int64_t rows : {1, 3, 17}) {
            const std::vector<float> y = normal_floats(static_cast<size_t>(rows * cols), rng);
            const float factor = std::sqrt(static_cast<float>(cols)) + 0.5f;
            DeviceTensor dy(backend(), rows, cols);
            dy.upload(y);
            plan_rows(rows);
            backend().scale(dy.view(), factor);
            std::vector<double> ref(y.size());
            for (size_t i = 0; i < y.size(); ++i) ref[i] = double{y[i]} * factor;
            expect_close(report_, "scale", "F32", dy, ref, row_max_abs(ref, rows, cols), 1e-6,
                         fmt::format("rows {} cols {}", rows, cols));
        }
    }
}

// rope: per head, pairs (2i, 2i + 1) (GGUF Llama layout) or (i, i + rot_dim / 2) (neox) turn by
// the row's angle i; dims from rot_dim on stay. In place, as add_inplace. The angles come from
// the batch's positions (theta 10000), as the model makes them. Two products and a sum per
// element: 1e-6 of the row's max.
struct RopeCase {
    int64_t n_heads, head_dim, rot_dim;
    bool neox;
};

TEST_P(BackendOps, Rope) {
    auto rng = op_rng("rope");
    const RopeCase cases[] = {{1, 64, 64, false}, {3, 64, 64, true},  {5, 80, 32, false},
                              {2, 96, 64, true},  {4, 40, 24, false}, {2, 40, 24, true}};
    for (const RopeCase& rc : cases) {
        for (int64_t rows : {1, 3, 17}) {
            const int64_t cols = rc.n_heads * rc.head_dim, half = rc.rot_dim / 2;
            const auto first = std::uniform_int_distribution<int64_t>(0, 5000)(rng);
            plan_one_sequence(std::vector<int32_t>(rows, 0), first);
            std::vector<float> cs(static_cast<size_t>(rows * half)), sn(cs.size());
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t i = 0; i < half; ++i) {
                    const double angle =
                        batch_.positions[r] * std::pow(10000.0, -2.0 * i / rc.rot_dim);
                    cs[r * half + i] = static_cast<float>(std::cos(angle));
                    sn[r * half + i] = static_cast<float>(std::sin(angle));
                }
            }
            const std::vector<float> x = normal_floats(static_cast<size_t>(rows * cols), rng);
            DeviceTensor dx(backend(), rows, cols), dcos(backend(), rows, half);
            DeviceTensor dsin(backend(), rows, half);
            dx.upload(x);
            dcos.upload(cs);
            dsin.upload(sn);
            backend().rope(dx.view(), rc.n_heads, rc.head_dim, rc.rot_dim, dcos.view(), dsin.view(),
                           rc.neox);

            std::vector<double> ref = to_double(x);
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t h = 0; h < rc.n_heads; ++h) {
                    double* v = ref.data() + r * cols + h * rc.head_dim;
                    for (int64_t i = 0; i < half; ++i) {
                        const int64_t a = rc.neox ? i : 2 * i, b = rc.neox ? i + half : 2 * i + 1;
                        const double c = cs[r * half + i], s = sn[r * half + i];
                        const double va = v[a], vb = v[b];
                        v[a] = va * c - vb * s;
                        v[b] = va * s + vb * c;
                    }
                }
            }
            expect_close(report_, "rope", rc.neox ? "neox" : "norm", dx, ref,
                         row_max_abs(ref, rows, cols), 1e-6,
                         fmt::format("rows {} heads {} head_dim {} rot_dim {}", rows, rc.n_heads,
                                     rc.head_dim, rc.rot_dim));
        }
    }
}

// gather_logit_rows: out[i] = x[logit_rows[i]], a copy: exact. The batch mixes sequences that
// want their last row, every row (draft verification) and none (a prompt chunk).
TEST_P(BackendOps, GatherLogitRows) {
    auto rng = op_rng("gather_logit_rows");
    struct Seq {
        int32_t q_len;
        bool last, all;
    };
    const Seq seqs[] = {{5, true, false}, {3, false, true}, {4, false, false},
                        {1, true, false}, {7, false, true}, {17, true, false}};
    for (int64_t cols : {31, 257}) {
        batch_.clear();
        int32_t next_block = 0;
        for (const Seq& s : seqs) {
            const int64_t first = std::uniform_int_distribution<int64_t>(0, 40)(rng);
            const int64_t kv = first + s.q_len;
            std::vector<int32_t> blocks(static_cast<size_t>((kv + 15) / 16));
            for (int32_t& b : blocks) b = next_block++;
            std::vector<int64_t> slots(static_cast<size_t>(s.q_len));
            for (int64_t i = 0; i < s.q_len; ++i) slots[i] = blocks[0] * 16 + first + i;
            batch_.add_sequence(std::vector<int32_t>(s.q_len, 1), first, slots, blocks, kv, s.last,
                                s.all);
        }
        batch_.finish();
        batch_.validate(16);
        backend().plan(batch_);
        const int64_t rows = batch_.n_rows(), out_rows = std::ssize(batch_.logit_rows);
        const std::vector<float> x = normal_floats(static_cast<size_t>(rows * cols), rng);
        DeviceTensor dx(backend(), rows, cols), dout(backend(), out_rows, cols);
        dx.upload(x);
        backend().gather_logit_rows(dx.view(), dout.view());
        std::vector<double> ref;
        for (int32_t r : batch_.logit_rows) {
            ref.insert(ref.end(), x.begin() + r * cols, x.begin() + (r + 1) * cols);
        }
        expect_close(report_, "gather_rows", "F32", dout, ref, row_max_abs(ref, out_rows, cols),
                     0.0, fmt::format("{} of {} rows, cols {}", out_rows, rows, cols));
    }
}

INSTANTIATE_TEST_SUITE_P(Built, BackendOps, ::testing::ValuesIn(built_backends()), factory_name);

}  // namespace
}  // namespace vela::test
