// Prefill backward (dQ, dK, dV) vs a float64 CPU reference at awkward sizes, GQA (dK/dV summed
// over the group), causal with lq != lk, an empty query sequence and a sliding window. The
// kernel gets O and LSE from prefill_forward, as in training. Every case runs on each dK/dV
// kernel the device has (mma.sync; the Hopper wgmma kernel on sm_90a), against one reference.
// Tolerances, per gradient tensor over all elements: relative L2 error <= 1e-2 (bf16) / 1.5e-3
// (fp16) and max |err| <= 1e-2 (bf16) / 2e-3 (fp16) of the tensor's max |ref| (measured on
// H100: rel L2 2.2-2.7e-3 / 2.8-3.3e-4, max 1.6-3.6e-3 / 2.6-5.3e-4). The kernel rounds
// P and dS to the input dtype before the tensor-core products (as FlashAttention does), and its
// D = rowsum(dO * O) uses the rounded O.
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "core/error.h"
#include "cuda_test_util.h"

namespace vela::cuda::test {
namespace {

struct BwdCase {
    Dtype dtype;
    int head_dim, num_heads, num_kv_heads;
    std::vector<int> lq, lk;
    bool causal = false;
    int window = -1;
};

struct Grads {
    std::vector<double> dq, dk, dv;
};

// Float64 backward of softmax(scale * Q K^T) V for one (sequence, head), accumulated into g.
void reference_head(const BwdCase& c, int b, int h, const std::vector<int>& cu_q,
                    const std::vector<int>& cu_k, const std::vector<double>& q,
                    const std::vector<double>& k, const std::vector<double>& v,
                    const std::vector<double>& d_o, Grads& g) {
    const int hd = c.head_dim, H = c.num_heads, Hk = c.num_kv_heads, kvh = h / (H / Hk);
    const int lq = c.lq[b], lk = c.lk[b], diag = lk - lq;
    const double scale = 1.0 / std::sqrt(double(hd));
    auto qi = [&](int i) { return ((cu_q[b] + i) * size_t(H) + h) * hd; };
    auto kj = [&](int j) { return ((cu_k[b] + j) * size_t(Hk) + kvh) * hd; };
    std::vector<double> p(lk), dp(lk);
    for (int i = 0; i < lq; ++i) {
        double mx = -INFINITY;
        for (int j = 0; j < lk; ++j) {
            const bool vis =
                (!c.causal || j <= i + diag) && (c.window < 0 || j >= i + diag - c.window);
            double s = -INFINITY;
            if (vis) {
                s = 0;
                for (int d = 0; d < hd; ++d) s += q[qi(i) + d] * k[kj(j) + d];
                s *= scale;
            }
            p[j] = s;
            mx = std::max(mx, s);
        }
        if (mx == -INFINITY) continue;  // no visible key: zero gradients
        double sum = 0, dsum = 0;
        for (int j = 0; j < lk; ++j) sum += (p[j] = p[j] == -INFINITY ? 0 : std::exp(p[j] - mx));
        for (int j = 0; j < lk; ++j) {
            p[j] /= sum;
            dp[j] = 0;
            for (int d = 0; d < hd; ++d) dp[j] += d_o[qi(i) + d] * v[kj(j) + d];
            dsum += p[j] * dp[j];
        }
        for (int j = 0; j < lk; ++j) {
            const double ds = p[j] * (dp[j] - dsum) * scale;
            for (int d = 0; d < hd; ++d) {
                g.dq[qi(i) + d] += ds * k[kj(j) + d];
                g.dk[kj(j) + d] += ds * q[qi(i) + d];
                g.dv[kj(j) + d] += p[j] * d_o[qi(i) + d];
            }
        }
    }
}

void expect_close(const char* name, Dtype t, const std::vector<uint16_t>& got,
                  const std::vector<double>& ref) {
    ErrorStats e;
    for (size_t i = 0; i < ref.size(); ++i) e.add(to_double(t, got[i]), ref[i]);
    const double rel_tol = t == Dtype::kBf16 ? 1e-2 : 1.5e-3,
                 max_tol = t == Dtype::kBf16 ? 1e-2 : 2e-3;
    std::printf("  %s: rel L2 %.2e, max |err| %.2e of max |ref| %.2e\n", name, e.rel(), e.max_abs,
                e.max_ref);
    EXPECT_EQ(e.nonfinite, 0u) << name << ": unwritten or NaN";
    EXPECT_LE(e.rel(), rel_tol) << name;
    EXPECT_LE(e.max_abs, max_tol * e.max_ref) << name;
}

void run_backward_case(const BwdCase& c, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int> cu_q{0}, cu_k{0};
    for (size_t b = 0; b < c.lq.size(); ++b) {
        cu_q.push_back(cu_q.back() + c.lq[b]);
        cu_k.push_back(cu_k.back() + c.lk[b]);
    }
    const size_t hd = c.head_dim, nq = cu_q.back() * c.num_heads * hd,
                 nk = cu_k.back() * c.num_kv_heads * hd;
    std::vector<double> qd, kd, vd, dod;
    const auto qh = random_16bit(c.dtype, nq, rng, qd), kh = random_16bit(c.dtype, nk, rng, kd),
               vh = random_16bit(c.dtype, nk, rng, vd), doh = random_16bit(c.dtype, nq, rng, dod);
    DeviceBuffer<uint16_t> q(qh), k(kh), v(vh), d_o(doh), o(nq), dq(nq), dk(nk), dv(nk);
    DeviceBuffer<int32_t> cuq(std::vector<int32_t>(cu_q.begin(), cu_q.end()));
    DeviceBuffer<int32_t> cuk(std::vector<int32_t>(cu_k.begin(), cu_k.end()));
    DeviceBuffer<float> lse(std::max<size_t>(cu_q.back() * size_t(c.num_heads), 1));

    PrefillParams f;
    f.dtype = c.dtype;
    f.head_dim = c.head_dim;
    f.num_heads = c.num_heads;
    f.num_kv_heads = c.num_kv_heads;
    f.batch = static_cast<int>(c.lq.size());
    f.max_seqlen_q = *std::max_element(c.lq.begin(), c.lq.end());
    f.q = q.get();
    f.k = k.get();
    f.v = v.get();
    f.o = o.get();
    f.lse = lse.get();
    f.q_row_stride = f.o_row_stride = int64_t{c.num_heads} * c.head_dim;
    f.q_head_stride = f.o_head_stride = c.head_dim;
    f.kv_row_stride = int64_t{c.num_kv_heads} * c.head_dim;
    f.kv_head_stride = c.head_dim;
    f.cu_seqlens_q = cuq.get();
    f.cu_seqlens_k = cuk.get();
    f.softmax_scale = 1.f / std::sqrt(float(c.head_dim));
    f.causal = c.causal;
    f.window_left = c.window;
    prefill_forward(f);

    BackwardParams p;
    p.dtype = c.dtype;
    p.head_dim = c.head_dim;
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.batch = f.batch;
    p.max_seqlen_q = f.max_seqlen_q;
    p.max_seqlen_k = *std::max_element(c.lk.begin(), c.lk.end());
    p.total_q = cu_q.back();
    p.q = q.get();
    p.o = o.get();
    p.d_o = d_o.get();
    p.q_row_stride = f.q_row_stride;
    p.q_head_stride = f.q_head_stride;
    p.cu_seqlens_q = cuq.get();
    p.k = k.get();
    p.v = v.get();
    p.kv_row_stride = f.kv_row_stride;
    p.kv_head_stride = f.kv_head_stride;
    p.cu_seqlens_k = cuk.get();
    p.lse = lse.get();
    DeviceBuffer<uint8_t> ws(backward_workspace_bytes(p));
    p.dq = dq.get();
    p.dk = dk.get();
    p.dv = dv.get();
    p.workspace = ws.get();
    p.softmax_scale = f.softmax_scale;
    p.causal = c.causal;
    p.window_left = c.window;

    Grads ref{std::vector<double>(nq), std::vector<double>(nk), std::vector<double>(nk)};
    for (size_t b = 0; b < c.lq.size(); ++b)
        for (int h = 0; h < c.num_heads; ++h)
            reference_head(c, static_cast<int>(b), h, cu_q, cu_k, qd, kd, vd, dod, ref);
    std::vector<PrefillKernel> kernels{PrefillKernel::kMmaSync};
    if (prefill_wgmma_available()) kernels.push_back(PrefillKernel::kWgmma);
    for (const PrefillKernel kernel : kernels) {
        SCOPED_TRACE(kernel == PrefillKernel::kWgmma ? "wgmma kernel" : "mma.sync kernel");
        std::printf(" %s:\n", kernel == PrefillKernel::kWgmma ? "wgmma" : "mma.sync");
        ws.poison();
        dq.poison();
        dk.poison();
        dv.poison();
        p.kernel = kernel;
        prefill_backward(p);
        ASSERT_CUDA(cudaDeviceSynchronize());
        expect_close("dq", c.dtype, dq.download(), ref.dq);
        expect_close("dk", c.dtype, dk.download(), ref.dk);
        expect_close("dv", c.dtype, dv.download(), ref.dv);
    }
}

class BackwardSmall : public ::testing::TestWithParam<std::tuple<Dtype, int, bool>> {};

// Lengths 1, 17, 97 (lq != lk for one), an empty query sequence whose keys get zero gradients.
TEST_P(BackwardSmall, OddLengthsGqa2) {
    VELA_SKIP_WITHOUT_DEVICE();
    const auto [dtype, hd, causal] = GetParam();
    BwdCase c{dtype, hd, 4, 2, {1, 17, 97, 0, 40}, {1, 40, 97, 5, 40}, causal};
    run_backward_case(c, 555 + hd + causal);
}

INSTANTIATE_TEST_SUITE_P(All, BackwardSmall,
                         ::testing::Combine(::testing::Values(Dtype::kBf16, Dtype::kF16),
                                            ::testing::Values(64, 128), ::testing::Bool()));

TEST(Backward, Long1000CausalGqa4Bf16) {
    VELA_SKIP_WITHOUT_DEVICE();
    run_backward_case({Dtype::kBf16, 128, 4, 1, {1000}, {1000}, true}, 11);
}

TEST(Backward, Long1000NonCausalF16) {
    VELA_SKIP_WITHOUT_DEVICE();
    run_backward_case({Dtype::kF16, 64, 2, 2, {1000}, {1000}, false}, 12);
}

// Several 128-key CTAs per sequence, a partial last one, lq != lk and 4 query heads per kv head
// (their dQ shares reach the fp32 accumulator from different CTAs).
TEST(Backward, MultiKeyTileCausalGqa4F16) {
    VELA_SKIP_WITHOUT_DEVICE();
    run_backward_case({Dtype::kF16, 64, 8, 2, {150, 129}, {333, 129}, true}, 14);
}

TEST(Backward, MultiKeyTileNonCausalHd128Bf16) {
    VELA_SKIP_WITHOUT_DEVICE();
    run_backward_case({Dtype::kBf16, 128, 2, 1, {257, 31}, {300, 31}, false}, 15);
}

TEST(Backward, SlidingWindowCausal) {
    VELA_SKIP_WITHOUT_DEVICE();
    run_backward_case({Dtype::kBf16, 64, 2, 1, {200, 33}, {200, 70}, true, 31}, 13);
}

// Several 128-key CTAs and many query steps per CTA at both head dims, GQA, a window wider
// than one tile: the wgmma kernel's double buffers swap many times.
TEST(Backward, Long700WindowGqa2F16Hd128) {
    VELA_SKIP_WITHOUT_DEVICE();
    run_backward_case({Dtype::kF16, 128, 4, 2, {700, 300}, {700, 420}, true, 150}, 16);
}

TEST(Backward, Long600NonCausalGqa3Bf16Hd64) {
    VELA_SKIP_WITHOUT_DEVICE();
    run_backward_case({Dtype::kBf16, 64, 3, 1, {600, 65}, {520, 200}, false}, 17);
}

TEST(Backward, RejectsUnsupportedHeadDimAndDtype) {
    BackwardParams p;
    p.num_heads = p.num_kv_heads = 1;
    for (int hd : {32, 96, 256}) {
        p.head_dim = hd;
        const std::string what = invalid_argument_of([&] { prefill_backward(p); });
        EXPECT_NE(what.find("head_dim " + std::to_string(hd)), std::string::npos) << what;
    }
    p.head_dim = 64;
    p.dtype = static_cast<Dtype>(9);
    EXPECT_NE(invalid_argument_of([&] { prefill_backward(p); }).find("dtype 9"), std::string::npos);
}

TEST(Backward, RejectsMissingWorkspace) {
    BackwardParams p;
    p.head_dim = 64;
    p.num_heads = p.num_kv_heads = 1;
    EXPECT_THROW(prefill_backward(p), InvalidArgument);
}

}  // namespace
}  // namespace vela::cuda::test
