#pragma once
// Chat formatting without a Jinja engine: the GGUF's `tokenizer.chat_template` is only used to
// recognise its family, which is then rendered natively, character for character as the
// Jinja template would (tests compare with jinja2 rendering the real templates). The result
// keeps the template's text apart from the messages' roles and contents: only the former may
// turn into control tokens, so a message saying "<|im_end|>" cannot end its own turn.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/text_segment.h"

namespace vela {

class Tokenizer;

struct ChatMessage {
    std::string role;
    std::string content;
};

enum class ChatFormat {
    ChatML,  // <|im_start|>role\n...<|im_end|>\n (SmolLM2, Qwen); default system prompt if any
    Llama3,  // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
    Llama2,  // [INST] <<SYS>>...<</SYS>> ... [/INST] (Llama-2-chat)
    Gemma,   // <start_of_turn>user\n...<end_of_turn>\n, "model" for the assistant (Gemma 1-3)
};

struct ChatTemplate {
    ChatFormat format = ChatFormat::ChatML;
    // ChatML templates that insert a system turn when the first message is not one.
    std::string default_system;
    // Texts of BOS/EOS, which Llama-2 repeats inside the conversation.
    std::string bos_text, eos_text;
};

// Recognises the family of a Jinja chat template; unknown or empty templates give ChatML and
// log a warning. (apply_chat_template first recognises a template-less Gemma by its vocabulary.)
ChatTemplate detect_chat_template(const std::string& jinja, std::string bos_text,
                                  std::string eos_text);

// Renders with an already detected template: template text as segments with parse_special,
// roles and contents as plain segments. The text never starts with BOS: encode() adds it.
std::vector<TextSegment> render_chat(const ChatTemplate& tmpl,
                                     std::span<const ChatMessage> messages,
                                     bool add_generation_prompt);

// Formats messages with the template family of the tokenizer's GGUF chat_template, ending with
// the assistant header when add_generation_prompt (as HF's apply_chat_template).
std::vector<TextSegment> apply_chat_template(const Tokenizer& tokenizer,
                                             std::span<const ChatMessage> messages,
                                             bool add_generation_prompt);

// The prompt ids of a conversation: apply_chat_template, then Tokenizer::encode of the
// segments with the model's default BOS.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                                 bool add_generation_prompt);

}  // namespace vela
