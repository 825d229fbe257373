// SentencePiece-style BPE ("llama" GGUFs: Llama-2, Mistral) against the sentencepiece library on
// the committed corpus. The fixture GGUF holds Mistral-7B-v0.1's tokenizer (gen_spm_golden.py).
#include <gtest/gtest.h>

#include <cstdio>

#include "tokenizer_test_util.h"

namespace vela {
namespace {

Tokenizer mistral_tokenizer() {
    const auto path =
        test::source_dir() / "tests" / "tokenizer" / "data" / "mistral_v1_tokenizer.gguf";
    return Tokenizer::from_gguf(gguf::File::open(path.string()));
}

TEST(SentencePieceTokenizer, Metadata) {
    const Tokenizer tok = mistral_tokenizer();
    EXPECT_EQ(tok.model(), TokenizerModel::SentencePiece);
    EXPECT_EQ(tok.vocab_size(), 32000);
    EXPECT_EQ(tok.bos(), 1);
    EXPECT_EQ(tok.eos(), 2);
    EXPECT_TRUE(tok.add_bos_default());
    EXPECT_TRUE(tok.is_eog(2));
    EXPECT_FALSE(tok.is_eog(1));
    EXPECT_EQ(tok.encode("Hello world", true, false), (std::vector<int32_t>{1, 22557, 1526}));
}

TEST(SentencePieceTokenizer, MatchesSentencePieceOnCorpus) {
    test::expect_matches_golden(mistral_tokenizer(), test::load_json("mistral_v1_golden.json"));
}

TEST(SentencePieceTokenizer, StreamDecodingMatchesDecodeAndIsValidUtf8) {
    const Tokenizer tok = mistral_tokenizer();
    // Byte-fallback tokens (<0xF0><0x9F>...) split characters across tokens.
    EXPECT_GT(test::expect_stream_matches_decode(tok, test::load_json("mistral_v1_golden.json")),
              50);
}

TEST(SentencePieceTokenizer, LeadingSpaceRuleInStreaming) {
    const Tokenizer tok = mistral_tokenizer();
    const auto ids = tok.encode("Hello world", true, false);  // <s> ▁Hello ▁world
    StreamDecoder dec(tok);
    EXPECT_EQ(dec.push(ids[0]), "");
    EXPECT_EQ(dec.push(ids[1]), "Hello");  // the dummy prefix is dropped once, at the start
    EXPECT_EQ(dec.push(ids[2]), " world");
    EXPECT_EQ(dec.flush(), "");
}

TEST(SentencePieceTokenizer, RoundTripsOneMegabyteOfEnglish) {
    const Tokenizer tok = mistral_tokenizer();
    std::string text;
    for (int rep = 0; text.size() < (1u << 20); ++rep) {
        text += "The quick brown fox jumps over the lazy dog while the tokenizer counts " +
                std::to_string(rep) + " words, isn't it? Attention is all you need.\n";
    }
    const auto ids = tok.encode(text, false, false);
    EXPECT_EQ(tok.decode(ids), text);
}

}  // namespace
}  // namespace vela
