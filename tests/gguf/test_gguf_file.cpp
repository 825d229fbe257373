#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf_builder.h"

namespace vela {
namespace {

test::GgufBuilder small_model() {
    test::GgufBuilder b;
    b.kv_str("general.architecture", "llama");
    b.kv_u32("llama.block_count", 2);
    b.kv_f32("llama.rope.freq_base", 10000.f);
    b.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "<s>"});
    b.tensor_f32("token_embd.weight", {4, 3});
    b.tensor_f32("output_norm.weight", {8});  // 32 bytes: no tail padding
    return b;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
    try {
        gguf::File::parse(bytes.data(), bytes.size(), "t.gguf");
    } catch (const FormatError& e) {
        return e.what();
    }
    return "";
}

TEST(Gguf, ParsesMetadataAndTensors) {
    const auto bytes = small_model().build();
    const auto f = gguf::File::parse(bytes.data(), bytes.size());
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.require_string("general.architecture"), "llama");
    EXPECT_EQ(f.require_int("llama.block_count"), 2);
    EXPECT_FLOAT_EQ(*f.get_float("llama.rope.freq_base"), 10000.f);
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens")->at(2), "<s>");
    EXPECT_FALSE(f.get_int("absent").has_value());
    const auto& t = f.tensor("token_embd.weight");
    EXPECT_EQ(t.shape, (std::vector<int64_t>{4, 3}));
    EXPECT_EQ(t.nbytes, 48u);
    const float* data = reinterpret_cast<const float*>(t.data);
    EXPECT_EQ(data[11], 11.f);
    EXPECT_EQ(reinterpret_cast<const float*>(f.tensor("output_norm.weight").data)[3], 3.f);
}

TEST(Gguf, WrongTypeAndMissingKeyAreNamed) {
    const auto bytes = small_model().build();
    const auto f = gguf::File::parse(bytes.data(), bytes.size(), "t.gguf");
    EXPECT_THROW(f.get_int("general.architecture"), FormatError);
    try {
        f.require_int("llama.context_length");
        FAIL();
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("llama.context_length"), std::string::npos);
    }
    try {
        f.tensor("blk.0.attn_q.weight");
        FAIL();
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("missing tensor 'blk.0.attn_q.weight'"),
                  std::string::npos);
    }
}

TEST(Gguf, EveryTruncationIsAFormatError) {
    const auto bytes = small_model().build();
    for (size_t n = 0; n < bytes.size(); ++n) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(n));
        EXPECT_NE(error_of(cut), "") << "prefix of " << n << " bytes parsed";
    }
}

TEST(Gguf, BadMagicVersionTypeOffset) {
    auto bytes = small_model().build();
    auto bad = bytes;
    bad[0] = 'X';
    EXPECT_NE(error_of(bad).find("bad magic"), std::string::npos);

    bad = bytes;
    bad[4] = 1;  // version 1 used 32-bit counts: not supported
    EXPECT_NE(error_of(bad).find("unsupported GGUF version 1"), std::string::npos);

    // Locate the first tensor info and corrupt its type id, then its offset.
    const std::string name = "token_embd.weight";
    auto it = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
    ASSERT_NE(it, bytes.end());
    const size_t type_pos = static_cast<size_t>(it - bytes.begin()) + name.size() + 4 + 16;
    bad = bytes;
    bad[type_pos] = 200;
    EXPECT_NE(error_of(bad).find("unknown type id 200"), std::string::npos);

    bad = bytes;
    bad[type_pos + 4 + 5] = 1;  // offset += 2^40
    EXPECT_NE(error_of(bad).find("outside the file"), std::string::npos);

    bad = bytes;
    bad[type_pos + 4] = 3;  // misaligned offset
    EXPECT_NE(error_of(bad).find("not aligned"), std::string::npos);
}

TEST(Gguf, HugeCountsAreRejectedBeforeAllocating) {
    auto bytes = small_model().build();
    auto bad = bytes;
    bad[16] = 0xff;  // metadata count byte 0
    bad[23] = 0x7f;  // metadata count ~ 2^63
    EXPECT_NE(error_of(bad).find("exceeds file"), std::string::npos);

    // The tokens array count (after its element type) set to 2^62.
    const std::string key = "tokenizer.ggml.tokens";
    auto it = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
    const size_t count_pos = static_cast<size_t>(it - bytes.begin()) + key.size() + 4 + 4;
    bad = bytes;
    bad[count_pos + 7] = 0x40;
    EXPECT_NE(error_of(bad).find("more than the file can hold"), std::string::npos);
}

TEST(Gguf, MissingFileIsAClearError) {
    try {
        gguf::File::open("/nonexistent/model.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
    }
    EXPECT_THROW(gguf::File::open("/"), Error);
}

// The default model's metadata and tensor table agree with the `gguf` Python package's reading
// of the same file (tests/gguf/gen_model_summary.py writes the expected summary).
TEST(Gguf, DefaultModelMatchesPythonReader) {
    const std::string dir = VELA_SOURCE_DIR;
    const std::string model = dir + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(model)) GTEST_SKIP() << "default model not fetched";
    std::ifstream in(dir + "/tests/gguf/data/smollm2_summary.json");
    ASSERT_TRUE(in) << "missing summary fixture";
    const auto expected = nlohmann::json::parse(in);
    const auto f = gguf::File::open(model);
    ASSERT_EQ(f.tensors().size(), expected["tensors"].size());
    for (const auto& et : expected["tensors"]) {
        const auto& t = f.tensor(et["name"].get<std::string>());
        EXPECT_EQ(static_cast<int>(t.type), et["type"].get<int>()) << t.name;
        EXPECT_EQ(t.shape, et["shape"].get<std::vector<int64_t>>()) << t.name;
        EXPECT_EQ(t.data - reinterpret_cast<const uint8_t*>(f.tensors()[0].data) +
                      static_cast<int64_t>(f.tensors()[0].offset),
                  et["data_offset_rel"].get<int64_t>())
            << t.name;
    }
    for (const auto& [key, value] : expected["ints"].items()) {
        EXPECT_EQ(f.require_int(key), value.get<int64_t>()) << key;
    }
    for (const auto& [key, value] : expected["strings"].items()) {
        EXPECT_EQ(f.require_string(key), value.get<std::string>()) << key;
    }
    const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens);
    EXPECT_EQ(tokens->size(), expected["n_tokens"].get<size_t>());
    EXPECT_EQ(tokens->at(1000), expected["token_1000"].get<std::string>());
}

}  // namespace
}  // namespace vela
