// Conformance of the ops that sample on the device: argmax_rows (greedy), top_k_rows
// (temperature sampling with top-k) and logsumexp_rows (logprobs from a top-k list), exact against plain scans and sorts written here, on rows
// that hold ties, NaN, infinities, signed zeros and the vocabulary sizes of real models
// (SmolLM2 49152, Llama 3 128256).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "backend_conformance.h"
#include "sampling/logits_processors.h"
#include "sampling/sampling_params.h"

namespace vela::test {
namespace {

class BackendSamplingOps : public BackendTest {};

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kRows = 12;

// kRows rows of `cols` normal values, most of them made awkward:
//   1: the largest value twice;  2: NaN everywhere but one value;  3: all -inf;  4: all NaN;
//   5: +inf twice;  6: -inf and NaN around one finite value;  7: every value equal;
//   8: the maximum in the last column;  9: values on a coarse grid (ties everywhere, also
//   where a top-k list ends);  10: zeros of both signs and a few positives;  11: -inf in half
//   the columns. Row 0 is left normal.
std::vector<float> awkward_rows(int64_t cols, std::mt19937_64& rng) {
    std::vector<float> x = normal_floats(static_cast<size_t>(kRows * cols), rng);
    auto at = [&](int64_t r, int64_t c) -> float& { return x[static_cast<size_t>(r * cols + c)]; };
    std::uniform_int_distribution<int64_t> col(0, cols - 1);
    const float top = 9.f;
    const int64_t a = col(rng), b = col(rng);
    at(1, a) = top;
    at(1, b) = top;
    for (int64_t c = 0; c < cols; ++c) {
        at(2, c) = kNaN;
        at(3, c) = -kInf;
        at(4, c) = kNaN;
        at(6, c) = c % 2 ? kNaN : -kInf;
        at(7, c) = 0.25f;
        at(9, c) = std::round(at(9, c) * 2.f) / 2.f;
        at(10, c) = c % 3 == 0 ? 0.f : -0.f;
        if (c % 2 == 1) at(11, c) = -kInf;
    }
    at(2, b) = -3.f;
    at(5, b) = kInf;
    at(5, a) = kInf;
    at(6, a) = -1e30f;
    at(8, cols - 1) = top;
    for (int i = 0; i < 5; ++i) at(10, col(rng)) = 1.f + static_cast<float>(i);
    return x;
}

// argmax_rows: the first index of each row's largest value, NaN never the largest, -1 when no
// value is above -inf; exact.
TEST_P(BackendSamplingOps, ArgmaxRows) {
    auto rng = op_rng("argmax_rows");
    for (int64_t cols : {1, 31, 1025, 49152, 128256}) {
        const std::vector<float> x = awkward_rows(cols, rng);
        DeviceTensor dx(backend(), kRows, cols), dids(backend(), kRows, 1);
        dx.upload(x);
        Tensor ids = dids.view();
        ids.dtype = DType::I32;
        backend().argmax_rows(dx.view(), ids);
        std::vector<int32_t> got(static_cast<size_t>(kRows));
        backend().to_host(ids, got.data());
        EXPECT_TRUE(dids.guard_intact());
        for (int64_t r = 0; r < kRows; ++r) {
            int32_t want = -1;
            double best = -kInf;
            for (int64_t c = 0; c < cols; ++c) {
                const double v = x[static_cast<size_t>(r * cols + c)];
                if (v > best) {
                    best = v;
                    want = static_cast<int32_t>(c);
                }
            }
            EXPECT_EQ(got[static_cast<size_t>(r)], want) << "row " << r << ", cols " << cols;
        }
    }
}

// top_k_rows: the k largest values of each row, ranked (value desc, index asc), NaN and -inf
// never listed, short rows padded with -1 / -inf; exact, against a full sort of each row.
TEST_P(BackendSamplingOps, TopKRows) {
    auto rng = op_rng("top_k_rows");
    for (int64_t cols : {1, 31, 1025, 49152, 128256}) {
        const std::vector<float> x = awkward_rows(cols, rng);
        for (int64_t k : {int64_t{1}, int64_t{40}, int64_t{1000}, Backend::kMaxTopK}) {
            DeviceTensor dx(backend(), kRows, cols);
            DeviceTensor dtok(backend(), kRows, k), dval(backend(), kRows, k);
            dx.upload(x);
            Tensor tokens = dtok.view();
            tokens.dtype = DType::I32;
            backend().top_k_rows(dx.view(), tokens, dval.view());
            std::vector<int32_t> got_tok(static_cast<size_t>(kRows * k));
            backend().to_host(tokens, got_tok.data());
            const std::vector<float> got_val = dval.download();
            EXPECT_TRUE(dtok.guard_intact());
            EXPECT_TRUE(dval.guard_intact());
            for (int64_t r = 0; r < kRows; ++r) {
                std::vector<std::pair<float, int32_t>> want;
                for (int64_t c = 0; c < cols; ++c) {
                    const float v = x[static_cast<size_t>(r * cols + c)];
                    if (!std::isnan(v) && v != -kInf) want.emplace_back(v, static_cast<int32_t>(c));
                }
                std::sort(want.begin(), want.end(), [](const auto& a, const auto& b) {
                    return a.first != b.first ? a.first > b.first : a.second < b.second;
                });
                int64_t mismatches = 0;
                for (int64_t j = 0; j < k; ++j) {
                    const size_t at = static_cast<size_t>(r * k + j);
                    const bool listed = j < std::ssize(want);
                    const int32_t tok = listed ? want[static_cast<size_t>(j)].second : -1;
                    const float val = listed ? want[static_cast<size_t>(j)].first : -kInf;
                    // Bit for bit: a -0 stays -0.
                    if (got_tok[at] != tok || std::memcmp(&got_val[at], &val, sizeof val) != 0) {
                        if (mismatches++ == 0) {
                            ADD_FAILURE() << "cols " << cols << ", k " << k << ", row " << r
                                          << ", rank " << j << ": got (" << got_tok[at] << ", "
                                          << got_val[at] << "), want (" << tok << ", " << val
                                          << ")";
                        }
                    }
                }
                EXPECT_EQ(mismatches, 0) << "cols " << cols << ", k " << k << ", row " << r;
            }
        }
    }
}

// logsumexp_rows: log(sum(exp(row))) of every row without NaN, against a long double sum
// written here, to 1e-12 relative (sampling::log_sum_exp sums in double); all -inf gives -inf,
// +inf gives +inf. Rows 0 and 7-11 of awkward_rows, and row 0 spread 40x around 1000 (the exp
// terms span the double range).
TEST_P(BackendSamplingOps, LogsumexpRows) {
    auto rng = op_rng("logsumexp_rows");
    for (int64_t cols : {1, 31, 1025, 49152, 151936}) {
        std::vector<float> x = awkward_rows(cols, rng);
        for (int64_t c = 0; c < cols; ++c) {
            x[static_cast<size_t>(4 * cols + c)] = 1000.f + 40.f * x[static_cast<size_t>(c)];
        }
        DeviceTensor dx(backend(), kRows, cols), dlse(backend(), kRows, 2);
        dx.upload(x);
        Tensor lse{dlse.view().data, DType::F64, kRows, 1, dlse.view().device};
        backend().logsumexp_rows(dx.view(), lse);
        std::vector<double> got(static_cast<size_t>(kRows));
        backend().to_host(lse, got.data());
        EXPECT_TRUE(dlse.guard_intact());
        for (int64_t r : {0, 3, 4, 5, 7, 8, 9, 10, 11}) {
            const float* row = x.data() + r * cols;
            const long double m = *std::max_element(row, row + cols);
            long double want = m;
            if (std::isfinite(m)) {
                long double z = 0.0L;
                for (int64_t c = 0; c < cols; ++c) z += std::exp(static_cast<long double>(row[c]) - m);
                want = m + std::log(z);
            }
            const double g = got[static_cast<size_t>(r)];
            if (!std::isfinite(want)) {
                EXPECT_EQ(g, static_cast<double>(want)) << "row " << r << ", cols " << cols;
                continue;
            }
            EXPECT_NEAR(g, static_cast<double>(want), 1e-12 * std::max(1.0L, std::fabs(want)))
                << "row " << r << ", cols " << cols;
        }
    }
}

// apply_penalties: every row against sampling::apply_penalties (the host sampler's own) over a
// history whose window gives the entries, as ModelRunner builds them; bit for bit. Rows carry
// positive, negative, zero and -inf logits; the params mix each penalty alone and together.
// Entries outside the rows are refused before anything changes.
TEST_P(BackendSamplingOps, ApplyPenalties) {
    auto rng = op_rng("apply_penalties");
    const int64_t cols = 4099, rows = 6;
    std::vector<float> x = normal_floats(static_cast<size_t>(rows * cols), rng, 3.0f);
    for (int64_t c = 0; c < cols; c += 97) x[static_cast<size_t>(c)] = 0.0f;
    x[5] = -kInf;
    std::vector<float> want = x;
    std::vector<LogitPenalty> entries;
    std::vector<int32_t> counts;
    for (int64_t r = 0; r < rows; ++r) {
        SamplingParams p;
        p.repetition_penalty = std::array{1.3f, 1.0f, 0.7f, 1.1f, 1.0f, 2.0f}[r];
        p.frequency_penalty = std::array{0.0f, 0.5f, 0.0f, 0.25f, -0.5f, 1.0f}[r];
        p.presence_penalty = std::array{0.0f, 0.0f, 0.3f, 0.1f, 0.0f, -1.0f}[r];
        p.penalty_last_n = r % 2 == 0 ? 16 : -1;
        std::vector<int32_t> history;
        for (int i = 0; i < 40; ++i) {  // repeats, the -inf logit, token 0 and the last one
            const std::array<int32_t, 4> pick{5, 0, static_cast<int32_t>(cols - 1),
                                              static_cast<int32_t>(rng() % 50)};
            history.push_back(pick[rng() % 4]);
        }
        sampling::apply_penalties({want.data() + r * cols, static_cast<size_t>(cols)}, history, p,
                                  counts);
        const size_t n = p.penalty_last_n < 0 ? history.size() : size_t(p.penalty_last_n);
        std::map<int32_t, int32_t> seen;
        for (size_t i = history.size() - n; i < history.size(); ++i) ++seen[history[i]];
        for (const auto& [token, count] : seen) {
            entries.push_back({static_cast<int32_t>(r), token, count, p.repetition_penalty,
                               p.frequency_penalty, p.presence_penalty});
        }
    }
    std::shuffle(entries.begin(), entries.end(), rng);
    DeviceTensor dx(backend(), rows, cols);
    dx.upload(x);
    for (const LogitPenalty bad : {LogitPenalty{static_cast<int32_t>(rows), 0, 1},
                                   LogitPenalty{0, static_cast<int32_t>(cols), 1},
                                   LogitPenalty{0, -1, 1}, LogitPenalty{0, 3, 0}}) {
        std::vector<LogitPenalty> with_bad = entries;
        with_bad.push_back(bad);
        EXPECT_THROW(backend().apply_penalties(dx.view(), with_bad), InvalidArgument);
    }
    EXPECT_EQ(dx.download(), x);  // a refused call changes nothing
    backend().apply_penalties(dx.view(), entries);
    const std::vector<float> got = dx.download();
    EXPECT_TRUE(dx.guard_intact());
    int64_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && mismatches++ < 5) {
            ADD_FAILURE() << "row " << i / cols << " token " << i % cols << ": got " << got[i]
                          << ", want " << want[i] << " (from " << x[i] << ")";
        }
    }
    EXPECT_EQ(mismatches, 0);
    EXPECT_NE(got, x);
}

INSTANTIATE_TEST_SUITE_P(Built, BackendSamplingOps, ::testing::ValuesIn(built_backends()),
                         factory_name);

}  // namespace
}  // namespace vela::test
