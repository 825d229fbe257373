// Small hand-built vocabularies: merge priority, special tokens, byte fallback, validation
// errors, lossy UTF-8 and thread safety. Expected values are worked out by hand in comments.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

#include "../common/byte_vocabulary.h"
#include "../gguf/gguf_builder.h"
#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer_test_util.h"

namespace vela {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

// 256 byte-level alphabet tokens, then the given extra tokens and merges.
TokenizerData byte_level(std::vector<std::pair<std::string, TokenType>> extra,
                         std::vector<std::string> merges) {
    TokenizerData d = test::byte_vocabulary();
    for (auto& [text, type] : extra) {
        d.tokens.push_back(text);
        d.types.push_back(type);
    }
    d.merges = std::move(merges);
    return d;
}

TEST(ByteLevelBpe, LowerRankMergesFirst) {
    // "abc": with "b c" ranked first the result is a|bc; with "a b" first it is ab|c.
    const Tokenizer bc_first(
        byte_level({{"bc", TokenType::Normal}, {"ab", TokenType::Normal}}, {"b c", "a b"}));
    EXPECT_EQ(bc_first.encode("abc", false, false), (std::vector<int32_t>{'a', 256}));
    const Tokenizer ab_first(
        byte_level({{"bc", TokenType::Normal}, {"ab", TokenType::Normal}}, {"a b", "b c"}));
    EXPECT_EQ(ab_first.encode("abc", false, false), (std::vector<int32_t>{257, 'c'}));
    // Ties between equal pairs go to the leftmost: "aaa" with "a a" -> aa|a.
    const Tokenizer aa(byte_level({{"aa", TokenType::Normal}}, {"a a"}));
    EXPECT_EQ(aa.encode("aaa", false, false), (std::vector<int32_t>{256, 'a'}));
}

TEST(ByteLevelBpe, SpecialTokensAndDecode) {
    TokenizerData d =
        byte_level({{"<ctl>", TokenType::Control}, {"<tag>", TokenType::UserDefined}}, {});
    d.eos = 256;
    const Tokenizer tok(std::move(d));
    // Control tokens only with parse_special; user-defined ones always.
    EXPECT_EQ(tok.encode("x<ctl>", false, true), (std::vector<int32_t>{'x', 256}));
    EXPECT_EQ(tok.encode("x<ctl>", false, false).size(), 6u);
    EXPECT_EQ(tok.encode("<tag>y", false, false), (std::vector<int32_t>{257, 'y'}));
    // decode skips control tokens and renders user-defined text.
    EXPECT_EQ(tok.decode(std::vector<int32_t>{'x', 256, 257}), "x<tag>");
    EXPECT_TRUE(tok.is_eog(256));
    EXPECT_FALSE(tok.is_eog(257));
    // The space byte is "Ġ" in the vocabulary, " " once decoded.
    EXPECT_EQ(tok.token_text(' '), "\xC4\xA0");
    EXPECT_EQ(tok.decode(std::vector<int32_t>{' '}), " ");
}

TEST(ByteLevelBpe, InvalidBytesRoundTripAndDecodeLossy) {
    const Tokenizer tok(byte_level({}, {}));
    const std::string bad = "a\xFF\xE2\x82";
    const auto ids = tok.encode(bad, false, false);
    EXPECT_EQ(ids, (std::vector<int32_t>{'a', 0xFF, 0xE2, 0x82}));
    EXPECT_EQ(tok.decode(ids), "a" + kFffd + kFffd);
}

TEST(TokenizerData, InvalidMetadataIsFormatError) {
    EXPECT_THROW(Tokenizer(TokenizerData{}), FormatError);           // empty vocabulary
    EXPECT_THROW(Tokenizer(byte_level({}, {"a zz"})), FormatError);  // merge of an absent token
    EXPECT_THROW(Tokenizer(byte_level({}, {"ab"})), FormatError);    // merge without a space
    TokenizerData bad_id = byte_level({}, {});
    bad_id.eos = 256;
    EXPECT_THROW(Tokenizer(std::move(bad_id)), FormatError);
    TokenizerData bad_types = byte_level({}, {});
    bad_types.types.pop_back();
    EXPECT_THROW(Tokenizer(std::move(bad_types)), FormatError);
    TokenizerData spm = byte_level({}, {});
    spm.model = TokenizerModel::SentencePiece;  // scores missing
    EXPECT_THROW(Tokenizer(std::move(spm)), FormatError);
}

TEST(TokenizerGguf, MissingOrUnsupportedMetadataIsFormatError) {
    auto open = [](const test::GgufBuilder& b, std::vector<uint8_t>& bytes) {
        bytes = b.build();
        return Tokenizer::from_gguf(gguf::File::parse(bytes.data(), bytes.size()));
    };
    std::vector<uint8_t> bytes;
    test::GgufBuilder no_model;
    EXPECT_THROW(open(no_model, bytes), FormatError);
    test::GgufBuilder unknown;
    unknown.kv_str("tokenizer.ggml.model", "wordpiece");
    unknown.kv_str_array("tokenizer.ggml.tokens", {"a"});
    EXPECT_THROW(open(unknown, bytes), FormatError);
    test::GgufBuilder no_merges;
    no_merges.kv_str("tokenizer.ggml.model", "gpt2");
    no_merges.kv_str_array("tokenizer.ggml.tokens", {"a", "b"});
    EXPECT_THROW(open(no_merges, bytes), FormatError);
    test::GgufBuilder ok;
    ok.kv_str("tokenizer.ggml.model", "gpt2");
    ok.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "ab"});
    ok.kv_str_array("tokenizer.ggml.merges", {"a b"});
    ok.kv_u32("tokenizer.ggml.eos_token_id", 2);
    const Tokenizer tok = open(ok, bytes);
    EXPECT_EQ(tok.encode("abab", false, false), (std::vector<int32_t>{2, 2}));
    EXPECT_EQ(tok.eos(), 2);
    EXPECT_EQ(tok.bos(), -1);
}

// <unk> <s> </s> <0x00>..<0xFF> then the given pieces with their scores.
TokenizerData spm_vocab(std::vector<std::pair<std::string, float>> pieces) {
    TokenizerData d;
    d.model = TokenizerModel::SentencePiece;
    d.tokens = {"<unk>", "<s>", "</s>"};
    d.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
    for (int b = 0; b < 256; ++b) {
        d.tokens.push_back(fmt::format("<0x{:02X}>", b));
        d.types.push_back(TokenType::Byte);
    }
    d.scores.assign(d.tokens.size(), 0.0f);
    for (auto& [text, score] : pieces) {
        d.tokens.push_back(text);
        d.types.push_back(TokenType::Normal);
        d.scores.push_back(score);
    }
    d.unk = 0, d.bos = 1, d.eos = 2;
    d.add_bos = true;
    d.add_space_prefix = true;
    return d;
}

TEST(SentencePieceBpe, ScoresByteFallbackAndSpaces) {
    // ids: ▁=259 a=260 b=261 ▁a=262 ab=263 ▁ab=264
    const Tokenizer tok(spm_vocab({{"\xE2\x96\x81", -1},
                                   {"a", -1},
                                   {"b", -1},
                                   {"\xE2\x96\x81"
                                    "a",
                                    -3},
                                   {"ab", -2},
                                   {"\xE2\x96\x81"
                                    "ab",
                                    -4}}));
    // "▁ab": "ab" (score -2) beats "▁a" (-3), then "▁"+"ab" -> "▁ab".
    EXPECT_EQ(tok.encode("ab", true, false), (std::vector<int32_t>{1, 264}));
    // "é" has no piece: its two UTF-8 bytes fall back to <0xC3><0xA9>.
    EXPECT_EQ(tok.encode("\xC3\xA9", false, false),
              (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9}));
    EXPECT_EQ(tok.decode(tok.encode("\xC3\xA9 ab", true, false)), "\xC3\xA9 ab");
    // The dummy prefix comes back after a special token, and decode drops only the first one.
    EXPECT_EQ(tok.encode("a</s>a", false, true), (std::vector<int32_t>{262, 2, 262}));
    EXPECT_EQ(tok.decode(std::vector<int32_t>{1, 262, 2, 262}), "a a");
}

TEST(SentencePieceBpe, MergesAcrossWordsWhenTheVocabularyHasSuch) {
    // ids: ▁=259 a=260 a▁=261 ▁a=262. "a a" is "▁a▁a"; the best pair is "a▁" (-0.5), which
    // spans the start of the second word, so the text must not be merged word by word.
    const Tokenizer tok(spm_vocab({{"\xE2\x96\x81", -1},
                                   {"a", -1},
                                   {"a\xE2\x96\x81", -0.5f},
                                   {"\xE2\x96\x81"
                                    "a",
                                    -3}}));
    EXPECT_EQ(tok.encode("a a", false, false), (std::vector<int32_t>{259, 261, 260}));
    EXPECT_EQ(tok.decode(tok.encode("a a", false, false)), "a a");
}

TEST(StreamDecoder, InvalidBytesAreReplacedAsSoonAsKnown) {
    const Tokenizer tok(spm_vocab({{"A", -1}}));
    const int32_t f0 = 3 + 0xF0, x9f = 3 + 0x9F, a = 259;
    StreamDecoder dec(tok);
    EXPECT_EQ(dec.push(f0), "");
    EXPECT_EQ(dec.push(x9f), "");  // still a possible 4-byte character
    EXPECT_EQ(dec.push(a), kFffd + "A");
    EXPECT_EQ(dec.flush(), "");
    EXPECT_EQ(tok.decode(std::vector<int32_t>{f0, x9f, a}), kFffd + "A");
}

TEST(Utf8, LossyMatchesPythonReplace) {
    // Expected values from Python's bytes.decode("utf-8", "replace").
    const std::pair<std::string, std::string> cases[] = {
        {"\xE0\x80", kFffd + kFffd},
        {"\xF0\x9F\x98"
         "A",
         kFffd + "A"},
        {"\xED\xA0\x80", kFffd + kFffd + kFffd},
        {"\xC0\xAF", kFffd + kFffd},
        {"\xF4\x90\x80\x80", kFffd + kFffd + kFffd + kFffd},
        {"a\x80"
         "b",
         "a" + kFffd + "b"},
        {"\xE2\x82", kFffd},
        {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},
    };
    for (const auto& [in, expected] : cases) {
        std::string out;
        EXPECT_EQ(utf8::append_lossy(out, in, true), in.size());
        EXPECT_EQ(out, expected);
        EXPECT_TRUE(utf8::is_valid(out));
    }
    std::string out;
    EXPECT_EQ(utf8::append_lossy(out, "ab\xF0\x9F", false), 2u);  // holds the incomplete tail
    EXPECT_EQ(out, "ab");
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
    const auto path =
        test::source_dir() / "tests" / "tokenizer" / "data" / "qwen_bpe_tokenizer.gguf";
    const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(path.string()));
    const nlohmann::json golden = test::load_json("qwen2_golden.json");
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (const auto& c : golden["cases"])
                mismatches[t] += tok.encode(c["text"].get<std::string>(), false, true) !=
                                 test::ids_of(c["ids_special"]);
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace vela
