// Pre-tokenizer words against Hugging Face's regex pre-tokenizers (data/pre_tokenizer_golden.json,
// from gen_bpe_regex_golden.py), for every kind, on the committed corpus.
#include <gtest/gtest.h>

#include <string_view>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer_test_util.h"

namespace vela {
namespace {

std::vector<std::string> words(const PreTokenizer& pre, std::string_view text) {
    std::vector<std::string_view> views;
    pre.split(text, views);
    return {views.begin(), views.end()};
}

TEST(PreTokenizer, MatchesHuggingFaceForEveryKind) {
    const nlohmann::json golden = test::load_json("pre_tokenizer_golden.json");
    const std::pair<const char*, PreTokenizerKind> kinds[] = {
        {"gpt2", PreTokenizerKind::Gpt2},
        {"smollm", PreTokenizerKind::SmolLM},
        {"llama3", PreTokenizerKind::Llama3},
        {"qwen2", PreTokenizerKind::Qwen2},
    };
    for (const auto& [name, kind] : kinds) {
        const PreTokenizer pre(kind);
        int failures = 0;
        for (const auto& c : golden["cases"]) {
            const auto expected = c[name].get<std::vector<std::string>>();
            const auto got = words(pre, c["text"].get<std::string>());
            EXPECT_EQ(got, expected) << name << ": " << c["text"];
            if ((failures += got != expected) > 10) FAIL() << "too many mismatches for " << name;
        }
    }
}

TEST(PreTokenizer, DigitGroupingDiffersByKind) {
    using V = std::vector<std::string>;
    EXPECT_EQ(words(PreTokenizer(PreTokenizerKind::Llama3), "1234567"), (V{"123", "456", "7"}));
    EXPECT_EQ(words(PreTokenizer(PreTokenizerKind::Qwen2), "123"), (V{"1", "2", "3"}));
    EXPECT_EQ(words(PreTokenizer(PreTokenizerKind::Gpt2), "a 123"), (V{"a", " 123"}));
    EXPECT_EQ(words(PreTokenizer(PreTokenizerKind::SmolLM), "a 12"), (V{"a", " ", "1", "2"}));
}

TEST(PreTokenizer, WhitespaceRunLeavesLastSpaceToNextWord) {
    using V = std::vector<std::string>;
    const PreTokenizer gpt2(PreTokenizerKind::Gpt2);
    EXPECT_EQ(words(gpt2, "a   b"), (V{"a", "  ", " b"}));
    EXPECT_EQ(words(gpt2, "a  \tb"), (V{"a", "  ", "\t", "b"}));
    EXPECT_EQ(words(gpt2, "a   "), (V{"a", "   "}));
    EXPECT_EQ(words(gpt2, "\xE3\x80\x80x"), (V{"\xE3\x80\x80", "x"}));  // U+3000 is \s too
}

TEST(PreTokenizer, InvalidUtf8BytesAreKeptAsWords) {
    const PreTokenizer gpt2(PreTokenizerKind::Gpt2);
    const std::string text = "ab\xFF\xC3 cd\x80";
    std::string joined;
    for (const auto& w : words(gpt2, text)) joined += w;
    EXPECT_EQ(joined, text);  // nothing lost, nothing read past the end
}

}  // namespace
}  // namespace vela
