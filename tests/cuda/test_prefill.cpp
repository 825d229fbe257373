// Prefill forward kernels (mma.sync, and the Hopper wgmma kernel where the device has it) vs a
// float64 CPU reference at awkward sizes; paged K/V vs contiguous; block-sparse masks vs the
// reference with the same mask. Every case runs on each kernel that supports it.
// Tolerances (outputs of softmax-weighted N(0,1) values, |o| < ~1): max |err| <= 2e-2 for
// bf16 and 4e-3 for fp16 (P is rounded to the input dtype before P*V, as in FlashAttention);
// LSE within 2e-3 absolute (fp32 scores of exactly representable inputs).
#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "cuda_test_util.h"

namespace vela::cuda::test {
namespace {

struct Case {
    Dtype dtype;
    int head_dim, num_heads, num_kv_heads;
    std::vector<int> lq, lk;  // per sequence
    bool causal = false;
    int window = -1;
    int block_size = 0;          // 0: contiguous K/V, else also run paged and compare
    int rows_checked = 1 << 30;  // per (sequence, head); long cases sample rows
    double mask_density = -1;    // >= 0: random block-sparse mask with this fraction kept
    bool shared_mask = false;    // one mask for every sequence and head (zero strides)
};

// Block-sparse mask [batch][heads][query blocks][key blocks] (tight strides) or empty.
struct BlockMask {
    std::vector<uint8_t> bits;
    int qblocks = 0, kblocks = 0, heads = 0;
    bool shared = false;
    bool keeps(size_t b, int h, int qi, int key) const {
        constexpr int kB = PrefillParams::kBlockMaskSize;
        if (bits.empty()) return true;
        if (shared) b = h = 0;
        return bits[((b * heads + h) * qblocks + qi / kB) * kblocks + key / kB] != 0;
    }
};

// Random mask; the first query block of head 0 of sequence 0 keeps nothing (rows with no key).
BlockMask make_block_mask(const Case& c, std::mt19937& rng) {
    BlockMask m;
    if (c.mask_density < 0) return m;
    constexpr int kB = PrefillParams::kBlockMaskSize;
    m.qblocks = (*std::max_element(c.lq.begin(), c.lq.end()) + kB - 1) / kB;
    m.kblocks = (*std::max_element(c.lk.begin(), c.lk.end()) + kB - 1) / kB;
    m.heads = c.shared_mask ? 1 : c.num_heads;
    m.shared = c.shared_mask;
    std::bernoulli_distribution keep(c.mask_density);
    m.bits.resize((m.shared ? 1 : c.lq.size()) * m.heads * m.qblocks * m.kblocks);
    for (auto& x : m.bits) x = keep(rng) ? 1 : 0;
    std::fill_n(m.bits.begin(), m.kblocks, 0);
    return m;
}

struct Inputs {
    std::vector<uint16_t> q, k, v;
    std::vector<double> qd, kd, vd;
    std::vector<int32_t> cu_q, cu_k;
};

Inputs make_inputs(const Case& c, std::mt19937& rng) {
    Inputs in;
    in.cu_q = {0};
    in.cu_k = {0};
    for (size_t b = 0; b < c.lq.size(); ++b) {
        in.cu_q.push_back(in.cu_q.back() + c.lq[b]);
        in.cu_k.push_back(in.cu_k.back() + c.lk[b]);
    }
    const size_t hd = c.head_dim;
    in.q = random_16bit(c.dtype, in.cu_q.back() * c.num_heads * hd, rng, in.qd);
    in.k = random_16bit(c.dtype, in.cu_k.back() * c.num_kv_heads * hd, rng, in.kd);
    in.v = random_16bit(c.dtype, in.cu_k.back() * c.num_kv_heads * hd, rng, in.vd);
    return in;
}

PrefillParams base_params(const Case& c) {
    PrefillParams p;
    p.dtype = c.dtype;
    p.head_dim = c.head_dim;
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.batch = static_cast<int>(c.lq.size());
    p.max_seqlen_q = *std::max_element(c.lq.begin(), c.lq.end());
    p.q_row_stride = p.o_row_stride = int64_t{c.num_heads} * c.head_dim;
    p.q_head_stride = p.o_head_stride = c.head_dim;
    p.kv_row_stride = int64_t{c.num_kv_heads} * c.head_dim;
    p.kv_head_stride = c.head_dim;
    p.softmax_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    p.causal = c.causal;
    p.window_left = c.window;
    return p;
}

// Query rows compared against the reference: all, or a spread sample including both ends.
std::vector<int> rows_to_check(int lq, int limit, std::mt19937& rng) {
    std::vector<int> rows(lq);
    std::iota(rows.begin(), rows.end(), 0);
    if (lq <= limit) return rows;
    std::shuffle(rows.begin() + 1, rows.end() - 1, rng);
    rows.resize(limit);
    rows.back() = lq - 1;
    return rows;
}

// Each checked query row is judged on its own: max |o - ref| over its dims relative to its own
// max |ref| (a row that sees thousands of keys averages them into small outputs; a bound pooled
// with rows that see a few keys would hide its mistakes). P and V enter the PV product in the
// dtype (8 or 11 significant bits) and the output is rounded to it. Rows that see at least
// 4 x kDroppedKeys keys also check the bound is tight enough to notice their last kDroppedKeys
// visible keys missing from the reference.
constexpr int kDroppedKeys = 16;

void check_against_reference(const Case& c, const Inputs& in, const BlockMask& bm,
                             const std::vector<uint16_t>& o, const std::vector<float>& lse,
                             std::mt19937& rng) {
    const int hd = c.head_dim, H = c.num_heads, Hk = c.num_kv_heads;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    const double tol = c.dtype == Dtype::kBf16 ? 8e-3 : 2e-3;
    ErrorStats lse_err;
    double worst_rel = 0;
    int failures = 0, loose = 0;
    std::vector<double> ref, ref_dropped;
    for (size_t b = 0; b < c.lq.size(); ++b) {
        const int lq = c.lq[b], lk = c.lk[b], diag = lk - lq;
        for (int h = 0; h < H; ++h) {
            const int kvh = h / (H / Hk);
            for (int i : rows_to_check(lq, c.rows_checked, rng)) {
                const size_t qrow = (in.cu_q[b] + i) * size_t(H) + h;
                auto kv_at = [&](const std::vector<double>& x) {
                    return [&, kvh](int j, int d) {
                        return x[((in.cu_k[b] + j) * size_t(Hk) + kvh) * hd + d];
                    };
                };
                auto visible = [&](int j) {
                    if (!bm.keeps(b, h, i, j)) return false;
                    if (c.causal && j > i + diag) return false;
                    return c.window < 0 || j >= i + diag - c.window;
                };
                double ref_lse, unused_lse;
                reference_row(&in.qd[qrow * hd], lk, hd, scale, kv_at(in.kd), kv_at(in.vd), visible,
                              ref, ref_lse);
                ErrorStats row, row_dropped;
                for (int d = 0; d < hd; ++d) row.add(to_double(c.dtype, o[qrow * hd + d]), ref[d]);
                const double got = lse[qrow];
                if (std::isinf(ref_lse)) {
                    EXPECT_TRUE(std::isinf(got) && got < 0) << "row " << i << " lse " << got;
                    EXPECT_EQ(row.nonfinite, 0u) << "row " << i;
                    continue;
                }
                lse_err.add(got, ref_lse);
                EXPECT_EQ(row.nonfinite, 0u) << "unwritten or NaN outputs, row " << i;
                const double rel = row.max_abs / std::max(row.max_ref, 1e-30);
                worst_rel = std::max(worst_rel, rel);
                if (rel > tol && ++failures <= 5) {
                    ADD_FAILURE() << "sequence " << b << " head " << h << " row " << i
                                  << ": max rel error " << rel << " > " << tol;
                }
                // The last kDroppedKeys visible keys, left out of a second reference.
                std::vector<int> seen;
                for (int j = 0; j < lk; ++j) {
                    if (visible(j)) seen.push_back(j);
                }
                if (seen.size() < 4 * kDroppedKeys) continue;
                const int cut = seen[seen.size() - kDroppedKeys];
                reference_row(
                    &in.qd[qrow * hd], lk, hd, scale, kv_at(in.kd), kv_at(in.vd),
                    [&](int j) { return j < cut && visible(j); }, ref_dropped, unused_lse);
                for (int d = 0; d < hd; ++d) {
                    row_dropped.add(to_double(c.dtype, o[qrow * hd + d]), ref_dropped[d]);
                }
                loose += row_dropped.max_abs / std::max(row.max_ref, 1e-30) <= tol;
            }
        }
    }
    std::printf("prefill error: dtype %d head_dim %d: worst row max rel %.2e (tolerance %.0e)\n",
                static_cast<int>(c.dtype), hd, worst_rel, tol);
    EXPECT_EQ(failures, 0) << "rows over the tolerance";
    EXPECT_EQ(loose, 0) << "rows where the tolerance cannot see the last " << kDroppedKeys
                        << " visible keys go missing";
    EXPECT_EQ(lse_err.nonfinite, 0u);
    EXPECT_LE(lse_err.max_abs, 2e-3);
}

// Copies contiguous K/V into a paged cache with shuffled block ids (a block table that is not
// the identity catches indexing that ignores it).
struct PagedCopy {
    std::vector<uint16_t> k, v;
    std::vector<int32_t> table, seqlens;
    int table_stride = 0;
};

PagedCopy make_paged(const Case& c, const Inputs& in, std::mt19937& rng) {
    PagedCopy pc;
    const int bs = c.block_size;
    const size_t row = size_t(c.num_kv_heads) * c.head_dim;
    for (int lk : c.lk) pc.table_stride = std::max(pc.table_stride, (lk + bs - 1) / bs);
    const int nb = pc.table_stride * static_cast<int>(c.lk.size()) + 3;
    std::vector<int32_t> ids(nb);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    pc.k.assign(nb * bs * row, 0x7fff);  // NaN filler: a read of an unused slot shows up
    pc.v.assign(nb * bs * row, 0x7fff);
    pc.table.assign(c.lk.size() * pc.table_stride, -1);
    int next = 0;
    for (size_t b = 0; b < c.lk.size(); ++b) {
        pc.seqlens.push_back(c.lk[b]);
        for (int t = 0; t < c.lk[b]; ++t) {
            int32_t& slot = pc.table[b * pc.table_stride + t / bs];
            if (t % bs == 0) slot = ids[next++];
            const size_t dst = (size_t(slot) * bs + t % bs) * row, src = (in.cu_k[b] + t) * row;
            std::copy_n(in.k.begin() + src, row, pc.k.begin() + dst);
            std::copy_n(in.v.begin() + src, row, pc.v.begin() + dst);
        }
    }
    return pc;
}

// totals: pass total_q / total_k (the wgmma kernel then loads contiguous Q/K/V with TMA).
void run_case_on(const Case& c, PrefillKernel kernel, bool totals, uint32_t seed) {
    std::mt19937 rng(seed);
    const Inputs in = make_inputs(c, rng);
    DeviceBuffer<uint16_t> q(in.q), k(in.k), v(in.v), o(in.q.size());
    DeviceBuffer<int32_t> cu_q(in.cu_q), cu_k(in.cu_k);
    DeviceBuffer<float> lse(in.cu_q.back() * size_t(c.num_heads));
    PrefillParams p = base_params(c);
    p.kernel = kernel;
    p.q = q.get();
    p.k = k.get();
    p.v = v.get();
    p.o = o.get();
    p.lse = lse.get();
    const BlockMask bm = make_block_mask(c, rng);
    DeviceBuffer<uint8_t> mask_dev(bm.bits);
    if (!bm.bits.empty()) {
        p.block_mask = mask_dev.get();
        p.block_mask_row_stride = bm.kblocks;
        p.block_mask_head_stride = bm.shared ? 0 : int64_t{bm.qblocks} * bm.kblocks;
        p.block_mask_batch_stride = p.block_mask_head_stride * c.num_heads;
    }
    p.cu_seqlens_q = cu_q.get();
    p.cu_seqlens_k = cu_k.get();
    if (totals) {
        p.total_q = in.cu_q.back();
        p.total_k = in.cu_k.back();
    }
    o.poison();
    lse.poison();
    prefill_forward(p);
    ASSERT_CUDA(cudaDeviceSynchronize());
    const auto out = o.download();
    const auto lse_out = lse.download();
    check_against_reference(c, in, bm, out, lse_out, rng);
    if (c.block_size == 0) return;

    const PagedCopy pc = make_paged(c, in, rng);
    DeviceBuffer<uint16_t> kc(pc.k), vc(pc.v);
    DeviceBuffer<int32_t> table(pc.table), seqlens(pc.seqlens);
    p.paged = {kc.get(),
               vc.get(),
               table.get(),
               pc.table_stride,
               c.block_size,
               int64_t{c.block_size} * c.num_kv_heads * c.head_dim,
               int64_t{c.num_kv_heads} * c.head_dim,
               c.head_dim};
    p.seqlens_k = seqlens.get();
    o.poison();
    lse.poison();
    prefill_forward(p);
    ASSERT_CUDA(cudaDeviceSynchronize());
    // Same tiles in the same order, only the addresses differ: results must be bit-identical.
    EXPECT_TRUE(o.download() == out) << "paged output differs from contiguous";
    const auto lse_paged = lse.download();
    EXPECT_EQ(std::memcmp(lse_paged.data(), lse_out.data(), lse_out.size() * sizeof(float)), 0);
}

// Runs the case on every kernel: mma.sync and wgmma (where prefill_wgmma_available()) with
// cp.async loads and, given the totals, with TMA loads.
void run_case(const Case& c, uint32_t seed) {
    {
        SCOPED_TRACE("mma.sync kernel");
        run_case_on(c, PrefillKernel::kMmaSync, true, seed);
    }
    if (prefill_wgmma_available()) {
        {
            SCOPED_TRACE("wgmma kernel, cp.async loads");
            run_case_on(c, PrefillKernel::kWgmma, false, seed);
        }
        SCOPED_TRACE("wgmma kernel, TMA loads");
        run_case_on(c, PrefillKernel::kWgmma, true, seed);
    }
}

class PrefillSmall : public ::testing::TestWithParam<std::tuple<Dtype, int, bool>> {};

TEST_P(PrefillSmall, OddLengthsGqa4) {
    VELA_SKIP_WITHOUT_DEVICE();
    const auto [dtype, hd, causal] = GetParam();
    Case c{dtype, hd, 8, 2, {1, 17, 97}, {1, 17, 97}, causal};
    run_case(c, 1234 + hd + causal);
}

TEST_P(PrefillSmall, PrefixCachedBatch17Paged) {
    VELA_SKIP_WITHOUT_DEVICE();
    const auto [dtype, hd, causal] = GetParam();
    std::mt19937 rng(99 + hd);
    Case c{dtype, hd, 4, 4, {}, {}, causal, -1, 16};
    for (int b = 0; b < 17; ++b) {  // queries are the last lq of lk tokens
        const int lq = 1 + static_cast<int>(rng() % 150);
        c.lq.push_back(lq);
        c.lk.push_back(lq + static_cast<int>(rng() % 90));
    }
    run_case(c, 4321 + hd + causal);
}

// Random 64 x 64 tile mask (half kept) on top of causal/non-causal, paged and contiguous.
TEST_P(PrefillSmall, BlockSparseHalfDensity) {
    VELA_SKIP_WITHOUT_DEVICE();
    const auto [dtype, hd, causal] = GetParam();
    Case c{dtype, hd, 4, 2, {300, 97, 1}, {300, 130, 1}, causal, -1, 16};
    c.mask_density = 0.5;
    run_case(c, 2024 + hd + causal);
}

INSTANTIATE_TEST_SUITE_P(All, PrefillSmall,
                         ::testing::Combine(::testing::Values(Dtype::kBf16, Dtype::kF16),
                                            ::testing::Values(64, 128, 256), ::testing::Bool()));

TEST(Prefill, Long4097CausalGqa8Bf16) {
    VELA_SKIP_WITHOUT_DEVICE();
    Case c{Dtype::kBf16, 128, 8, 1, {4097}, {4097}, true};
    c.rows_checked = 48;
    run_case(c, 7);
}

TEST(Prefill, Long1000NonCausalMhaF16) {
    VELA_SKIP_WITHOUT_DEVICE();
    Case c{Dtype::kF16, 64, 3, 3, {1000, 17}, {1000, 17}, false};
    c.rows_checked = 64;
    run_case(c, 8);
}

TEST(Prefill, BlockSparseSharedMaskLong) {
    VELA_SKIP_WITHOUT_DEVICE();
    Case c{Dtype::kBf16, 128, 4, 1, {2000, 1100}, {2000, 1100}, false};
    c.mask_density = 0.15;
    c.shared_mask = true;
    c.rows_checked = 96;
    run_case(c, 21);
}

TEST(Prefill, PagedBlockSize1Gqa8) {
    VELA_SKIP_WITHOUT_DEVICE();
    Case c{Dtype::kBf16, 64, 8, 1, {17, 1, 97}, {40, 1, 97}, true, -1, 1};
    run_case(c, 9);
}

// 8-bit paged K/V (KvFormat kInt8 / kFp8E4M3): random codes with a random scale per row, on
// shuffled blocks whose unused slots have NaN scales, the scales laid out as the rows. Each
// value is widened to float, scaled and rounded to the dtype, so the result must be
// bit-identical to the mma.sync kernel run on a contiguous copy of those rounded values (which
// the float64 reference checks). Run with kAuto: quantised paged K/V must route to mma.sync.
void run_8bit_paged(const Case& c, KvFormat f, uint32_t seed) {
    std::mt19937 rng(seed);
    Inputs in = make_inputs(c, rng);
    const int hd = c.head_dim, Hk = c.num_kv_heads, bs = c.block_size;
    const size_t row = size_t(Hk) * hd, total_k = in.cu_k.back();
    std::uniform_real_distribution<float> sd(0.5f, 1.5f);
    const float unit = f == KvFormat::kInt8 ? 1.f / 64 : 1.f / 128;
    std::vector<uint8_t> codes[2];
    std::vector<float> scales[2];
    for (int side = 0; side < 2; ++side) {
        std::vector<uint16_t>& x16 = side == 0 ? in.k : in.v;
        std::vector<double>& xd = side == 0 ? in.kd : in.vd;
        codes[side].resize(total_k * row);
        scales[side].resize(total_k * Hk);
        for (float& s : scales[side]) s = sd(rng) * unit;
        for (size_t i = 0; i < codes[side].size(); ++i) {
            uint8_t b;
            do b = static_cast<uint8_t>(rng());
            while (f == KvFormat::kInt8 ? b == 0x80 : (b & 0x7f) == 0x7f);
            codes[side][i] = b;
            const double stored =
                f == KvFormat::kInt8 ? static_cast<int8_t>(b) : fp8_e4m3_to_double(b);
            const float value = static_cast<float>(stored) * scales[side][i / hd];
            x16[i] = c.dtype == Dtype::kF16 ? fp32_to_fp16(value) : fp32_to_bf16(value);
            xd[i] = to_double(c.dtype, x16[i]);
        }
    }
    DeviceBuffer<uint16_t> q(in.q), k(in.k), v(in.v), o(in.q.size());
    DeviceBuffer<int32_t> cu_q(in.cu_q), cu_k(in.cu_k);
    DeviceBuffer<float> lse(in.cu_q.back() * size_t(c.num_heads));
    PrefillParams p = base_params(c);
    p.kernel = PrefillKernel::kMmaSync;
    p.q = q.get();
    p.k = k.get();
    p.v = v.get();
    p.o = o.get();
    p.lse = lse.get();
    p.cu_seqlens_q = cu_q.get();
    p.cu_seqlens_k = cu_k.get();
    o.poison();
    prefill_forward(p);
    ASSERT_CUDA(cudaDeviceSynchronize());
    const auto out = o.download();
    check_against_reference(c, in, BlockMask{}, out, lse.download(), rng);

    // The same rows on shuffled blocks: codes, and scales at (element offset) / head_dim.
    int stride = 0;
    for (int lk : c.lk) stride = std::max(stride, (lk + bs - 1) / bs);
    const int nb = stride * static_cast<int>(c.lk.size()) + 3;
    std::vector<int32_t> ids(nb), table(c.lk.size() * stride, 0), seqlens(c.lk);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<uint8_t> paged[2] = {std::vector<uint8_t>(nb * bs * row),
                                     std::vector<uint8_t>(nb * bs * row)};
    std::vector<float> paged_scales[2] = {std::vector<float>(nb * bs * Hk, NAN),
                                          std::vector<float>(nb * bs * Hk, NAN)};
    int next = 0;
    for (size_t b = 0; b < c.lk.size(); ++b) {
        for (int t = 0; t < c.lk[b]; ++t) {
            int32_t& blk = table[b * stride + t / bs];
            if (t % bs == 0) blk = ids[next++];
            const size_t dst = (size_t(blk) * bs + t % bs) * row, src = (in.cu_k[b] + t) * row;
            for (int side = 0; side < 2; ++side) {
                std::copy_n(codes[side].begin() + src, row, paged[side].begin() + dst);
                std::copy_n(scales[side].begin() + src / hd, Hk,
                            paged_scales[side].begin() + dst / hd);
            }
        }
    }
    DeviceBuffer<uint8_t> kc(paged[0]), vc(paged[1]);
    DeviceBuffer<float> ksc(paged_scales[0]), vsc(paged_scales[1]);
    DeviceBuffer<int32_t> table_dev(table), seqlens_dev(seqlens);
    p.kernel = PrefillKernel::kAuto;
    p.kv_format = f;
    p.paged = {kc.get(),     vc.get(), table_dev.get(), stride, bs, int64_t{bs} * int64_t(row),
               int64_t(row), hd};
    p.paged.k_scale = ksc.get();
    p.paged.v_scale = vsc.get();
    p.paged.scale_block_stride = int64_t{bs} * Hk;
    p.seqlens_k = seqlens_dev.get();
    o.poison();
    prefill_forward(p);
    ASSERT_CUDA(cudaDeviceSynchronize());
    EXPECT_TRUE(o.download() == out) << "8-bit paged output differs from its contiguous copy";
}

TEST(Prefill, Paged8BitMatchesContiguousCopy) {
    VELA_SKIP_WITHOUT_DEVICE();
    for (KvFormat f : {KvFormat::kInt8, KvFormat::kFp8E4M3}) {
        for (Dtype dtype : {Dtype::kBf16, Dtype::kF16}) {
            for (int hd : {64, 128}) {
                SCOPED_TRACE(::testing::Message() << "format " << static_cast<int>(f) << " dtype "
                                                  << static_cast<int>(dtype) << " hd " << hd);
                // Prefix-cached chunks (lq < lk), one decode row, a block size of 7.
                run_8bit_paged({dtype, hd, 8, 2, {33, 1, 70}, {100, 17, 70}, true, -1, 16, 1 << 30},
                               f, 77 + hd);
                run_8bit_paged({dtype, hd, 4, 4, {5, 64}, {40, 200}, true, 31, 7, 1 << 30}, f,
                               78 + hd);
            }
        }
    }
}

// A paged 8-bit cache on the wgmma kernel, or without scales, is an InvalidArgument.
TEST(Prefill, Paged8BitNeedsScalesAndMmaSync) {
    PrefillParams p;
    p.dtype = Dtype::kBf16;
    p.head_dim = 128;
    p.num_heads = p.num_kv_heads = p.batch = p.max_seqlen_q = 1;
    int32_t dummy = 0;
    p.q = p.o = &dummy;
    p.cu_seqlens_q = p.seqlens_k = &dummy;
    p.paged = {&dummy, &dummy, &dummy, 1, 16, 16 * 128, 128, 128};
    p.softmax_scale = 1.f;
    p.kv_format = KvFormat::kInt8;
    p.kernel = PrefillKernel::kMmaSync;
    EXPECT_THROW(prefill_forward(p), InvalidArgument);  // no scales
    if (prefill_wgmma_available()) {
        p.paged.k_scale = p.paged.v_scale = reinterpret_cast<const float*>(&dummy);
        p.paged.scale_block_stride = 16;
        p.kernel = PrefillKernel::kWgmma;
        EXPECT_THROW(prefill_forward(p), InvalidArgument);
    }
}

TEST(Prefill, SlidingWindowCausal) {
    VELA_SKIP_WITHOUT_DEVICE();
    Case c{Dtype::kF16, 128, 4, 2, {97, 1000}, {97, 1000}, true, 31, 16};
    c.rows_checked = 64;
    run_case(c, 10);
}

TEST(Prefill, Long1000CausalGqa4Hd256) {
    VELA_SKIP_WITHOUT_DEVICE();
    Case c{Dtype::kBf16, 256, 8, 2, {1000, 300}, {1000, 333}, true, -1, 16};
    c.rows_checked = 64;
    run_case(c, 11);
}

TEST(Prefill, WgmmaUnavailableIsAnError) {
    if (prefill_wgmma_available()) GTEST_SKIP() << "the wgmma kernel is available here";
    PrefillParams p;
    p.head_dim = 256;
    p.num_heads = p.num_kv_heads = 1;
    p.kernel = PrefillKernel::kWgmma;
    const std::string what = invalid_argument_of([&] { prefill_forward(p); });
    EXPECT_NE(what.find("wgmma"), std::string::npos) << what;
}

TEST(Prefill, RejectsUnsupportedHeadDim) {
    PrefillParams p;
    p.head_dim = 96;
    p.num_heads = p.num_kv_heads = 1;
    EXPECT_THROW(prefill_forward(p), InvalidArgument);
    // The message names the value and the instances that exist (cuda/launch.h).
    p.kernel = PrefillKernel::kMmaSync;
    const std::string what = invalid_argument_of([&] { prefill_forward(p); });
    EXPECT_NE(what.find("head_dim 96"), std::string::npos) << what;
    EXPECT_NE(what.find("64, 128"), std::string::npos) << what;
}

TEST(Prefill, RejectsUnknownDtype) {
    PrefillParams p;
    p.head_dim = 128;
    p.num_heads = p.num_kv_heads = 1;
    p.dtype = static_cast<Dtype>(7);
    EXPECT_NE(invalid_argument_of([&] { prefill_forward(p); }).find("dtype 7"), std::string::npos);
}

// Negative row counts are rejected before anything runs (the pointers are never read).
TEST(Prefill, RejectsNegativeTotals) {
    PrefillParams p;
    p.head_dim = 128;
    p.num_heads = p.num_kv_heads = 1;
    p.batch = p.max_seqlen_q = 1;
    int32_t dummy = 0;
    p.q = p.k = p.v = p.o = &dummy;
    p.cu_seqlens_q = p.cu_seqlens_k = &dummy;
    p.softmax_scale = 1.f;
    p.total_q = -1;
    EXPECT_THROW(prefill_forward(p), InvalidArgument);
    p.total_q = 0;
    p.total_k = -5;
    EXPECT_THROW(prefill_forward(p), InvalidArgument);
}

}  // namespace
}  // namespace vela::cuda::test
