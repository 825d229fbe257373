// How RoPE scaling metadata is read, where llama.cpp's reading of the same keys is the rule:
// a factor without a type is linear, attn_factor scales cos/sin for every type. Gemma 3's
// defaults for keys its converter leaves out, and refusals of what Vela does not run.
#include <gtest/gtest.h>

#include <cmath>

#include "../gguf/gguf_builder.h"
#include "core/error.h"
#include "gguf/gguf_file.h"
#include "model/hparams.h"
#include "model/rope.h"

namespace vela {
namespace {

std::vector<uint8_t> llama_metadata(void (*extra)(test::GgufBuilder&)) {
    test::GgufBuilder b;
    b.kv_str("general.architecture", "llama");
    b.kv_u32("llama.block_count", 1);
    b.kv_u32("llama.embedding_length", 64);
    b.kv_u32("llama.feed_forward_length", 96);
    b.kv_u32("llama.attention.head_count", 4);
    b.kv_u32("llama.vocab_size", 128);
    extra(b);
    return b.build();
}

HParams parse(const std::vector<uint8_t>& bytes) {
    return HParams::from_gguf(gguf::File::parse(bytes.data(), bytes.size(), "t.gguf"));
}

TEST(HParams, FactorWithoutTypeIsLinear) {
    const HParams h = parse(llama_metadata([](test::GgufBuilder& b) {
        b.kv_f32("llama.rope.scaling.factor", 2.0f);
    }));
    EXPECT_EQ(h.rope.scaling, RopeScaling::Linear);
    EXPECT_EQ(h.rope.factor, 2.0f);
    const HParams none = parse(llama_metadata([](test::GgufBuilder& b) {
        b.kv_str("llama.rope.scaling.type", "none");
        b.kv_f32("llama.rope.scaling.factor", 2.0f);
    }));
    EXPECT_EQ(none.rope.scaling, RopeScaling::None);
}

TEST(HParams, AttnFactorScalesEveryType) {
    const HParams h = parse(llama_metadata([](test::GgufBuilder& b) {
        b.kv_str("llama.rope.scaling.type", "linear");
        b.kv_f32("llama.rope.scaling.factor", 2.0f);
        b.kv_f32("llama.rope.scaling.attn_factor", 0.8f);
    }));
    std::vector<float> c(static_cast<size_t>(h.rope.dim / 2)), s(c.size());
    rope_cos_sin(h.rope, nullptr, 37, c.data(), s.data());
    for (size_t i = 0; i < c.size(); ++i) {
        EXPECT_NEAR(std::hypot(c[i], s[i]), 0.8, 1e-6) << i;
        // Linear: the angle of position 37 at factor 2 is that of position 18.5.
        const double freq = std::pow(10000.0, -2.0 * static_cast<double>(i) / h.rope.dim);
        EXPECT_NEAR(std::atan2(s[i], c[i]), std::remainder(18.5 * freq, 2 * M_PI), 1e-5) << i;
    }
}

}  // namespace
std::vector<uint8_t> gemma3_metadata(void (*extra)(test::GgufBuilder&)) {
    test::GgufBuilder b;
    b.kv_str("general.architecture", "gemma3");
    b.kv_u32("gemma3.block_count", 12);
    b.kv_u32("gemma3.embedding_length", 64);
    b.kv_u32("gemma3.feed_forward_length", 96);
    b.kv_u32("gemma3.attention.head_count", 4);
    b.kv_u32("gemma3.attention.key_length", 32);
    b.kv_u32("gemma3.vocab_size", 128);
    b.kv_u32("gemma3.attention.sliding_window", 512);
    extra(b);
    return b.build();
}

// Without a pattern every sixth layer (5, 11) is global; local layers rotate with base 10000.
TEST(HParams, Gemma3DefaultsAsLlamaCpp) {
    const HParams h = parse(gemma3_metadata([](test::GgufBuilder&) {}));
    for (int64_t il = 0; il < 12; ++il) {
        EXPECT_EQ(h.is_local(il), il != 5 && il != 11) << il;
        EXPECT_EQ(h.window(il), h.is_local(il) ? 512 : 0) << il;
    }
    EXPECT_EQ(h.rope_local.theta, 10000.f);
    EXPECT_TRUE(h.rope.neox && h.rope_local.neox);
    EXPECT_FLOAT_EQ(h.attn_scale, 1.f / std::sqrt(32.f));  // head_dim, not n_embd / n_heads
    EXPECT_FLOAT_EQ(h.embd_scale, 8.f);
    EXPECT_EQ(h.ffn_act, FfnActivation::GeluTanh);
}

TEST(HParams, Gemma3RefusesWhatItDoesNotRun) {
    EXPECT_THROW(parse(gemma3_metadata([](test::GgufBuilder& b) {
                     b.kv_f32("gemma3.final_logit_softcapping", 30.f);
                 })),
                 FormatError);
    EXPECT_THROW(parse(gemma3_metadata([](test::GgufBuilder& b) {
                     b.kv_u32("gemma3.attention.sliding_window_pattern", 0);
                 })),
                 FormatError);
}

}  // namespace vela
