// The CUDA weight decoders (src/backend/cuda/quant_formats.cuh), compiled as host code, against
// the CPU definition vela::cpu::dequantize_row: bit-identical values for every type, on random
// bytes and on blocks whose fp16 scales are zeros, infinities, NaNs and subnormals, with blocks
// at both 2-byte alignments. Also checks the chunk layout the matvec relies on: the chunks of a
// block cover each element once, and 8 consecutive lanes' float4 reads of the staged
// activations hit 8 distinct bank groups. Needs no GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cuda/quant_formats.cuh"
#include "core/dtype.h"

namespace vela::cuda_backend::quant {
namespace {

struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
};

// A 64-byte aligned buffer, as the GPU kernels assume for w.
std::unique_ptr<uint8_t, FreeDeleter> aligned_bytes(size_t n) {
    return std::unique_ptr<uint8_t, FreeDeleter>(
        static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64)));
}

// Byte offsets of the fp16 fields of one block, to plant special values in.
std::vector<int> half_fields(DType t, int block_bytes) {
    switch (t) {
        case DType::Q4_1:
        case DType::Q5_1:
        case DType::Q4_K:
        case DType::Q5_K:
            return {0, 2};
        case DType::Q4_0:
        case DType::Q5_0:
        case DType::Q8_0:
            return {0};
        case DType::Q2_K:
            return {80, 82};
        case DType::Q3_K:
            return {108};
        case DType::Q6_K:
            return {208};
        case DType::F16: {
            std::vector<int> all;
            for (int i = 0; i < block_bytes; i += 2) all.push_back(i);
            return all;
        }
        default:
            return {};
    }
}

bool same_value(float a, float b) {
    if (std::isnan(a) && std::isnan(b)) return true;  // NaN payloads may differ (GPU canonical NaN)
    uint32_t x, y;
    std::memcpy(&x, &a, 4);
    std::memcpy(&y, &b, 4);
    return x == y;
}

// Decodes `rows` rows of k elements chunk by chunk, as the kernels do, and compares each row with
// the CPU's; returns the number of mismatching values (and reports the first few).
template <class F>
int64_t compare_rows(DType t, const uint8_t* w, int rows, int64_t k) {
    const size_t rb = row_bytes(t, k);
    std::vector<float> ref(k), got(k);
    std::vector<int> hits(k);
    int64_t bad = 0;
    for (int row = 0; row < rows; ++row) {
        const uint8_t* src = w + row * rb;
        cpu::dequantize_row(t, src, ref.data(), k);
        std::fill(hits.begin(), hits.end(), 0);
        const int64_t nblocks = k / F::kBlockElems;
        for (int64_t b = 0; b < nblocks; ++b) {
            for (int c = 0; c < F::kChunks; ++c) {
                float v[F::kRuns * F::kRunLen];
                F::decode(F::load(src + b * F::kBlockBytes, c), c, v);
                for (int r = 0; r < F::kRuns; ++r) {
                    for (int i = 0; i < F::kRunLen; ++i) {
                        const int64_t e = b * F::kBlockElems + F::run_start(c, r) + i;
                        got[e] = v[r * F::kRunLen + i];
                        ++hits[e];
                    }
                }
            }
        }
        for (int64_t e = 0; e < k; ++e) {
            EXPECT_EQ(hits[e], 1) << dtype_name(t) << " element " << e << " decoded " << hits[e]
                                  << " times";
            if (!same_value(got[e], ref[e])) {
                if (bad < 5)
                    ADD_FAILURE() << dtype_name(t) << " row " << row << " element " << e << ": got "
                                  << got[e] << ", CPU " << ref[e];
                ++bad;
            }
        }
    }
    return bad;
}

// Random rows; with `specials`, half the fp16 fields of each block take one of the awkward values.
template <class F>
void check_type(DType t, int64_t k, bool specials, uint32_t seed) {
    constexpr int kRows = 64;
    const size_t rb = row_bytes(t, k);
    auto buf = aligned_bytes(rb * kRows);
    std::mt19937 rng(seed);
    for (size_t i = 0; i < rb * kRows; ++i) buf.get()[i] = static_cast<uint8_t>(rng());
    if (specials) {
        static const uint16_t kHalves[] = {0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x0001,
                                           0x83FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0x1234, 0x9234};
        const int block_bytes = static_cast<int>(dtype_info(t).type_size);
        for (size_t blk = 0; blk < rb * kRows / block_bytes; ++blk) {
            for (int off : half_fields(t, block_bytes)) {
                if (rng() % 2) continue;
                const uint16_t h = kHalves[rng() % (sizeof kHalves / sizeof kHalves[0])];
                std::memcpy(buf.get() + blk * block_bytes + off, &h, 2);
            }
        }
    }
    EXPECT_EQ(compare_rows<F>(t, buf.get(), kRows, k), 0) << dtype_name(t) << " k=" << k;
}

// The matvec's lanes l..l+7 (one shared-memory phase of a float4 read) take consecutive chunks;
// each of their float4 reads must touch 8 distinct 16-byte bank groups.
template <class F>
void check_banks(const char* name) {
    if constexpr (F::kRunLen % 4 == 0) {
        for (int c0 = 0; c0 < 4 * F::kChunks; c0 += 8) {
            for (int r = 0; r < F::kRuns; ++r) {
                for (int i = 0; i < F::kRunLen; i += 4) {
                    unsigned groups = 0;
                    for (int l = 0; l < 8; ++l) {
                        const int cc = c0 + l, ch = cc % F::kChunks;
                        const int e = cc / F::kChunks * F::kBlockElems + F::run_start(ch, r);
                        const int slot = (staged_index<F>(e) + i) / 4;
                        EXPECT_EQ(staged_index<F>(e + i), staged_index<F>(e) + i)
                            << name << ": run crosses a pad";
                        groups |= 1u << (slot % 8);
                    }
                    EXPECT_EQ(groups, 0xFFu)
                        << name << ": bank conflict at chunk " << c0 << " run " << r;
                }
            }
        }
    }
}

template <class F>
void check_all(DType t, std::initializer_list<int64_t> ks, const char* name) {
    uint32_t seed = 1;
    for (int64_t k : ks) {
        check_type<F>(t, k, false, seed++);
        check_type<F>(t, k, true, seed++);
    }
    check_banks<F>(name);
}

TEST(CudaQuantFormats, PlainTypes) {
    check_all<FmtF32<4>>(DType::F32, {4, 64, 1028}, "F32x4");
    check_all<FmtF32<1>>(DType::F32, {1, 37}, "F32x1");
    check_all<FmtHalf<8, false>>(DType::F16, {8, 1032}, "F16x8");
    check_all<FmtHalf<1, false>>(DType::F16, {3, 37}, "F16x1");
    check_all<FmtHalf<8, true>>(DType::BF16, {8, 1032}, "BF16x8");
    check_all<FmtHalf<1, true>>(DType::BF16, {3, 37}, "BF16x1");
}

TEST(CudaQuantFormats, LegacyTypes) {
    // Odd block counts put blocks of 2-byte aligned types (and rows) at both alignments.
    check_all<FmtQ4_0>(DType::Q4_0, {32, 96, 4096}, "Q4_0");
    check_all<FmtQ4_1>(DType::Q4_1, {32, 96, 4096}, "Q4_1");
    check_all<FmtQ5_0>(DType::Q5_0, {32, 96, 4096}, "Q5_0");
    check_all<FmtQ5_1>(DType::Q5_1, {32, 96, 4096}, "Q5_1");
    check_all<FmtQ8_0>(DType::Q8_0, {32, 96, 4096}, "Q8_0");
}

TEST(CudaQuantFormats, KQuants) {
    check_all<FmtQ2K>(DType::Q2_K, {256, 768, 4096}, "Q2_K");
    check_all<FmtQ3K>(DType::Q3_K, {256, 768, 4096}, "Q3_K");
    check_all<FmtQ4K>(DType::Q4_K, {256, 768, 4096}, "Q4_K");
    check_all<FmtQ5K>(DType::Q5_K, {256, 768, 4096}, "Q5_K");
    check_all<FmtQ6K>(DType::Q6_K, {256, 768, 4096}, "Q6_K");
}

}  // namespace
}  // namespace vela::cuda_backend::quant
