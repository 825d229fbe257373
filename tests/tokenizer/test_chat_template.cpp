// Chat formatting against jinja2 rendering the real templates (data/chat_golden.json, from
// gen_tokenizer_golden.py with transformers' jinja options).
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer_test_util.h"

namespace vela {
namespace {

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
    std::vector<ChatMessage> out;
    for (const auto& m : j) out.push_back({m["role"], m["content"]});
    return out;
}

ChatFormat expected_format(const std::string& family) {
    if (family == "llama3") return ChatFormat::Llama3;
    if (family == "llama2") return ChatFormat::Llama2;
    return ChatFormat::ChatML;
}

TEST(ChatTemplate, MatchesJinjaForEveryFamily) {
    const nlohmann::json golden = test::load_json("chat_golden.json");
    ASSERT_GE(golden["cases"].size(), 40u);
    for (const auto& c : golden["cases"]) {
        const ChatTemplate t = detect_chat_template(c["template"], c["bos"], c["eos"]);
        EXPECT_EQ(t.format, expected_format(c["family"])) << c["family"];
        const auto messages = messages_of(c["messages"]);
        EXPECT_EQ(render_chat(t, messages, c["add_generation_prompt"]),
                  c["expected"].get<std::string>())
            << c["family"] << " " << c["messages"].dump();
    }
}

TEST(ChatTemplate, DetectsDefaultSystemPrompts) {
    const nlohmann::json golden = test::load_json("chat_golden.json");
    for (const auto& c : golden["cases"]) {
        const ChatTemplate t = detect_chat_template(c["template"], c["bos"], c["eos"]);
        std::string expected;
        if (c["family"] == "smollm2")
            expected = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
        else if (c["family"] == "qwen2")
            expected = "You are a helpful assistant.";
        EXPECT_EQ(t.default_system, expected) << c["family"];
    }
}

TEST(ChatTemplate, UnknownTemplateFallsBackToChatML) {
    const ChatTemplate t = detect_chat_template("{{ messages | tojson }}", "", "");
    EXPECT_EQ(t.format, ChatFormat::ChatML);
    EXPECT_EQ(t.default_system, "");
    const ChatMessage m{"user", "hi"};
    EXPECT_EQ(render_chat(t, std::span(&m, 1), true),
              "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama2RejectsNonAlternatingRoles) {
    const ChatTemplate t = detect_chat_template("[INST]", "<s>", "</s>");
    const std::vector<ChatMessage> msgs = {{"user", "a"}, {"user", "b"}};
    EXPECT_THROW(render_chat(t, msgs, true), InvalidArgument);
}

TEST(ChatTemplate, SmolLM2ModelTemplateEncodesToSpecialTokens) {
    const Tokenizer* tok = test::smollm2_tokenizer();
    if (!tok) GTEST_SKIP() << "default model not found";
    const std::vector<ChatMessage> msgs = {{"user", "Hi"}};
    const std::string text = apply_chat_template(*tok, msgs, true);
    EXPECT_EQ(text,
              "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
              "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    const auto ids = tok->encode(text, tok->add_bos_default(), true);
    EXPECT_EQ(ids.front(), 1);  // <|im_start|>
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 3);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 2);  // <|im_end|>
}

}  // namespace
}  // namespace vela
