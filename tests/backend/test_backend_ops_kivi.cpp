// KIVI's 4-bit KV (q4) on the GPU against the CPU's, step by step: the same rows written through
// both backends hold the same values (read back: open blocks' keys in fp16, closed blocks'
// dequantised with the same per-channel pairs, values per group; exact), and attention over them
// agrees within the GPU's 16-bit rounding. The CPU's q4 is tested against float64 on its own
// (tests/attention/test_kivi_attention.cpp, test_backend_ops); this test pins the GPU to it over
// prompt chunks that close blocks mid-step, block boundaries, decode steps, and eviction's
// compaction (whole rows moved down) followed by more decode.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kv_conformance.h"

#ifdef VELA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace vela::test {
namespace {

#ifdef VELA_HAS_CUDA
struct KiviCase {
    int64_t head_dim, block_size, group;
};

// One backend's side of the comparison: its storage and the outputs of each step.
struct Side {
    Backend& backend;
    std::unique_ptr<KvStorage> kv;
};

void run_case(const KiviCase& c, std::mt19937_64& rng) {
    ThreadPool pool(2);
    auto cpu = make_cpu_backend(pool, cpu::detect_isa());
    CudaBackend gpu;
    const int64_t n_kv = 2, ratio = 3, n_heads = n_kv * ratio, hd = c.head_dim;
    // Rows each sequence adds per step (0: not in that step): chunks across block boundaries,
    // a chunk ending on one, a sequence that starts late, then decode steps.
    const std::vector<std::vector<int64_t>> steps = {
        {20, 16, 3, 0}, {11, 16, 1, 40}, {1, 1, 1, 0}, {1, 1, 1, 1}};
    constexpr int kDecodeSteps = 36, kAfterCompaction = 20;
    std::vector<int64_t> final_len(4, 0);
    for (const auto& st : steps)
        for (size_t s = 0; s < st.size(); ++s) final_len[s] += st[s];
    for (size_t s = 0; s < final_len.size(); ++s) final_len[s] += kDecodeSteps + kAfterCompaction;
    std::vector<SeqShape> shapes;
    for (int64_t len : final_len) shapes.push_back({len, len});
    const KvLayout l{2, n_kv, hd, c.block_size, blocks_needed(shapes, c.block_size) + 3};
    const KvFormats f{KvFormat::Q4, KvFormat::Q4, c.group};
    const PagedSeqs p = place(shapes, l, rng);
    Side sides[2] = {{*cpu, cpu->make_kv_storage(l, f)}, {gpu, gpu.make_kv_storage(l, f)}};
    std::vector<int64_t> len(4, 0);
    const std::string what = fmt::format("head_dim {} block_size {} group {}", hd, c.block_size,
                                         c.group);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    double worst = 0.0;
    int64_t mismatches = 0;
    // Every row written so far reads back the same from both.
    auto compare_rows = [&](const std::string& when) {
        for (size_t s = 0; s < len.size(); ++s) {
            for (int64_t pos = 0; pos < len[s]; ++pos) {
                for (int64_t h = 0; h < n_kv; ++h) {
                    for (bool value : {false, true}) {
                        std::vector<float> a(static_cast<size_t>(hd)), g(a.size());
                        read_host_kv(*sides[0].kv, 1, p.slot(s, pos), h, value, a.data());
                        read_cuda_kv(*sides[1].kv, 1, p.slot(s, pos), h, value, g.data());
                        if (a != g && mismatches++ == 0) {
                            size_t d = 0;
                            while (a[d] == g[d]) ++d;
                            ADD_FAILURE() << what << ", " << when << ": sequence " << s
                                          << " position " << pos << " head " << h
                                          << (value ? " V" : " K") << " dim " << d << ": cpu "
                                          << a[d] << " gpu " << g[d];
                        }
                    }
                }
            }
        }
    };
    // One step: each sequence adds adds[s] rows (0: not in the step); attention agrees within
    // the GPU's rounding of q, of the widened K and V and of the probabilities to fp16, relative
    // to the largest |V| (standard normal: ~4).
    auto run_step = [&](const std::vector<int64_t>& adds, const std::string& when) {
        ForwardBatch b;
        b.clear();
        for (size_t s = 0; s < adds.size(); ++s) {
            if (adds[s] == 0) continue;
            std::vector<int64_t> slots;
            for (int64_t pos = len[s]; pos < len[s] + adds[s]; ++pos) slots.push_back(p.slot(s, pos));
            b.add_sequence(std::vector<int32_t>(slots.size(), 0), len[s], slots, p.blocks[s],
                           len[s] + adds[s], true);
            len[s] += adds[s];
        }
        b.finish();
        const int64_t rows = b.n_rows();
        const std::vector<float> k = normal_floats(static_cast<size_t>(rows * n_kv * hd), rng);
        const std::vector<float> v = normal_floats(k.size(), rng);
        const std::vector<float> q = normal_floats(static_cast<size_t>(rows * n_heads * hd), rng);
        std::vector<float> out[2];
        for (int i = 0; i < 2; ++i) {
            Backend& be = sides[i].backend;
            DeviceTensor dk(be, rows, n_kv * hd), dv(be, rows, n_kv * hd);
            DeviceTensor dq(be, rows, n_heads * hd), dout(be, rows, n_heads * hd);
            dk.upload(k);
            dv.upload(v);
            dq.upload(q);
            be.plan(b);
            be.write_kv(*sides[i].kv, 1, dk.view(), dv.view());
            be.attention(*sides[i].kv, 1, dq.view(), dout.view(), n_heads, scale, 0);
            out[i] = dout.download();
        }
        for (size_t j = 0; j < out[0].size(); ++j)
            worst = std::max(worst, std::fabs(static_cast<double>(out[0][j]) - out[1][j]) / 4.0);
        compare_rows(when);
    };
    for (size_t step = 0; step < steps.size() + kDecodeSteps; ++step) {
        run_step(step < steps.size() ? steps[step] : std::vector<int64_t>{1, 1, 1, 1},
                 fmt::format("step {}", step));
    }
    // Window + sinks eviction compacting two sequences (whole rows move down, as
    // BlockManager::compact emits them), then decode on: moved keys read as they were read
    // before (codes of closed blocks, residual rows of open ones), full destinations quantised
    // again, the new last block open.
    for (size_t s : {size_t{0}, size_t{2}}) {
        const int64_t sinks = 4, keep = std::min<int64_t>(21, len[s] - sinks);
        std::vector<BlockOp> ops;
        int64_t to = sinks;
        for (int64_t pos = len[s] - keep; pos < len[s]; ++pos, ++to) {
            ops.push_back({BlockOp::Kind::MoveRow, static_cast<int32_t>(p.slot(s, pos)),
                           static_cast<int32_t>(p.slot(s, to)), -1, -1});
        }
        for (Side& side : sides) side.kv->apply(ops);
        len[s] = to;
    }
    compare_rows("after compaction");
    for (int step = 0; step < kAfterCompaction; ++step)
        run_step({1, 1, 1, 1}, fmt::format("decode {} after compaction", step));
    std::printf("[backend_ops] cuda q4 vs cpu q4, %s: attention max err %.2e, %lld rows differ\n",
                what.c_str(), worst, static_cast<long long>(mismatches));
    EXPECT_EQ(mismatches, 0) << what;
    EXPECT_LE(worst, 4e-3) << what;
}
#endif

TEST(CudaKivi, MatchesTheCpuStorageAndAttention) {
#ifdef VELA_HAS_CUDA
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    std::mt19937_64 rng(run_seed() ^ 0x4b495649u);
    for (const KiviCase c : {KiviCase{64, 16, 32}, KiviCase{128, 16, 32}, KiviCase{128, 32, 64},
                             KiviCase{64, 32, 128}, KiviCase{256, 16, 32}}) {
        run_case(c, rng);
    }
#else
    GTEST_SKIP() << "built without CUDA";
#endif
}

// The GPU refuses q4 where its kernels lack it, by name: blocks of other than multiples of 16,
// head sizes other than multiples of 32, and attention scores (h2o, tova).
TEST(CudaKivi, RefusesWhatItCannotStore) {
#ifdef VELA_HAS_CUDA
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    CudaBackend gpu;
    const KvFormats f = KvFormat::Q4;
    EXPECT_THROW(gpu.make_kv_storage(KvLayout{1, 2, 64, 8, 4}, f), InvalidArgument);
    EXPECT_THROW(gpu.make_kv_storage(KvLayout{1, 2, 40, 16, 4}, f), InvalidArgument);
    KvLayout scored{1, 2, 64, 16, 4};
    scored.attention_scores = true;
    EXPECT_THROW(gpu.make_kv_storage(scored, f), InvalidArgument);
    EXPECT_NO_THROW(gpu.make_kv_storage(KvLayout{1, 2, 64, 16, 4}, f));
#else
    GTEST_SKIP() << "built without CUDA";
#endif
}

}  // namespace
}  // namespace vela::test
