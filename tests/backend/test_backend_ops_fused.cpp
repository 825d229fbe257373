// Conformance of the Backend's fused ops (add_rms_norm, matmuls, gated_ffn, rope_write_kv) on
// every built backend: each against the ops it is defined by (backend.h), run on the same
// backend, which test_backend_ops*.cpp hold against float64. A backend that fuses must give what
// its own unfused ops give: bit for bit where the fused kernel does the same arithmetic in the
// same order (the matvecs, the norm), within 1e-6 of the row's largest value where a compiler
// may contract differently (activations, rotations).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <vector>

#include "backend_conformance.h"
#include "random_weights.h"

namespace vela::test {
namespace {

class BackendFusedOps : public BackendTest {};

std::vector<double> widen(const std::vector<float>& v) {
    return {v.begin(), v.end()};
}

// x += delta, y = rms_norm(x) * w; also with y the same buffer as delta (as the model calls it).
TEST_P(BackendFusedOps, AddRmsNormEqualsAddThenNorm) {
    auto rng = op_rng("add_rms_norm");
    for (int64_t rows : {1, 3, 9}) {
        for (int64_t cols : {64, 576, 1000}) {
            for (bool alias : {false, true}) {
                plan_rows(rows);
                const auto x = normal_floats(static_cast<size_t>(rows * cols), rng);
                const auto d = normal_floats(x.size(), rng);
                const DeviceWeight w = DeviceWeight::f32(backend(), normal_floats(cols, rng));
                DeviceTensor fx(backend(), rows, cols), fd(backend(), rows, cols);
                DeviceTensor fy(backend(), rows, cols), ux(backend(), rows, cols);
                DeviceTensor ud(backend(), rows, cols), uy(backend(), rows, cols);
                fx.upload(x);
                fd.upload(d);
                ux.upload(x);
                ud.upload(d);
                backend().add_rms_norm(fx.view(), fd.view(), w.view(),
                                       alias ? fd.view() : fy.view(), 1e-5f);
                backend().add_inplace(ux.view(), ud.view());
                backend().rms_norm(ux.view(), w.view(), uy.view(), 1e-5f);
                const std::string what = fmt::format("rows {} cols {} alias {}", rows, cols, alias);
                const auto want_x = widen(ux.download()), want_y = widen(uy.download());
                expect_close(report_, "add_rms_norm", "x", fx, want_x, std::vector(rows, 1.0), 0.0,
                             what);
                expect_close(report_, "add_rms_norm", "y", alias ? fd : fy, want_y,
                             row_max_abs(want_y, rows, cols), 1e-6, what);
            }
        }
    }
}

// Q, K and V of one input: every output bit-identical to its own matmul, for row counts on both
// sides of the matvec / GEMM boundary, and with a matrix of another type (no single launch).
TEST_P(BackendFusedOps, MatmulsEqualSeparateMatmuls) {
    auto rng = op_rng("matmuls");
    struct Case {
        DType q, k, v;
        int64_t cols;
    };
    const Case cases[] = {{DType::F16, DType::F16, DType::F16, 96},
                          {DType::Q8_0, DType::Q8_0, DType::Q8_0, 288},
                          {DType::Q4_1, DType::Q4_1, DType::Q4_1, 96},
                          {DType::Q4_K, DType::Q4_K, DType::Q4_K, 512},
                          {DType::Q4_K, DType::Q4_K, DType::Q6_K, 256}};
    const int64_t ns[] = {96, 32, 40};
    for (const Case& c : cases) {
        for (int64_t m : {1, 2, 5, 8, 11}) {
            plan_rows(m);
            std::mt19937 gen(static_cast<uint32_t>(rng()));
            const DType types[] = {c.q, c.k, c.v};
            std::vector<DeviceWeight> w;
            std::vector<DeviceTensor> fused, alone;
            for (int i = 0; i < 3; ++i) {
                w.emplace_back(backend(), types[i], ns[i], c.cols,
                               random_weights(types[i], ns[i], c.cols, gen));
                fused.emplace_back(backend(), m, ns[i]);
                alone.emplace_back(backend(), m, ns[i]);
            }
            DeviceTensor x(backend(), m, c.cols);
            x.upload(normal_floats(static_cast<size_t>(m * c.cols), rng));
            const Weight* ws[] = {&w[0].view(), &w[1].view(), &w[2].view()};
            const Tensor ys[] = {fused[0].view(), fused[1].view(), fused[2].view()};
            backend().matmuls(ws, x.view(), ys);
            for (int i = 0; i < 3; ++i) {
                backend().matmul(w[i].view(), x.view(), alone[i].view());
                expect_close(report_, "matmuls", std::string(dtype_name(types[i])), fused[i],
                             widen(alone[i].download()), std::vector(m, 1.0), 0.0,
                             fmt::format("m {} cols {} matrix {}", m, c.cols, i));
            }
        }
    }
}

// act(x * gate^T) * (x * up^T) against matmul, matmul, silu_mul / gelu_mul.
TEST_P(BackendFusedOps, GatedFfnEqualsMatmulsThenGate) {
    auto rng = op_rng("gated_ffn");
    for (DType t : {DType::F16, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
        const int64_t n = 72, k = dtype_info(t).block_size == 256 ? 512 : 128;
        for (int64_t m : {1, 3, 8, 10}) {
            for (bool gelu : {false, true}) {
                plan_rows(m);
                std::mt19937 gen(static_cast<uint32_t>(rng()));
                const DeviceWeight g(backend(), t, n, k, random_weights(t, n, k, gen));
                const DeviceWeight u(backend(), t, n, k, random_weights(t, n, k, gen));
                DeviceTensor x(backend(), m, k), y(backend(), m, n), scratch(backend(), m, n);
                DeviceTensor ag(backend(), m, n), au(backend(), m, n);
                x.upload(normal_floats(static_cast<size_t>(m * k), rng));
                backend().gated_ffn(g.view(), u.view(), x.view(), y.view(), scratch.view(), gelu);
                backend().matmul(g.view(), x.view(), ag.view());
                backend().matmul(u.view(), x.view(), au.view());
                if (gelu)
                    backend().gelu_mul(ag.view(), au.view(), ag.view());
                else
                    backend().silu_mul(ag.view(), au.view(), ag.view());
                const auto want = widen(ag.download());
                expect_close(report_, "gated_ffn", std::string(dtype_name(t)), y, want,
                             row_max_abs(want, m, n), 1e-6, fmt::format("m {} gelu {}", m, gelu));
            }
        }
    }
}

// rope of q and k, then write_kv: q, k and every stored row against rope, rope, write_kv into a
// second storage of the same backend.
TEST_P(BackendFusedOps, RopeWriteKvEqualsRopeThenWrite) {
    auto rng = op_rng("rope_write_kv");
    struct Case {
        int64_t n_heads, n_kv_heads, head_dim, rot_dim;
        bool neox;
    };
    const Case cases[] = {{4, 2, 64, 64, false},
                          {9, 3, 64, 64, true},
                          {4, 4, 128, 64, true},
                          {8, 2, 128, 128, false}};
    constexpr int64_t kBlock = 16;
    for (const Case& c : cases) {
        const auto& supports = GetParam().supports_kv;
        if (supports && !supports(KvFormat::F16, 0)) continue;
        for (int64_t rows : {1, 5, 19}) {
            const auto first = std::uniform_int_distribution<int64_t>(0, 40)(rng);
            plan_one_sequence(std::vector<int32_t>(rows, 0), first);
            const int64_t half = c.rot_dim / 2, qc = c.n_heads * c.head_dim;
            const int64_t kc = c.n_kv_heads * c.head_dim;
            const auto cs = normal_floats(static_cast<size_t>(rows * half), rng);
            const auto sn = normal_floats(cs.size(), rng);
            const auto q = normal_floats(static_cast<size_t>(rows * qc), rng);
            const auto k = normal_floats(static_cast<size_t>(rows * kc), rng);
            const auto v = normal_floats(k.size(), rng);
            const int64_t blocks = (first + rows + kBlock - 1) / kBlock;
            const KvLayout layout{1, c.n_kv_heads, c.head_dim, kBlock, blocks};
            auto fused_kv = backend().make_kv_storage(layout, KvFormat::F16);
            auto alone_kv = backend().make_kv_storage(layout, KvFormat::F16);
            DeviceTensor dcos(backend(), rows, half), dsin(backend(), rows, half);
            DeviceTensor fq(backend(), rows, qc), fk(backend(), rows, kc), fv(backend(), rows, kc);
            DeviceTensor uq(backend(), rows, qc), uk(backend(), rows, kc), uv(backend(), rows, kc);
            dcos.upload(cs);
            dsin.upload(sn);
            fq.upload(q);
            uq.upload(q);
            fk.upload(k);
            uk.upload(k);
            fv.upload(v);
            uv.upload(v);
            backend().rope_write_kv(*fused_kv, 0, fq.view(), fk.view(), fv.view(), c.n_heads,
                                    c.n_kv_heads, c.head_dim, c.rot_dim, dcos.view(), dsin.view(),
                                    c.neox);
            backend().rope(uq.view(), c.n_heads, c.head_dim, c.rot_dim, dcos.view(), dsin.view(),
                           c.neox);
            backend().rope(uk.view(), c.n_kv_heads, c.head_dim, c.rot_dim, dcos.view(), dsin.view(),
                           c.neox);
            backend().write_kv(*alone_kv, 0, uk.view(), uv.view());
            const std::string what =
                fmt::format("rows {} heads {}/{} head_dim {} rot_dim {} {}", rows, c.n_heads,
                            c.n_kv_heads, c.head_dim, c.rot_dim, c.neox ? "neox" : "norm");
            const auto want_q = widen(uq.download()), want_k = widen(uk.download());
            expect_close(report_, "rope_write_kv", "q", fq, want_q, row_max_abs(want_q, rows, qc),
                         1e-6, what);
            expect_close(report_, "rope_write_kv", "k", fk, want_k, row_max_abs(want_k, rows, kc),
                         1e-6, what);
            // The stored rows: f16 of values within 1e-6 relative, so equal or one f16 step
            // apart (2^-10 relative).
            std::vector<float> got(static_cast<size_t>(c.head_dim)), want(got.size());
            double worst = 0.0;
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t h = 0; h < c.n_kv_heads; ++h) {
                    for (bool value : {false, true}) {
                        GetParam().read_kv(*fused_kv, 0, first + r, h, value, got.data());
                        GetParam().read_kv(*alone_kv, 0, first + r, h, value, want.data());
                        for (int64_t d = 0; d < c.head_dim; ++d) {
                            const double e =
                                std::fabs(got[d] - want[d]) /
                                std::max(std::fabs(static_cast<double>(want[d])), 1e-3);
                            worst = std::max(worst, std::isfinite(got[d]) ? e : INFINITY);
                        }
                    }
                }
            }
            report_.add("rope_write_kv", "kv", worst, 1e-3);
            EXPECT_LE(worst, 1e-3) << what << ", seed " << run_seed();
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Built, BackendFusedOps, ::testing::ValuesIn(built_backends()),
                         factory_name);

}  // namespace
}  // namespace vela::test
