// Byte-level BPE with the Qwen2 and Llama-3 pre-tokenizer regexes against Hugging Face
// `tokenizers` on the committed corpus, on a Qwen vocabulary fixture (gen_bpe_regex_golden.py).
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"

namespace vela {
namespace {

TokenizerData qwen_vocab() {
    const auto path =
        test::source_dir() / "tests" / "tokenizer" / "data" / "qwen_bpe_tokenizer.gguf";
    return tokenizer_data_from_gguf(gguf::File::open(path.string()));
}

TEST(ByteLevelRegexTokenizer, Qwen2MatchesHuggingFace) {
    TokenizerData d = qwen_vocab();
    ASSERT_EQ(d.pre, PreTokenizerKind::Qwen2);
    const Tokenizer tok(std::move(d));
    EXPECT_TRUE(tok.is_eog(24002));  // <|im_end|>, declared eos
    EXPECT_TRUE(tok.is_eog(24000));  // <|endoftext|>, by its text
    const nlohmann::json golden = test::load_json("qwen2_golden.json");
    test::expect_matches_golden(tok, golden);
    EXPECT_GT(test::expect_stream_matches_decode(tok, golden), 100);
}

TEST(ByteLevelRegexTokenizer, Llama3MatchesHuggingFace) {
    TokenizerData d = qwen_vocab();
    d.pre = pre_tokenizer_from_name("llama-bpe");
    ASSERT_EQ(d.pre, PreTokenizerKind::Llama3);
    d.ignore_merges = true;  // as from_gguf sets for llama-bpe
    const Tokenizer tok(std::move(d));
    test::expect_matches_golden(tok, test::load_json("llama3_golden.json"));
}

}  // namespace
}  // namespace vela
