// Tensor parallelism in the model (tensor_parallel.h) with the ranks as threads of one process
// (ThreadGroup), each with its own CPU backend and KV: on the tiny models the logits of every
// rank at TP = 2 and 4 match the float64 reference as closely as TP = 1 does (heads, kv heads
// replicated below the rank count, QKV biases, untied and tied LM heads, Gemma 3's norms) and are
// the same bits on every rank; on the default model (Q4_1, 9 heads, 3 kv heads) TP = 3 keeps
// every greedy token of TP = 1. Splits that cannot be made are refused with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "engine/forward_driver.h"
#include "model/model.h"
#include "model/tensor_parallel.h"
#include "thread_ranks.h"
#include "tiny_expected.h"

namespace vela {
namespace {

const std::string kData = std::string(VELA_SOURCE_DIR) + "/tests/model/data/";
const std::string kSmol = std::string(VELA_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

// Every logits row of `tokens`, evaluated in chunks of 7, by each of `size` ranks at once.
std::vector<std::vector<float>> run_ranks(const std::string& path, int size,
                                          const std::vector<int32_t>& tokens) {
    return test::thread_ranks(path, size, tokens, 7);
}

using test::expected_logits;

class TensorParallelTiny : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorParallelTiny, EveryRankMatchesFloat64Reference) {
    const auto expected = expected_logits(GetParam());
    ASSERT_FALSE(expected.is_null()) << GetParam();
    const auto tokens = expected["tokens"].get<std::vector<int32_t>>();
    for (int size : {1, 2, 4}) {
        const auto ranks = run_ranks(kData + GetParam() + ".gguf", size, tokens);
        const std::vector<float>& logits = ranks[0];
        const size_t V = logits.size() / tokens.size();
        double max_err = 0, max_abs = 0;
        for (size_t t = 0; t < tokens.size(); ++t) {
            const auto row = expected["logits"][t].get<std::vector<double>>();
            ASSERT_EQ(row.size(), V);
            for (size_t i = 0; i < V; ++i) {
                max_err = std::max(max_err, std::fabs(logits[t * V + i] - row[i]));
                max_abs = std::max(max_abs, std::fabs(row[i]));
            }
        }
        const double bound = 1e-3 * max_abs + 1e-3;  // as TinyModel's
        std::printf("%s TP %d: max logit error %.2e (bound %.2e)\n", GetParam().c_str(), size,
                    max_err, bound);
        EXPECT_LT(max_err, bound) << GetParam() << " TP " << size;
        for (int r = 1; r < size; ++r) EXPECT_EQ(ranks[static_cast<size_t>(r)], logits) << r;
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, TensorParallelTiny,
                         ::testing::Values("tiny_llama", "tiny_llama_mqa_f16_linear", "tiny_qwen2",
                                           "tiny_gemma3"));

// Quantised weights: each matmul quantises its input to 8 bits a block, so float sums taken in
// another order (TP's partial sums) flip some of those roundings, and logits move by as much as
// reordering TP = 3's own all-reduce does (max 0.5-0.9 on |logits| <= 35, measured). So the
// default model is held to what that noise allows: nearly every top-1 token of TP = 1, and a mean
// difference far below a wrong split's (a mis-sliced head or block moves every logit).
TEST(TensorParallel, DefaultModelAgreesWithTp1AtTp3) {
    if (!std::filesystem::exists(kSmol)) GTEST_SKIP() << kSmol << " missing (scripts/setup.sh)";
    std::vector<int32_t> tokens;
    for (int i = 0; i < 48; ++i) tokens.push_back(1 + (i * 7919) % 49000);
    const auto one = run_ranks(kSmol, 1, tokens)[0];
    const auto three = run_ranks(kSmol, 3, tokens);
    const size_t V = one.size() / tokens.size();
    int agree = 0;
    double sum_diff = 0, sum_abs = 0;
    for (size_t t = 0; t < tokens.size(); ++t) {
        const auto row = [&](const std::vector<float>& l) { return l.begin() + t * V; };
        agree += std::max_element(row(one), row(one) + V) - row(one) ==
                 std::max_element(row(three[0]), row(three[0]) + V) - row(three[0]);
        for (size_t i = 0; i < V; ++i) {
            sum_diff += std::fabs(one[t * V + i] - three[0][t * V + i]);
            sum_abs += std::fabs(one[t * V + i]);
        }
    }
    const double rel = sum_diff / sum_abs;
    std::printf(
        "SmolLM2 Q4_1 TP 3 against TP 1: top-1 agreement %d / %zu, mean |difference| %.2e "
        "of mean |logit|\n",
        agree, tokens.size(), rel);
    EXPECT_GE(agree, 40);
    EXPECT_LT(rel, 0.02);
    EXPECT_EQ(three[1], three[0]);
    EXPECT_EQ(three[2], three[0]);
}

TEST(TensorParallel, RefusesSplitsThatCannotBeMade) {
    auto why = [](const std::string& path, int size) {
        ThreadGroup group(size);
        try {
            Model model(path, &group.rank(0));
        } catch (const InvalidArgument& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(why(kData + "tiny_llama.gguf", 3).find("4 query heads do not split evenly"),
              std::string::npos);
    // 8 ranks: 4 query heads.
    EXPECT_NE(why(kData + "tiny_llama.gguf", 8).find("query heads"), std::string::npos);
    if (std::filesystem::exists(kSmol)) {
        EXPECT_NE(why(kSmol, 2).find("9 query heads"), std::string::npos);
    }
}

}  // namespace
}  // namespace vela
