// Token ids of the larger real models' tokenizers against Hugging Face `tokenizers` on the
// committed corpus (data/qwen2.5_coder_golden.json from gen_qwen25_golden.py, which also
// cross-checks with llama.cpp). The GGUFs come from scripts/fetch_models.sh, which CI runs;
// elsewhere a missing model skips with the command to run.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tokenizer_test_util.h"

namespace vela {
namespace {

struct RealModel {
    const char* file;
    const char* fetch_key;  // argument of scripts/fetch_models.sh
    const char* golden;
    int32_t vocab_size;
};

class RealModelTokenizer : public testing::TestWithParam<RealModel> {
  protected:
    void SetUp() override {
        const auto path = test::source_dir() / "models" / GetParam().file;
        if (!std::filesystem::exists(path)) {
            GTEST_SKIP() << "SKIPPED: " << path << " is absent; run scripts/fetch_models.sh "
                         << GetParam().fetch_key;
        }
        tok_ = std::make_unique<Tokenizer>(Tokenizer::from_gguf(gguf::File::open(path.string())));
    }
    std::unique_ptr<Tokenizer> tok_;
};

TEST_P(RealModelTokenizer, MatchesHuggingFaceOnCorpus) {
    EXPECT_EQ(tok_->vocab_size(), GetParam().vocab_size);
    test::expect_matches_golden(*tok_, test::load_json(GetParam().golden));
}

TEST_P(RealModelTokenizer, StreamDecodingMatchesDecode) {
    EXPECT_GT(test::expect_stream_matches_decode(*tok_, test::load_json(GetParam().golden)), 0);
}

// The two Qwen2.5-Coder files share one tokenizer (the draft/target pair): one fixture for both.
INSTANTIATE_TEST_SUITE_P(Qwen25Coder, RealModelTokenizer,
                         testing::Values(RealModel{"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                                                   "qwen0.5b", "qwen2.5_coder_golden.json", 151936},
                                         RealModel{"qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                                                   "qwen1.5b", "qwen2.5_coder_golden.json",
                                                   151936}),
                         [](const testing::TestParamInfo<RealModel>& info) {
                             return std::string(info.param.fetch_key).substr(4, 1) == "0"
                                        ? "Qwen05B"
                                        : "Qwen15B";
                         });

}  // namespace
}  // namespace vela
