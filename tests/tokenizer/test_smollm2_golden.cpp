// Token ids of the default model's tokenizer against Hugging Face `tokenizers` on the committed
// corpus (data/smollm2_golden.json, from gen_tokenizer_golden.py).
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace vela {
namespace {

const Tokenizer& require_model() {
    const Tokenizer* tok = test::smollm2_tokenizer();
    if (!tok) throw std::runtime_error("unreachable");
    return *tok;
}

#define SKIP_WITHOUT_MODEL() \
    if (!test::smollm2_tokenizer()) GTEST_SKIP() << "default model not found"

TEST(SmolLM2Tokenizer, Metadata) {
    SKIP_WITHOUT_MODEL();
    const Tokenizer& tok = require_model();
    EXPECT_EQ(tok.vocab_size(), 49152);
    EXPECT_EQ(tok.bos(), 1);
    EXPECT_EQ(tok.eos(), 2);
    EXPECT_FALSE(tok.add_bos_default());
    EXPECT_EQ(tok.token_text(1), "<|im_start|>");
    EXPECT_TRUE(tok.is_eog(2));   // <|im_end|>
    EXPECT_TRUE(tok.is_eog(0));   // <|endoftext|>
    EXPECT_FALSE(tok.is_eog(1));  // <|im_start|>
    EXPECT_FALSE(tok.is_eog(100));
    EXPECT_FALSE(tok.is_eog(-1));
    EXPECT_FALSE(tok.is_eog(49152));
    EXPECT_THROW(tok.token_text(49152), InvalidArgument);
    EXPECT_NE(tok.chat_template().find("<|im_start|>"), std::string::npos);
}

TEST(SmolLM2Tokenizer, MatchesHuggingFaceOnCorpus) {
    SKIP_WITHOUT_MODEL();
    test::expect_matches_golden(require_model(), test::load_json("smollm2_golden.json"));
}

TEST(SmolLM2Tokenizer, AddBosPrependsBos) {
    SKIP_WITHOUT_MODEL();
    const Tokenizer& tok = require_model();
    const auto without = tok.encode("Hello world", false, false);
    const auto with = tok.encode("Hello world", true, false);
    ASSERT_EQ(with.size(), without.size() + 1);
    EXPECT_EQ(with[0], tok.bos());
    EXPECT_TRUE(std::equal(without.begin(), without.end(), with.begin() + 1));
}

TEST(SmolLM2Tokenizer, StreamDecodingMatchesDecodeAndIsValidUtf8) {
    SKIP_WITHOUT_MODEL();
    const nlohmann::json golden = test::load_json("smollm2_golden.json");
    EXPECT_GT(test::expect_stream_matches_decode(require_model(), golden), 100);
}

TEST(SmolLM2Tokenizer, TruncatedCharacterIsReplacedOnFlush) {
    SKIP_WITHOUT_MODEL();
    const Tokenizer& tok = require_model();
    // "日" alone is split by byte-level BPE into several tokens; drop the last one.
    auto ids = tok.encode("日", false, false);
    ASSERT_GE(ids.size(), 2u);
    ids.pop_back();
    StreamDecoder dec(tok);
    std::string out;
    for (const int32_t id : ids) out += dec.push(id);
    EXPECT_EQ(out, "");
    EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
    EXPECT_EQ(tok.decode(ids), "\xEF\xBF\xBD");
}

TEST(SmolLM2Tokenizer, RoundTripsOneMegabyteOfEnglish) {
    SKIP_WITHOUT_MODEL();
    const Tokenizer& tok = require_model();
    std::string text;
    for (int rep = 0; text.size() < (1u << 20); ++rep) {
        // English-like prose with varied words; the rep number defeats pure repetition.
        text += "The quick brown fox jumps over the lazy dog while the tokenizer counts " +
                std::to_string(rep) + " words, isn't it? Attention is all you need.\n";
    }
    const auto ids = tok.encode(text, false, false);
    EXPECT_EQ(tok.decode(ids), text);
}

}  // namespace
}  // namespace vela
