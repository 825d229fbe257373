// Gemma 3's SentencePiece tokenizer (262,144 tokens, no dummy prefix, byte fallback) against
// llama.cpp's tokenizer on the committed corpus (data/gemma3_golden.json, gen_gemma3_golden.py).
// The vocabulary is read from the real model; without it the tests skip, loudly.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "tokenizer_test_util.h"

namespace vela {
namespace {

std::filesystem::path gemma_path() {
    return test::source_dir() / "models" / "gemma-3-270m-q4_k_m.gguf";
}

const Tokenizer* gemma_tokenizer() {
    static const std::unique_ptr<Tokenizer> tok = []() -> std::unique_ptr<Tokenizer> {
        if (!std::filesystem::exists(gemma_path())) return nullptr;
        return std::make_unique<Tokenizer>(
            Tokenizer::from_gguf(gguf::File::open(gemma_path().string())));
    }();
    return tok.get();
}

#define SKIP_WITHOUT_GEMMA()                                     \
    if (!gemma_tokenizer())                                      \
    GTEST_SKIP() << "*** Gemma 3 model absent: " << gemma_path() \
                 << " (run `scripts/fetch_models.sh gemma3`); NOT TESTED ***"

TEST(Gemma3Tokenizer, Metadata) {
    SKIP_WITHOUT_GEMMA();
    const Tokenizer& tok = *gemma_tokenizer();
    EXPECT_EQ(tok.model(), TokenizerModel::SentencePiece);
    EXPECT_EQ(tok.vocab_size(), 262144);
    EXPECT_EQ(tok.bos(), 2);
    EXPECT_EQ(tok.eos(), 1);
    EXPECT_TRUE(tok.add_bos_default());
    EXPECT_EQ(tok.token_text(106), "<end_of_turn>");
    EXPECT_TRUE(tok.is_eog(106));
    EXPECT_TRUE(tok.is_eog(1));
    EXPECT_FALSE(tok.is_eog(105));  // <start_of_turn>
}

TEST(Gemma3Tokenizer, MatchesLlamaCppOnCorpus) {
    SKIP_WITHOUT_GEMMA();
    const Tokenizer& tok = *gemma_tokenizer();
    const nlohmann::json golden = test::load_json("gemma3_golden.json");
    ASSERT_GE(golden["cases"].size(), 1100u);
    int failures = 0;
    for (const auto& c : golden["cases"]) {
        const std::string text = c["text"];
        const auto plain = tok.encode(text, false, false);
        const auto special = tok.encode(text, false, true);
        EXPECT_EQ(plain, test::ids_of(c["ids_plain"])) << "plain, text: " << text;
        EXPECT_EQ(special, test::ids_of(c["ids_special"])) << "parse_special, text: " << text;
        EXPECT_EQ(tok.decode(plain), text);
        failures +=
            plain != test::ids_of(c["ids_plain"]) || special != test::ids_of(c["ids_special"]);
        if (failures > 20) FAIL() << "too many mismatches";
    }
    // BOS is the only difference add_bos makes (Gemma adds no EOS).
    const std::string first = golden["cases"][10]["text"];
    auto with_bos = test::ids_of(golden["cases"][10]["ids_plain"]);
    with_bos.insert(with_bos.begin(), tok.bos());
    EXPECT_EQ(tok.encode(first, true, false), with_bos);
}

TEST(Gemma3Tokenizer, StreamDecodingMatchesDecode) {
    SKIP_WITHOUT_GEMMA();
    EXPECT_GT(test::expect_stream_matches_decode(*gemma_tokenizer(),
                                                 test::load_json("gemma3_golden.json")),
              0);
}

// 262k pieces: loading and encoding must stay fast (the merge search is per text, not per vocab).
TEST(Gemma3Tokenizer, EncodesAMegabyteQuickly) {
    SKIP_WITHOUT_GEMMA();
    const Tokenizer& tok = *gemma_tokenizer();
    std::string text;
    for (int rep = 0; text.size() < (1u << 20); ++rep) {
        text += "The quick brown fox jumps over the lazy dog, " + std::to_string(rep) + " times.\n";
    }
    const auto start = std::chrono::steady_clock::now();
    const auto ids = tok.encode(text, false, false);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("encoded %zu bytes into %zu tokens in %.2f s\n", text.size(), ids.size(), s);
    EXPECT_EQ(tok.decode(ids), text);
    EXPECT_LT(s, 10.0);
}

}  // namespace
}  // namespace vela
