// Paged split-K decode vs a float64 reference for every KV format, GQA groups 1/3/4/8, block
// sizes 1, 7, 16 and 32 and batches 1/3/6/17 (lengths 0, 1, 17, 97, 1000, 4097, random); the split
// count must not change the result beyond rounding; decode agrees with the prefill kernel run on a
// contiguous copy (paged == contiguous). Tolerance: max |err| <= 1e-2 x max(1, max |ref|) for all
// formats (the reference dequantises the same stored values, so quantisation error is not measured,
// only kernel arithmetic: fp32 accumulation and bf16/fp16 output rounding, which grows with |o|;
// fp8 values reach 3.5 here).
#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "cuda/fast_divmod.h"
#include "cuda_test_util.h"
#include "late_writer.h"

namespace vela::cuda::test {
namespace {

struct DecodeCase {
    KvFormat format;
    Dtype dtype;
    int head_dim, num_heads, num_kv_heads, block_size;
    std::vector<int> seqlens;
    // Within a block: [token][kv head][dim] (NHD, the default) or [kv head][token][dim] (HND).
    bool head_major = false;
    // Query rows per sequence (DecodeParams::cu_seqlens_q); empty: one row each, no cu_seqlens_q.
    std::vector<int> rows = {};

    int rows_of(size_t b) const { return rows.empty() ? 1 : rows[b]; }
    int total_rows() const {
        return rows.empty() ? static_cast<int>(seqlens.size())
                            : std::accumulate(rows.begin(), rows.end(), 0);
    }
};

int elem_bytes(KvFormat f) {
    return f == KvFormat::kInt8 || f == KvFormat::kFp8E4M3 ? 1 : 2;
}

// Random stored cache (raw bytes) plus the dequantised float64 value of every element.
struct Cache {
    std::vector<uint8_t> k, v;
    std::vector<float> k_scale, v_scale;
    std::vector<int32_t> table;
    int table_stride = 0, num_blocks = 0;
};

void fill_stored(KvFormat f, std::vector<uint8_t>& raw, size_t n, std::mt19937& rng) {
    raw.resize(n * elem_bytes(f));
    std::normal_distribution<float> dist(0.f, 1.f);
    for (size_t i = 0; i < n; ++i) {
        if (f == KvFormat::kF16 || f == KvFormat::kBf16) {
            const uint16_t h =
                f == KvFormat::kF16 ? fp32_to_fp16(dist(rng)) : fp32_to_bf16(dist(rng));
            std::memcpy(&raw[2 * i], &h, 2);
        } else if (f == KvFormat::kInt8) {
            raw[i] = static_cast<uint8_t>(static_cast<int>(rng() % 255) - 127);
        } else {
            uint8_t b;
            do b = static_cast<uint8_t>(rng());
            while ((b & 0x7f) == 0x7f);
            raw[i] = b;
        }
    }
}

double stored_value(KvFormat f, const std::vector<uint8_t>& raw, size_t i) {
    uint16_t h;
    switch (f) {
        case KvFormat::kF16:
            std::memcpy(&h, &raw[2 * i], 2);
            return fp16_to_fp32(h);
        case KvFormat::kBf16:
            std::memcpy(&h, &raw[2 * i], 2);
            return bf16_to_fp32(h);
        case KvFormat::kInt8:
            return static_cast<int8_t>(raw[i]);
        case KvFormat::kFp8E4M3:
            return fp8_e4m3_to_double(raw[i]);
        case KvFormat::kQ4:
            break;  // per-block pairs: tests/backend/test_backend_ops_kivi.cpp tests Q4
    }
    return NAN;
}

Cache make_cache(const DecodeCase& c, std::mt19937& rng) {
    Cache cache;
    const int bs = c.block_size;
    for (int len : c.seqlens)
        cache.table_stride = std::max(cache.table_stride, (len + bs - 1) / bs);
    cache.table_stride = std::max(cache.table_stride, 1);
    cache.num_blocks = cache.table_stride * static_cast<int>(c.seqlens.size()) + 2;
    const size_t n = size_t(cache.num_blocks) * bs * c.num_kv_heads * c.head_dim;
    fill_stored(c.format, cache.k, n, rng);
    fill_stored(c.format, cache.v, n, rng);
    // Scales map int8 (|x| <= 127) and fp8 (|x| <= 448) back to O(1) values, varied per row
    // (token, kv head), laid out as the rows: scale_index().
    std::uniform_real_distribution<float> sd(0.5f, 1.5f);
    const float unit = c.format == KvFormat::kInt8 ? 1.f / 64 : 1.f / 128;
    for (int i = 0; i < cache.num_blocks * bs * c.num_kv_heads; ++i) {
        cache.k_scale.push_back(sd(rng) * unit);
        cache.v_scale.push_back(sd(rng) * unit);
    }
    std::vector<int32_t> ids(cache.num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    cache.table.assign(c.seqlens.size() * cache.table_stride, -1);
    for (size_t i = 0; i < cache.table.size(); ++i) cache.table[i] = ids[i];
    // Entries past a sequence's last block are garbage a kernel may read but must never use:
    // a huge id would address far outside the caches (memcheck runs these tests).
    for (size_t b = 0; b < c.seqlens.size(); ++b)
        for (int i = (c.seqlens[b] + bs - 1) / bs; i < cache.table_stride; ++i)
            cache.table[b * cache.table_stride + i] = 0x3fffffff;
    return cache;
}

// Where each non-empty sequence's newest key lives (token-major blocks): its K/V row (all kv
// heads, `row` bytes into the caches) and its scales (`scales` floats into the scale arrays).
struct NewestKey {
    int64_t row, row_bytes;
    int64_t scales, scale_bytes;
};

// Index of the scale of element i of the caches (scales are laid out as the rows).
size_t scale_index(const DecodeCase& c, size_t i) {
    return i / static_cast<size_t>(c.head_dim);
}

std::vector<NewestKey> newest_keys(const DecodeCase& c, const Cache& cache) {
    std::vector<NewestKey> keys;
    if (c.head_major) {
        ADD_FAILURE() << "newest_keys: token-major blocks only";
        return keys;
    }
    const int bs = c.block_size, Hk = c.num_kv_heads;
    for (size_t b = 0; b < c.seqlens.size(); ++b) {
        const int t = c.seqlens[b] - 1;
        if (t < 0) continue;
        const int64_t blk = cache.table[b * cache.table_stride + t / bs];
        const int64_t row_bytes = int64_t{Hk} * c.head_dim * elem_bytes(c.format);
        keys.push_back({(blk * bs + t % bs) * row_bytes, row_bytes, (blk * bs + t % bs) * Hk,
                        int64_t{Hk} * 4});
    }
    return keys;
}

struct DecodeRun {
    std::vector<uint16_t> o;
    std::vector<float> lse;
};

// Runs decode_forward with num_splits (0: planned) on a fresh zero-filled workspace, or on
// `workspace` (zeroed once by the caller, reused: the kernel must leave its counters zero).
// metadata_ready: the block table and lengths are read before the programmatic-launch wait;
// kv_ready: so are the first tiles of keys older than each sequence's newest. With `stale`, the
// device caches start as `stale` and q as NaN, and a late writer launched just before the call
// (late_writer.h) puts q, each sequence's newest K/V row and its scales from `cache` in place:
// what the call may not read before its wait.
DecodeRun run_decode(const DecodeCase& c, const Cache& cache, const std::vector<uint16_t>& q,
                     int num_splits, void* workspace = nullptr, bool metadata_ready = false,
                     bool kv_ready = false, const Cache* stale = nullptr) {
    const int B = static_cast<int>(c.seqlens.size());
    const Cache& first = stale != nullptr ? *stale : cache;
    DeviceBuffer<uint16_t> dq(stale != nullptr ? std::vector<uint16_t>(q.size(), 0xffff) : q),
        o(q.size());
    DeviceBuffer<uint8_t> k(first.k), v(first.v);
    DeviceBuffer<float> ks(first.k_scale), vs(first.v_scale),
        lse(size_t(c.total_rows()) * c.num_heads);
    std::vector<int32_t> cu_rows{0};
    for (int n : c.rows) cu_rows.push_back(cu_rows.back() + n);
    DeviceBuffer<int32_t> table(cache.table), seqlens(c.seqlens),
        cu_q(c.rows.empty() ? std::vector<int32_t>{} : cu_rows);
    DecodeParams p;
    p.dtype = c.dtype;
    p.kv_format = c.format;
    p.head_dim = c.head_dim;
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.batch = B;
    p.max_seqlen_k = *std::max_element(c.seqlens.begin(), c.seqlens.end());
    p.q = dq.get();
    p.paged = {k.get(),
               v.get(),
               table.get(),
               cache.table_stride,
               c.block_size,
               int64_t{c.block_size} * c.num_kv_heads * c.head_dim,
               c.head_major ? int64_t{c.head_dim} : int64_t{c.num_kv_heads} * c.head_dim,
               c.head_major ? int64_t{c.block_size} * c.head_dim : int64_t{c.head_dim}};
    p.paged.k_scale = ks.get();
    p.paged.v_scale = vs.get();
    p.paged.scale_block_stride = p.paged.block_stride / c.head_dim;
    p.seqlens_k = seqlens.get();
    if (!c.rows.empty()) {
        p.cu_seqlens_q = cu_q.get();
        p.max_seqlen_q = *std::max_element(c.rows.begin(), c.rows.end());
    }
    p.o = o.get();
    p.lse = lse.get();
    p.softmax_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
    p.num_splits = num_splits;
    p.metadata_ready = metadata_ready;
    p.kv_ready = kv_ready;
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    decode_plan(p, sms);
    const size_t ws_bytes = decode_workspace_bytes(p);
    DeviceBuffer<uint8_t> own(workspace != nullptr ? 0 : ws_bytes);
    if (workspace == nullptr) {
        workspace = own.get();
        EXPECT_EQ(cudaMemset(workspace, 0, ws_bytes), cudaSuccess);
    }
    p.workspace = workspace;
    o.poison();
    lse.poison();
    // Sources of the late writes (empty unless `stale`).
    const bool late = stale != nullptr;
    DeviceBuffer<uint16_t> src_q(late ? q : std::vector<uint16_t>{});
    DeviceBuffer<uint8_t> src_k(late ? cache.k : std::vector<uint8_t>{}),
        src_v(late ? cache.v : std::vector<uint8_t>{});
    DeviceBuffer<float> src_ks(late ? cache.k_scale : std::vector<float>{}),
        src_vs(late ? cache.v_scale : std::vector<float>{});
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (late) {
        std::vector<ByteCopy> copies{{dq.get(), src_q.get(), int64_t(q.size()) * 2}};
        for (const NewestKey& n : newest_keys(c, cache)) {
            copies.push_back({k.get() + n.row, src_k.get() + n.row, n.row_bytes});
            copies.push_back({v.get() + n.row, src_v.get() + n.row, n.row_bytes});
            copies.push_back({ks.get() + n.scales, src_ks.get() + n.scales, n.scale_bytes});
            copies.push_back({vs.get() + n.scales, src_vs.get() + n.scales, n.scale_bytes});
        }
        EXPECT_EQ(launch_late_writer(copies, 200), cudaSuccess);
    }
    decode_forward(p);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return {o.download(), lse.download()};
}

// Bound on one sequence's error: max |o - ref| over its heads and dims, relative to max |ref|
// of that sequence (not of the whole batch: a long sequence's outputs are averages of many
// values and much smaller than a short one's, so a pooled bound would hide its mistakes). The
// reference reads the stored (already quantised) K/V, so what remains is the kernel's own
// arithmetic: P and V enter the tensor-core PV product in 16 bits (P in the dtype, 8 or 11
// significant bits), the output is rounded to the dtype. INT8 and FP8 dequantise to bf16.
double sequence_tolerance(const DecodeCase& c) {
    return c.dtype == Dtype::kF16 && c.format == KvFormat::kF16 ? 2e-3 : 8e-3;
}

// Keys a sequence's sensitivity check leaves out of the reference: the kernel's output must be
// further than the tolerance from a reference that forgot them (the mistake a pooled bound let
// through: a kernel dropping the last 16 keys of a 1000-key sequence).
constexpr int kDroppedKeys = 16;

void check_reference(const DecodeCase& c, const Cache& cache, const std::vector<double>& qd,
                     const DecodeRun& r) {
    const int hd = c.head_dim, Hk = c.num_kv_heads, bs = c.block_size;
    const double tol = sequence_tolerance(c);
    ErrorStats lse_err;
    std::vector<double> ref, ref_dropped;
    size_t first_row = 0;  // of sequence b
    for (size_t b = 0; b < c.seqlens.size(); first_row += c.rows_of(b), ++b) {
        // Row i of a sequence's n_rows sees its first seqlens - (n_rows - 1 - i) keys.
        for (int i = 0; i < c.rows_of(b); ++i) {
            const int n = c.seqlens[b] - (c.rows_of(b) - 1 - i);
            const bool sensitivity = n >= 4 * kDroppedKeys;
            ErrorStats err, err_dropped;
            for (int h = 0; h < c.num_heads; ++h) {
                const int kvh = h / (c.num_heads / Hk);
                auto at = [&](const std::vector<uint8_t>& raw, const std::vector<float>& scale) {
                    return [&, kvh](int t, int d) {
                        const int blk = cache.table[b * cache.table_stride + t / bs];
                        const size_t e = c.head_major
                                             ? ((size_t(blk) * Hk + kvh) * bs + t % bs) * hd + d
                                             : ((size_t(blk) * bs + t % bs) * Hk + kvh) * hd + d;
                        const bool quant =
                            c.format == KvFormat::kInt8 || c.format == KvFormat::kFp8E4M3;
                        return stored_value(c.format, raw, e) *
                               (quant ? scale[scale_index(c, e)] : 1.0);
                    };
                };
                double ref_lse, unused_lse;
                const size_t row = (first_row + i) * c.num_heads + h;
                const double scale = 1.0 / std::sqrt(double(hd));
                reference_row(
                    &qd[row * hd], n, hd, scale, at(cache.k, cache.k_scale),
                    at(cache.v, cache.v_scale), [](int) { return true; }, ref, ref_lse);
                if (sensitivity) {
                    reference_row(
                        &qd[row * hd], n, hd, scale, at(cache.k, cache.k_scale),
                        at(cache.v, cache.v_scale), [n](int t) { return t < n - kDroppedKeys; },
                        ref_dropped, unused_lse);
                }
                for (int d = 0; d < hd; ++d) {
                    const double got = to_double(c.dtype, r.o[row * hd + d]);
                    err.add(got, ref[d]);
                    if (sensitivity) err_dropped.add(got, ref_dropped[d]);
                }
                if (n == 0) {
                    EXPECT_TRUE(std::isinf(r.lse[row]) && r.lse[row] < 0);
                } else {
                    lse_err.add(r.lse[row], ref_lse);
                }
            }
            const double scale_ref = std::max(err.max_ref, 1e-30);
            const double rel = err.max_abs / scale_ref;
            // Printed for every run so the measured errors per format can be stated.
            std::printf(
                "decode error: format %d dtype %d head_dim %d seq %zu row %d len %d: max rel %.2e "
                "(tolerance %.0e)%s\n",
                static_cast<int>(c.format), static_cast<int>(c.dtype), hd, b, i, n, rel, tol,
                sensitivity ? "" : ", too short for the sensitivity check");
            EXPECT_EQ(err.nonfinite, 0u)
                << "unwritten or NaN outputs, sequence " << b << " row " << i;
            if (n > 0) {
                EXPECT_LE(rel, tol) << "sequence " << b << " row " << i << " of length " << n;
            }
            if (sensitivity) {
                EXPECT_GT(err_dropped.max_abs / scale_ref, tol)
                    << "the tolerance is too loose to see the last " << kDroppedKeys
                    << " keys of sequence " << b << " row " << i << " (length " << n
                    << ") go missing";
            }
        }
    }
    EXPECT_EQ(lse_err.nonfinite, 0u);
    EXPECT_LE(lse_err.max_abs, 2e-3);
}

// The kernel's block-table division by multiply and shift (host build of the same code): every
// divisor up to 4096 and a few large ones, against / and %, at small numerators, around
// multiples of the divisor and at the top of the int range. Runs without a GPU.
TEST(FastDivmod, MatchesIntegerDivision) {
    std::vector<int> divisors(4096);
    std::iota(divisors.begin(), divisors.end(), 1);
    for (int d : {65535, 65536, 65537, 1000003, 1 << 30, (1 << 30) + 1, 2147483647})
        divisors.push_back(d);
    std::mt19937 rng(5);
    for (int d : divisors) {
        const detail::FastDivmod f(d);
        std::vector<int64_t> ns = {0, 1, 2147483647, 2147483647 - int64_t{d}};
        for (int i = 0; i < 64; ++i) ns.push_back(rng() >> 1);
        for (int64_t k = 1; k < 5; ++k)
            for (int64_t n : {d * k - 1, d * k, d * k + 1}) ns.push_back(n);
        std::erase_if(ns, [](int64_t n) { return n > 2147483647; });
        for (int64_t n : ns) {
            ASSERT_EQ(f.div(static_cast<int>(n)), n / d) << n << " / " << d;
            ASSERT_EQ(f.mod(static_cast<int>(n)), n % d) << n << " % " << d;
        }
    }
}

class Decode : public ::testing::TestWithParam<std::tuple<KvFormat, int, int>> {};

TEST_P(Decode, MatchesReferenceAndSplitCountInvariant) {
    VELA_SKIP_WITHOUT_DEVICE();
    const auto [format, hd, bs] = GetParam();
    const Dtype dtype = format == KvFormat::kF16 ? Dtype::kF16 : Dtype::kBf16;
    // GQA group 3 (SmolLM2's 9/3), odd lengths, one empty sequence.
    DecodeCase c{format, dtype, hd, 9, 3, bs, {1, 17, 97, 0, 1000, 4097}};
    std::mt19937 rng(static_cast<uint32_t>(hd * 31 + bs * 7 + static_cast<int>(format)));
    const Cache cache = make_cache(c, rng);
    std::vector<double> qd;
    const auto q = random_16bit(dtype, c.seqlens.size() * c.num_heads * hd, rng, qd);
    const DecodeRun planned = run_decode(c, cache, q, 0);
    check_reference(c, cache, qd, planned);
    // Three splits merge different partial sums than the planned count: both must match the
    // reference. (This run also reads the block table and prefetches the first tiles before the
    // launch wait.)
    const DecodeRun few_splits = run_decode(c, cache, q, 3, nullptr, true);
    check_reference(c, cache, qd, few_splits);
    // Also copying the first tiles of keys older than the newest before the wait.
    const DecodeRun early = run_decode(c, cache, q, 0, nullptr, true, true);
    check_reference(c, cache, qd, early);
}

// DecodeParams::metadata_ready and kv_ready let the kernel read before its launch wait: the
// block table and lengths, and with kv_ready the first tiles of keys older than the newest. The
// kernel launched just before (late_writer.h) writes q, each sequence's newest K/V row and its
// scales about 200 us after the call has launched; until then they hold NaN (INT8 rows hold
// 127: a stale INT8 row shows only through its error, a stale scale through NaN). A read of any
// of them before the
// wait breaks the result. (Needs sm_90+ for the early launch; elsewhere the call just waits.)
TEST(DecodeGqa, ReadsWrittenKeyOnlyAfterLaunchWait) {
    VELA_SKIP_WITHOUT_DEVICE();
    for (KvFormat f : {KvFormat::kF16, KvFormat::kBf16, KvFormat::kInt8, KvFormat::kFp8E4M3}) {
        for (int bs : {1, 16}) {
            const Dtype dtype = f == KvFormat::kF16 ? Dtype::kF16 : Dtype::kBf16;
            DecodeCase c{f, dtype, 128, 8, 2, bs, {1, 2, 16, 17, 97, 1000, 4097, 0, 33}};
            std::mt19937 rng(static_cast<uint32_t>(401 + bs + 5 * static_cast<int>(f)));
            const Cache cache = make_cache(c, rng);
            Cache stale = cache;
            const bool quant = f == KvFormat::kInt8 || f == KvFormat::kFp8E4M3;
            for (const NewestKey& n : newest_keys(c, cache)) {
                std::memset(&stale.k[n.row], f == KvFormat::kInt8 ? 0x7f : 0xff, n.row_bytes);
                std::memset(&stale.v[n.row], f == KvFormat::kInt8 ? 0x7f : 0xff, n.row_bytes);
                if (quant) {
                    std::memset(&stale.k_scale[n.scales], 0xff, n.scale_bytes);
                    std::memset(&stale.v_scale[n.scales], 0xff, n.scale_bytes);
                }
            }
            std::vector<double> qd;
            const auto q = random_16bit(dtype, c.seqlens.size() * c.num_heads * 128, rng, qd);
            const std::pair<bool, bool> modes[] = {{false, false}, {true, false}, {true, true}};
            for (const auto& [metadata_ready, kv_ready] : modes) {
                SCOPED_TRACE(::testing::Message()
                             << "format " << static_cast<int>(f) << " block " << bs
                             << " metadata_ready " << metadata_ready << " kv_ready " << kv_ready);
                check_reference(
                    c, cache, qd,
                    run_decode(c, cache, q, 0, nullptr, metadata_ready, kv_ready, &stale));
            }
        }
    }
}

// Block sizes: 1 (every key its own block), 7 (not a power of two: tiles straddle blocks), 16 (a
// warp tile is one block) and 32 (a power of two > 16: a tile is half a block, at slot 0 or 16).
INSTANTIATE_TEST_SUITE_P(All, Decode,
                         ::testing::Combine(::testing::Values(KvFormat::kF16, KvFormat::kBf16,
                                                              KvFormat::kInt8, KvFormat::kFp8E4M3),
                                            ::testing::Values(64, 128),
                                            ::testing::Values(1, 7, 16, 32)));

// Every KV format x GQA group 1/4/8 x block size 1/16 at batch 1 (4097 keys: several warp tiles
// per split and a partial last tile; planned and 129 splits; 1000 keys: 8-bit KV then runs 3 CTAs
// per SM), batch 3 (1, 17 and 4097 keys) and
// batch 17 (random lengths 1..300, the first two forced to 1 and 17; planned and one split).
class DecodeGroups : public ::testing::TestWithParam<std::tuple<KvFormat, int, int>> {};

TEST_P(DecodeGroups, Batch1And3And17) {
    VELA_SKIP_WITHOUT_DEVICE();
    const auto [format, group, bs] = GetParam();
    std::mt19937 rng(static_cast<uint32_t>(1000 + group * 13 + bs * 3 + static_cast<int>(format)));
    std::vector<int> batch17(17);
    for (int& len : batch17) len = 1 + static_cast<int>(rng() % 300);
    batch17[0] = 1;
    batch17[1] = 17;
    for (const std::vector<int>& lens :
         {std::vector<int>{4097}, std::vector<int>{1000}, std::vector<int>{1, 17, 4097}, batch17}) {
        DecodeCase c{format, Dtype::kBf16, 128, 2 * group, 2, bs, lens};
        const Cache cache = make_cache(c, rng);
        std::vector<double> qd;
        const auto q = random_16bit(c.dtype, lens.size() * c.num_heads * 128, rng, qd);
        SCOPED_TRACE(::testing::Message() << "batch " << lens.size());
        check_reference(c, cache, qd, run_decode(c, cache, q, 0));
        // One split writes o directly (no partials); 129 splits of 32 keys make the last CTA
        // combine many partials (and leave most splits empty at batch 17).
        if (lens.size() == 17) check_reference(c, cache, qd, run_decode(c, cache, q, 1));
        if (lens.size() == 1) check_reference(c, cache, qd, run_decode(c, cache, q, 129));
    }
}

INSTANTIATE_TEST_SUITE_P(All, DecodeGroups,
                         ::testing::Combine(::testing::Values(KvFormat::kF16, KvFormat::kBf16,
                                                              KvFormat::kInt8, KvFormat::kFp8E4M3),
                                            ::testing::Values(1, 4, 8), ::testing::Values(1, 16)));

// Several query rows a sequence (verifying drafts, DecodeParams::cu_seqlens_q): every KV format,
// head dims 64 / 128 and groups 1 (16 rows a CTA), 3 (5 rows, one padding column), 6 (Qwen2.5's
// 12 / 2: 2 rows) and 8, with row counts 1-16 over lengths 6 to 2100. Each row must see exactly
// its causal keys (the reference drops the rows' later keys). 66 splits of 32 keys leave the
// earlier rows no key at all in the last splits; one split writes o directly; the early-read
// modes run too (metadata_ready, kv_ready).
class DecodeRows : public ::testing::TestWithParam<std::tuple<KvFormat, int, int>> {};

TEST_P(DecodeRows, EachRowSeesItsCausalKeys) {
    VELA_SKIP_WITHOUT_DEVICE();
    const auto [format, hd, group] = GetParam();
    const Dtype dtype = format == KvFormat::kF16 ? Dtype::kF16 : Dtype::kBf16;
    std::mt19937 rng(static_cast<uint32_t>(500 + hd + 7 * group + static_cast<int>(format)));
    DecodeCase c{format,
                 dtype,
                 hd,
                 2 * group,
                 2,
                 16,
                 {6, 17, 97, 1000, 2100, 16, 40},
                 false,
                 {6, 1, 5, 16, 3, 16, 2}};
    const Cache cache = make_cache(c, rng);
    std::vector<double> qd;
    const auto q = random_16bit(dtype, size_t(c.total_rows()) * c.num_heads * hd, rng, qd);
    for (int splits : {0, 1, 66}) {
        SCOPED_TRACE(::testing::Message() << "splits " << splits);
        check_reference(c, cache, qd, run_decode(c, cache, q, splits));
    }
    SCOPED_TRACE("metadata_ready, kv_ready");
    check_reference(c, cache, qd, run_decode(c, cache, q, 0, nullptr, true, true));
}

INSTANTIATE_TEST_SUITE_P(All, DecodeRows,
                         ::testing::Combine(::testing::Values(KvFormat::kF16, KvFormat::kBf16,
                                                              KvFormat::kInt8, KvFormat::kFp8E4M3),
                                            ::testing::Values(64, 128),
                                            ::testing::Values(1, 3, 6, 8)));

// The kernel takes any strides: the head-major block layout (FlashInfer's HND) as well.
TEST(DecodeGqa, HeadMajorBlockLayout) {
    VELA_SKIP_WITHOUT_DEVICE();
    for (KvFormat f : {KvFormat::kBf16, KvFormat::kInt8}) {
        for (int bs : {1, 16}) {
            DecodeCase c{f, Dtype::kBf16, 128, 8, 2, bs, {1, 17, 4097}, true};
            std::mt19937 rng(static_cast<uint32_t>(77 + bs + static_cast<int>(f)));
            const Cache cache = make_cache(c, rng);
            std::vector<double> qd;
            const auto q = random_16bit(c.dtype, c.seqlens.size() * c.num_heads * 128, rng, qd);
            SCOPED_TRACE(::testing::Message() << "block size " << bs);
            check_reference(c, cache, qd, run_decode(c, cache, q, 0));
        }
    }
}

// 8-bit KV from batch 8 at >= 16k keys runs the 3-CTAs-per-SM instance (shallower rings).
TEST(DecodeGqa, LongContext8BitBatch8) {
    VELA_SKIP_WITHOUT_DEVICE();
    for (KvFormat f : {KvFormat::kInt8, KvFormat::kFp8E4M3}) {
        DecodeCase c{f, Dtype::kBf16, 128, 8, 2, 16, {16400, 1, 17, 300, 16384, 5000, 9000, 17000}};
        std::mt19937 rng(static_cast<uint32_t>(91 + static_cast<int>(f)));
        const Cache cache = make_cache(c, rng);
        std::vector<double> qd;
        const auto q = random_16bit(c.dtype, c.seqlens.size() * c.num_heads * 128, rng, qd);
        check_reference(c, cache, qd, run_decode(c, cache, q, 0));
        check_reference(c, cache, qd, run_decode(c, cache, q, 7));
    }
}

TEST(DecodeGqa, Group1And8Batch17) {
    VELA_SKIP_WITHOUT_DEVICE();
    for (int kv_heads : {8, 1}) {
        std::mt19937 rng(77 + kv_heads);
        DecodeCase c{KvFormat::kBf16, Dtype::kBf16, 128, 8, kv_heads, 16, {}};
        for (int b = 0; b < 17; ++b) c.seqlens.push_back(1 + static_cast<int>(rng() % 700));
        const Cache cache = make_cache(c, rng);
        std::vector<double> qd;
        const auto q = random_16bit(c.dtype, c.seqlens.size() * c.num_heads * 128, rng, qd);
        check_reference(c, cache, qd, run_decode(c, cache, q, 0));
    }
}

// One workspace, zero-filled once, serves calls with different split counts and batches: the
// finish counters must be back at zero after every call (a stale count would make the wrong CTA
// combine, or none).
TEST(DecodeGqa, WorkspaceReusedAcrossCalls) {
    VELA_SKIP_WITHOUT_DEVICE();
    std::mt19937 rng(31);
    DecodeCase c{KvFormat::kInt8, Dtype::kBf16, 128, 32, 8, 16, {4097, 1, 17, 2000}};
    const Cache cache = make_cache(c, rng);
    std::vector<double> qd;
    const auto q = random_16bit(c.dtype, c.seqlens.size() * c.num_heads * 128, rng, qd);
    DecodeParams big;
    big.batch = 4;
    big.num_heads = 32;
    big.num_kv_heads = 8;
    big.head_dim = 128;
    big.num_splits = 1024;
    DeviceBuffer<uint8_t> ws(decode_workspace_bytes(big));
    ASSERT_CUDA(cudaMemset(ws.get(), 0, decode_workspace_bytes(big)));
    for (int splits : {0, 7, 3, 129, 0, 4}) {
        SCOPED_TRACE(::testing::Message() << "splits " << splits);
        check_reference(c, cache, qd, run_decode(c, cache, q, splits, ws.get()));
    }
    DecodeCase one = c;  // a smaller batch on the same workspace
    one.seqlens = {4097};
    std::vector<double> qd1;
    const auto q1 = random_16bit(one.dtype, one.num_heads * 128, rng, qd1);
    check_reference(one, cache, qd1, run_decode(one, cache, q1, 0, ws.get()));
}

TEST(DecodeGqa, PagedMatchesContiguousPrefill) {
    VELA_SKIP_WITHOUT_DEVICE();
    std::mt19937 rng(5);
    DecodeCase c{KvFormat::kF16, Dtype::kF16, 64, 8, 2, 16, {300, 1, 2049}};
    const Cache cache = make_cache(c, rng);
    std::vector<double> qd;
    const auto q = random_16bit(c.dtype, c.seqlens.size() * c.num_heads * 64, rng, qd);
    const DecodeRun dec = run_decode(c, cache, q, 0);

    // Gather each sequence's rows into a contiguous varlen K/V and run prefill with lq = 1.
    const size_t row = size_t(c.num_kv_heads) * 64 * 2;  // bytes per token
    std::vector<uint8_t> k, v;
    std::vector<int32_t> cu_q{0}, cu_k{0};
    for (size_t b = 0; b < c.seqlens.size(); ++b) {
        for (int t = 0; t < c.seqlens[b]; ++t) {
            const size_t blk = cache.table[b * cache.table_stride + t / 16];
            const size_t src = (blk * 16 + t % 16) * row;
            k.insert(k.end(), cache.k.begin() + src, cache.k.begin() + src + row);
            v.insert(v.end(), cache.v.begin() + src, cache.v.begin() + src + row);
        }
        cu_q.push_back(cu_q.back() + 1);
        cu_k.push_back(cu_k.back() + c.seqlens[b]);
    }
    DeviceBuffer<uint8_t> dk(k), dv(v);
    DeviceBuffer<uint16_t> dq(q), o(q.size());
    DeviceBuffer<int32_t> dcq(cu_q), dck(cu_k);
    PrefillParams p;
    p.dtype = Dtype::kF16;
    p.head_dim = 64;
    p.num_heads = 8;
    p.num_kv_heads = 2;
    p.batch = 3;
    p.max_seqlen_q = 1;
    p.q = dq.get();
    p.q_row_stride = p.o_row_stride = 8 * 64;
    p.q_head_stride = p.o_head_stride = 64;
    p.k = dk.get();
    p.v = dv.get();
    p.kv_row_stride = 2 * 64;
    p.kv_head_stride = 64;
    p.cu_seqlens_q = dcq.get();
    p.cu_seqlens_k = dck.get();
    p.o = o.get();
    p.softmax_scale = 0.125f;
    o.poison();
    prefill_forward(p);
    ASSERT_CUDA(cudaDeviceSynchronize());
    const auto pre = o.download();
    ErrorStats err;
    for (size_t i = 0; i < pre.size(); ++i) err.add(fp16_to_fp32(dec.o[i]), fp16_to_fp32(pre[i]));
    EXPECT_EQ(err.nonfinite, 0u);
    EXPECT_LE(err.max_abs, 4e-3);
}

TEST(DecodeGqa, RejectsUnsupportedHeadDimAndKvFormat) {
    DecodeParams p;
    p.num_heads = p.num_kv_heads = 1;
    p.paged.k_cache = p.paged.v_cache = &p;
    p.paged.block_size = p.paged.block_table_stride = 1;
    p.head_dim = 256;
    const std::string what = invalid_argument_of([&] { decode_forward(p); });
    EXPECT_NE(what.find("head_dim 256"), std::string::npos) << what;
    EXPECT_NE(what.find("64, 128"), std::string::npos) << what;
    p.head_dim = 128;
    p.kv_format = static_cast<KvFormat>(7);
    EXPECT_NE(invalid_argument_of([&] { decode_forward(p); }).find("kv_format 7"),
              std::string::npos);
    // Q4 takes one row a sequence, and its pairs and residuals.
    p.kv_format = KvFormat::kQ4;
    EXPECT_NE(invalid_argument_of([&] { decode_forward(p); }).find("Q4 K/V needs"),
              std::string::npos);
}

TEST(DecodeGqa, RejectsGroupAbove8) {
    DecodeParams p;
    p.head_dim = 64;
    p.num_heads = 16;
    p.num_kv_heads = 1;
    p.paged.k_cache = p.paged.v_cache = &p;
    p.paged.block_size = p.paged.block_table_stride = 1;
    EXPECT_THROW(decode_forward(p), InvalidArgument);
}

}  // namespace
}  // namespace vela::cuda::test
